"""The agent pages with one domain's key disabled (both backends, Starlette's TestClient): the
screen pop still finds a contact in the other domains and only names the one it could not read;
the agent's 403 page for that domain says to ask an administrator, not which command to run."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest
from starlette.testclient import TestClient
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.app import create_app
from openprofiles.crypto.keyring import Keyring
from openprofiles.profiles import service as profiles
from openprofiles.settings import Settings
from openprofiles.users import service as users

PASSWORD = "long enough password"
CONTACT = "c-healthy-1"


@dataclass
class Setup:
    agent: TestClient
    admin: TestClient
    healthy_profile: str
    keyed_profile: str
    key_id: str


def _signed_in(app: object, username: str) -> TestClient:
    client = TestClient(app, follow_redirects=False)  # type: ignore[arg-type]
    page = client.get("/ui/sign-in")
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match
    client.post(
        "/ui/sign-in",
        data={"username": username, "password": PASSWORD, "csrf_token": match.group(1)},
    )
    return client


@pytest.fixture
def setup(settings: Settings) -> Iterator[Setup]:
    # No data-key cache: the disabled key is noticed at the next page.
    app = create_app(replace(settings, data_key_cache_seconds=0))
    services = app.state.services
    keyring = Keyring(settings.keyring_path)
    key = keyring.create_key("keyed")
    make_domain(services, "healthy")
    make_domain(services, "keyed", key.arn(settings.region, settings.account_id))
    with services.write() as tx:
        users.create_user(tx, username="agent1", password=PASSWORD, role="agent")
        users.create_user(tx, username="boss", password=PASSWORD, role="admin")
        healthy = profiles.create_profile(tx, domain_name="healthy", fields={"FirstName": "Ama"})
        profiles.add_profile_key(
            tx,
            domain_name="healthy",
            profile_id=healthy.profile_id,
            key_name="_ctrContactId",
            values=[CONTACT],
        )
        keyed = profiles.create_profile(tx, domain_name="keyed", fields={"FirstName": "Kofi"})
    agent, admin = _signed_in(app, "agent1"), _signed_in(app, "boss")
    keyring.disable(key.key_id)
    try:
        yield Setup(agent, admin, healthy.profile_id, keyed.profile_id, key.key_id)
    finally:
        agent.close()
        admin.close()
        services.database.dispose()


def test_the_screen_pop_skips_a_domain_it_cannot_read(setup: Setup) -> None:
    found = setup.agent.get(f"/agent/contacts/{CONTACT}")
    assert found.status_code == 303, found.text
    # With the contact, for the agent to link it elsewhere if this is not the caller's profile.
    assert found.headers["location"] == (
        f"/agent/domains/healthy/profiles/{setup.healthy_profile}?contact={CONTACT}"
    )

    missing = setup.agent.get("/agent/contacts/c-nowhere")
    assert missing.status_code == 200
    assert "Not searched: keyed." in missing.text
    assert "ask an administrator" in missing.text
    # Not "yet": it may be linked in the domain not searched.
    assert "No profile in the domains searched is linked to this contact" in missing.text
    assert "No profile is linked to this contact yet" not in missing.text
    assert "/agent/domains/healthy" in missing.text
    for detail in (setup.key_id, "disabled", "openprofiles keys"):
        assert detail not in missing.text

    asked = setup.agent.get("/agent/contacts/c-nowhere?domain=keyed")
    assert asked.status_code == 200 and "Not searched: keyed." in asked.text
    assert "No profile is linked" not in asked.text


def test_the_agent_is_told_to_ask_an_administrator_the_admin_what_to_run(setup: Setup) -> None:
    path = f"/agent/domains/keyed/profiles/{setup.keyed_profile}"
    for_agent = setup.agent.get(path)
    assert for_agent.status_code == 403
    assert "Ask an administrator" in for_agent.text
    assert "openprofiles keys" not in for_agent.text and setup.key_id not in for_agent.text

    for_admin = setup.admin.get(path)
    assert for_admin.status_code == 403
    assert "openprofiles keys enable" in for_admin.text and "keyed" in for_admin.text
