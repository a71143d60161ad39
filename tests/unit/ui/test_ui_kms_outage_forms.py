"""A profile form sent while its domain's key cannot be used (the KMS answers an error: a key it
cannot use now, or a disabled key) is given back filled in, with what the agent typed, and says
in plain words that nothing was saved and why, never the key provider's message; sent again once
the key works, it saves (an edit) or creates one profile (a create form). It used to be the page
that says the data cannot be read, and what the agent typed was lost.

Both backends, Starlette's TestClient, a real KMS key provider: the domain's key is in moto's KMS
behind tests.support.kms_proxy, which answers the test's errors to Decrypt while the outage
lasts, and no data-key cache, so every request asks the KMS."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace

import boto3
import pytest
from starlette.testclient import TestClient
from tests.support.kms_proxy import KmsProxy, kms_proxy
from tests.unit.integrations.integ_helpers import make_domain
from tests.unit.ui.test_ui_kept_form import _fields
from tests.unit.ui.test_ui_private_urls import PASSWORD, sign_in

from openprofiles.app import create_app
from openprofiles.domains.service import UNREACHABLE_FOR_AGENTS, UNREADABLE_FOR_AGENTS
from openprofiles.profiles import service as profiles
from openprofiles.settings import Settings
from openprofiles.users import service as users

DOMAIN = "keyed"
NEW = f"/agent/domains/{DOMAIN}/profiles/new"
TYPED = "Typed during the outage"
# (KMS error code, status, what the agent is told): a key the KMS cannot use right now (it may
# come back by itself), and a key that is refused (disabled) until an administrator acts.
OUTAGES = [
    pytest.param("KeyUnavailableException", 503, UNREACHABLE_FOR_AGENTS, id="unavailable"),
    pytest.param("DisabledException", 403, UNREADABLE_FOR_AGENTS, id="disabled"),
]


@dataclass
class Setup:
    agent: TestClient
    proxy: KmsProxy
    profile_id: str
    key_arn: str


@pytest.fixture
def setup(settings: Settings, moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with kms_proxy(moto_url) as proxy:
        keyed = replace(
            settings, kms_endpoint_url=proxy.url, aws_region="us-east-1", data_key_cache_seconds=0
        )
        kms = boto3.client("kms", endpoint_url=moto_url, region_name="us-east-1")
        key_arn = kms.create_key()["KeyMetadata"]["Arn"]
        app = create_app(keyed)
        make_domain(app.state.services, DOMAIN, key_arn)
        with app.state.services.write() as tx:
            users.create_user(tx, username="agent1", password=PASSWORD, role="agent")
            profile_id = profiles.create_profile(
                tx, domain_name=DOMAIN, fields={"FirstName": "Kofi"}
            ).profile_id
        agent = TestClient(app, follow_redirects=False)
        sign_in(agent, "agent1")
        try:
            yield Setup(agent, proxy, profile_id, key_arn)
        finally:
            agent.close()
            app.state.services.database.dispose()


def _outage(setup: Setup, code: str) -> None:
    """From now on the KMS answers `code` to every Decrypt (the domain's data key)."""
    setup.proxy.refuse("Decrypt", code, times=1_000_000)


def _key_works_again(setup: Setup, code: str) -> None:
    setup.proxy.refuse("Decrypt", code, times=0)


def _told(answer_text: str, setup: Setup, reason: str) -> None:
    """The page says nothing was saved, why in an agent's words, and nothing of the KMS."""
    text = " ".join(html.unescape(answer_text).split())
    assert "Nothing was saved. " + reason in text
    assert "What you typed is still in the form below" in text
    for detail in (
        setup.proxy.url,
        "arn:aws:kms",
        setup.key_arn.rsplit("/", 1)[1],
        "refused by the test",
        "OPENPROFILES_",
        "Exception",
    ):
        assert detail not in text, detail
    # Three letters can turn up by chance in the page's random tokens (a form's CSRF token, a
    # sealed search in a link): looked for in what the page shows only.
    shown = " ".join(html.unescape(re.sub(r"<[^>]*>", " ", answer_text)).split())
    assert "KMS" not in shown


def _profile_fields(setup: Setup, profile_id: str) -> dict[str, object]:
    services = setup.agent.app.state.services  # type: ignore[attr-defined]
    with services.read() as tx:
        return profiles.get_profile(tx, domain_name=DOMAIN, profile_id=profile_id).fields


@pytest.mark.parametrize(("code", "status", "reason"), OUTAGES)
def test_an_edit_sent_while_the_key_cannot_be_used_comes_back_filled_in(
    setup: Setup, code: str, status: int, reason: str
) -> None:
    url = f"/agent/domains/{DOMAIN}/profiles/{setup.profile_id}/edit"
    form = _fields(setup.agent.get(url).text)
    _outage(setup, code)

    answer = setup.agent.post(url, data={**form, "LastName": TYPED})

    assert answer.status_code == status, answer.text
    _told(answer.text, setup, reason)
    back = _fields(answer.text)
    # What was typed, what the form showed (for the save's check), the session's CSRF token.
    assert back["LastName"] == TYPED and back["FirstName"] == "Kofi"
    assert back["shown.LastName"] == "" and back["shown.FirstName"] == "Kofi"
    assert back["csrf_token"] == form["csrf_token"]
    assert "Save changes" in answer.text

    _key_works_again(setup, code)
    saved = setup.agent.post(url, data=back)
    assert saved.status_code == 303, saved.text
    assert _profile_fields(setup, setup.profile_id)["LastName"] == TYPED


@pytest.mark.parametrize(("code", "status", "reason"), OUTAGES)
def test_a_profile_created_while_the_key_cannot_be_used_comes_back_filled_in(
    setup: Setup, code: str, status: int, reason: str
) -> None:
    form = _fields(setup.agent.get(NEW).text)
    _outage(setup, code)

    answer = setup.agent.post(NEW, data={**form, "FirstName": "Ama", "LastName": TYPED})

    assert answer.status_code == status, answer.text
    _told(answer.text, setup, reason)
    back = _fields(answer.text)
    assert back["FirstName"] == "Ama" and back["LastName"] == TYPED
    # Its one-time token as it was: sent again, however often, it makes one profile.
    assert back["submission"] == form["submission"]

    _key_works_again(setup, code)
    created = setup.agent.post(NEW, data=back)
    assert created.status_code == 303, created.text
    again = setup.agent.post(NEW, data=back)
    assert again.headers["location"] == created.headers["location"]
    profile_id = re.sub(r".*/profiles/", "", created.headers["location"]).split("?")[0]
    assert _profile_fields(setup, profile_id)["LastName"] == TYPED
