"""A NUL in a page's address (a domain name, an id, a query value) or in a form's field is
answered with a page that says so (404 / 400), on both backends. PostgreSQL refuses a NUL in a
query's text, so on it some 35 pages that looked the name or id up answered a bare 500 (found
by a fuzz of the pages); nothing is stored, and no typed value is logged. A form whose text is
not UTF-8 (a script's: browsers never send one) is refused so too: it was stored with U+FFFD in
place of what could not be decoded."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient
from tests.unit.ingest.conftest import DOMAIN
from tests.unit.ui.test_ui_admin_ops import csrf_of, services_of, signed_in

from openprofiles.profiles import service as profiles
from openprofiles.settings import Settings
from openprofiles.store.schema import profile

PROFILE = "0" * 32
MESSAGE = "0" * 32


@pytest.fixture
def admin(settings: Settings) -> Iterator[TestClient]:
    yield from signed_in(settings, "admin")


@pytest.fixture
def agent(settings: Settings) -> Iterator[TestClient]:
    yield from signed_in(settings, "agent")


@pytest.mark.parametrize(
    "address",
    [
        "/admin/domains/x%00",
        f"/admin/domains/{DOMAIN}%00/dlq",
        f"/admin/domains/{DOMAIN}/dlq/{MESSAGE}%00",
        f"/admin/domains/{DOMAIN}%00/integrations",
        "/admin/enable/x%00/instance",
        f"/admin/merges/{DOMAIN}/x%00",
    ],
)
def test_an_admin_page_whose_address_holds_a_nul_is_not_found(
    admin: TestClient, address: str
) -> None:
    page = admin.get(address)
    assert page.status_code == 404, page.text
    assert "holds a NUL" in page.text


@pytest.mark.parametrize(
    "address",
    [
        "/admin/domains?after=%00",
        "/admin/matches?domain=%00",
        "/admin/merges?domain=%00",
        f"/admin/domains/{DOMAIN}/integrations?after=%00",
    ],
)
def test_a_query_value_holding_a_nul_is_refused(admin: TestClient, address: str) -> None:
    page = admin.get(address)
    assert page.status_code == 400, page.text
    assert "holds a NUL character" in page.text


@pytest.mark.parametrize(
    "address",
    [
        f"/agent/domains/{DOMAIN}%00",
        f"/agent/domains/{DOMAIN}%00/profiles/new",
        f"/agent/domains/{DOMAIN}/profiles/{PROFILE}%00",
        f"/agent/domains/{DOMAIN}/profiles/{PROFILE}%00/edit",
    ],
)
def test_an_agent_page_whose_address_holds_a_nul_is_not_found(
    agent: TestClient, address: str
) -> None:
    page = agent.get(address)
    assert page.status_code == 404, page.text
    assert "holds a NUL" in page.text


def test_a_form_posted_to_an_address_with_a_nul_is_not_found(agent: TestClient) -> None:
    token = csrf_of(agent.get(f"/agent/domains/{DOMAIN}/profiles/new").text)
    sent = agent.post(
        f"/agent/domains/{DOMAIN}%00/profiles/new",
        data={"csrf_token": token, "FirstName": "Ada"},
    )
    assert sent.status_code == 404, sent.text


def test_a_form_field_holding_a_nul_is_refused_and_nothing_saved(
    agent: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    token = csrf_of(agent.get(f"/agent/domains/{DOMAIN}/profiles/new").text)
    sent = agent.post(
        f"/agent/domains/{DOMAIN}/profiles/new",
        data={"csrf_token": token, "FirstName": "Nul\x00Zed", "LastName": "Lovelace"},
    )
    assert sent.status_code == 400, sent.text
    assert "holds a NUL character" in sent.text
    with services_of(agent).read() as tx:
        assert tx.conn.execute(select(func.count()).select_from(profile)).scalar_one() == 0
    assert "Zed" not in caplog.text


FORM_TYPE = {"content-type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize(
    "first_name",
    [
        pytest.param(b"Ad%FF", id="not-a-utf8-byte"),
        pytest.param(b"Ad%C3", id="cut-short"),
        pytest.param(b"Ad%ED%A0%80", id="a-surrogate"),
        # Not percent-encoded: Starlette read it as Latin-1 ("AdÃ©").
        pytest.param("Adé".encode(), id="raw-bytes"),
    ],
)
def test_a_form_that_is_not_utf8_is_refused_and_nothing_saved(
    agent: TestClient, first_name: bytes
) -> None:
    """It was saved, with U+FFFD (or Latin-1) in place of what was sent."""
    token = csrf_of(agent.get(f"/agent/domains/{DOMAIN}/profiles/new").text)
    body = urlencode({"csrf_token": token, "LastName": "Lovelace"}).encode()
    sent = agent.post(
        f"/agent/domains/{DOMAIN}/profiles/new",
        content=body + b"&FirstName=" + first_name,
        headers=FORM_TYPE,
    )
    assert sent.status_code == 400, sent.text
    assert "not valid UTF-8" in sent.text and "Nothing was saved" in sent.text
    with services_of(agent).read() as tx:
        assert tx.conn.execute(select(func.count()).select_from(profile)).scalar_one() == 0


def test_a_utf8_form_holding_a_replacement_character_is_saved_as_sent(agent: TestClient) -> None:
    """U+FFFD itself, and a character of four bytes, encoded as UTF-8: nothing to refuse."""
    token = csrf_of(agent.get(f"/agent/domains/{DOMAIN}/profiles/new").text)
    sent = agent.post(
        f"/agent/domains/{DOMAIN}/profiles/new",
        data={"csrf_token": token, "FirstName": "Ad\ufffd\U0001f600", "LastName": "Lovelace"},
    )
    assert sent.status_code == 303, sent.text
    with services_of(agent).read() as tx:
        (profile_id,) = tx.conn.execute(select(profile.c.profile_id)).scalars()
        saved = profiles.get_profile(tx, domain_name=DOMAIN, profile_id=profile_id)
    assert saved.fields["FirstName"] == "Ad\ufffd\U0001f600"


def test_an_admin_form_naming_a_domain_with_a_nul_is_refused(admin: TestClient) -> None:
    """PostgreSQL looked the domain up: 500."""
    token = csrf_of(admin.get("/admin/instances").text)
    arn = "arn:aws:connect:us-east-1:111122223333:instance/11111111-2222-3333-4444-555555555555"
    sent = admin.post(
        "/admin/instances",
        data={"csrf_token": token, "instance_arn": arn, "domain_name": f"{DOMAIN}\x00"},
    )
    assert sent.status_code == 400, sent.text
    assert "holds a NUL character" in sent.text
