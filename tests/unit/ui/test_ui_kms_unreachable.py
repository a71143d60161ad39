"""The agent pages of a domain whose KMS does not answer (both backends, Starlette's TestClient,
a real KMS key provider): the domain is created under a key of moto's KMS, then served by an app
whose KMS endpoint refuses connections, as when the KMS is down or out of reach. Every agent
page of the domain says in plain words that its data cannot be read right now and to ask an
administrator if it goes on, never the provider's message (the endpoint's URL, the key's ARN,
what to configure); an administrator gets that message, to act on it. It used to be a bare
"Internal Server Error" for both."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass, replace

import boto3
import pytest
from starlette.testclient import TestClient
from tests.unit.integrations.integ_helpers import make_domain
from tests.unit.ui.test_ui_private_urls import PASSWORD, csrf_of, sign_in

from openprofiles.app import create_app
from openprofiles.profiles import service as profiles
from openprofiles.settings import Settings
from openprofiles.ui.profile_form import form_names
from openprofiles.users import service as users

DOMAIN = "keyed"


@dataclass
class Setup:
    agent: TestClient
    admin: TestClient
    profile_id: str
    key_arn: str
    endpoint: str


def _signed_in(app: object, username: str) -> TestClient:
    client = TestClient(app, follow_redirects=False)  # type: ignore[arg-type]
    sign_in(client, username)
    return client


@pytest.fixture
def setup(settings: Settings, moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    # No data-key cache: every page asks the KMS, as the first page after a restart does.
    working = replace(
        settings, kms_endpoint_url=moto_url, aws_region="us-east-1", data_key_cache_seconds=0
    )
    key_arn = boto3.client("kms", endpoint_url=moto_url, region_name="us-east-1").create_key()[
        "KeyMetadata"
    ]["Arn"]
    first = create_app(working)
    make_domain(first.state.services, DOMAIN, key_arn)
    with first.state.services.write() as tx:
        users.create_user(tx, username="agent1", password=PASSWORD, role="agent")
        users.create_user(tx, username="boss", password=PASSWORD, role="admin")
        profile_id = profiles.create_profile(
            tx, domain_name=DOMAIN, fields={"FirstName": "Kofi"}
        ).profile_id
    first.state.services.database.dispose()
    # A port bound and held here but never listening: a connection to it is refused at once,
    # and no other process can take it meanwhile.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed:
        closed.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{closed.getsockname()[1]}"
        app = create_app(replace(working, kms_endpoint_url=endpoint))
        agent, admin = _signed_in(app, "agent1"), _signed_in(app, "boss")
        try:
            yield Setup(agent, admin, profile_id, key_arn, endpoint)
        finally:
            agent.close()
            admin.close()
            app.state.services.database.dispose()


def _pages(client: TestClient, profile_id: str) -> dict[str, object]:
    """Each agent page of the domain that reads its data: GETs, and the forms posted."""
    profile = f"/agent/domains/{DOMAIN}/profiles/{profile_id}"
    csrf = csrf_of(client.get("/ui/password").text)
    searched = client.post(f"/agent/domains/{DOMAIN}", data={"q": "Kofi", "csrf_token": csrf})
    assert searched.status_code == 303, searched.text
    return {
        "profile": client.get(profile),
        "search results": client.get(searched.headers["location"]),
        "edit form": client.get(f"{profile}/edit"),
        # The whole form (an incomplete one is refused before the profile is read).
        "edit saved": client.post(
            f"{profile}/edit",
            data={**dict.fromkeys(form_names(), ""), "FirstName": "Kwame", "csrf_token": csrf},
        ),
        "profile created": client.post(
            f"/agent/domains/{DOMAIN}/profiles/new", data={"FirstName": "Ama", "csrf_token": csrf}
        ),
        "contact linked": client.post(
            f"{profile}/link-contact", data={"contact": "c-1", "csrf_token": csrf}
        ),
    }


def test_the_agent_is_told_the_data_cannot_be_read_right_now_and_whom_to_ask(
    setup: Setup,
) -> None:
    for page, response in _pages(setup.agent, setup.profile_id).items():
        assert response.status_code == 503, (page, response.text)  # type: ignore[attr-defined]
        text = re.sub(r"\s+", " ", response.text)  # type: ignore[attr-defined]
        assert "customer data cannot be read right now" in text, page
        assert "ask an administrator" in text, page
        for detail in (
            setup.endpoint,
            "127.0.0.1",
            "http",
            "arn:aws:kms",
            setup.key_arn.rsplit("/", 1)[1],
            "KMS",
            "OPENPROFILES_",
            "Error",
            "Exception",
        ):
            assert detail not in text, (page, detail)


def test_the_administrator_is_told_what_failed_and_what_to_check(setup: Setup) -> None:
    for page, response in _pages(setup.admin, setup.profile_id).items():
        assert response.status_code == 503, (page, response.text)  # type: ignore[attr-defined]
        text = response.text  # type: ignore[attr-defined]
        assert f"could not reach the KMS endpoint {setup.endpoint}" in text, page
        assert "OPENPROFILES_KMS_ENDPOINT_URL" in text, page
