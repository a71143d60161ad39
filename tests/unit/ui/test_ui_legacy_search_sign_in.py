"""An old search address (`?q=`, from before searches were sealed) visited signed out goes to
sign in with its query sealed (web.UI.sign_in_url), and sign-in now leads straight to the
search sealed for the user who signed in (agent_pages registers it: web.UI.seal_on_return).
Sign-in used to answer `Location: /agent/domains/acme?q=<value>`: one more request line carried
the customer's value in clear before the search page sent it on (UI review). On SQLite and
PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from starlette.testclient import TestClient
from tests.unit.ui.test_ui_private_urls import (
    EMAIL,
    NAMESAKES,
    PHONE,
    assert_clean,
    create_domain,
    csrf_of,
    hidden_value,
    result_count,
    sign_in,
)
from tests.unit.ui.test_ui_user_pages import PASSWORD

from openprofiles.app import create_app
from openprofiles.profiles import service as profiles
from openprofiles.settings import Settings
from openprofiles.users import service as users


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """Signed out, with domain `acme` of 21 namesakes sharing a phone and an email."""
    app = create_app(settings)
    with app.state.services.write() as tx:
        users.create_user(tx, username="boss", password=PASSWORD, role="admin")
        users.create_user(tx, username="ana", password=PASSWORD, role="agent")
        users.create_user(tx, username="bob", password=PASSWORD, role="agent")
    with TestClient(app, follow_redirects=False) as test_client:
        sign_in(test_client, "boss")
        create_domain(test_client, "acme")
        with app.state.services.write() as tx:
            for _ in range(NAMESAKES):
                profiles.create_profile(
                    tx,
                    domain_name="acme",
                    fields={"FirstName": "Maria", "PhoneNumber": PHONE, "EmailAddress": EMAIL},
                )
        test_client.cookies.clear()
        yield test_client
    app.state.services.database.dispose()


def _signed_in_from(client: TestClient, address: str, username: str = "ana") -> str:
    """Where signing in as `username` leads from `address`, visited signed out."""
    to_sign_in = client.get(address)
    assert to_sign_in.status_code == 303
    page = client.get(to_sign_in.headers["location"]).text
    answer = client.post(
        "/ui/sign-in",
        data={
            "username": username,
            "password": PASSWORD,
            "csrf_token": csrf_of(page),
            "next": hidden_value(page, "next"),
            "next_query": hidden_value(page, "next_query"),
        },
    )
    assert answer.status_code == 303, answer.text
    return str(answer.headers["location"])


@pytest.mark.parametrize("value", [EMAIL, PHONE])
def test_sign_in_leads_to_the_sealed_search_of_an_old_search_address(
    client: TestClient, value: str
) -> None:
    location = _signed_in_from(client, f"/agent/domains/acme?{_query(value)}")

    assert_clean(location, value, EMAIL, PHONE)
    assert urlsplit(location).path == "/agent/domains/acme"
    assert list(parse_qs(urlsplit(location).query)) == ["s"]
    results = client.get(location)
    assert results.status_code == 200
    assert result_count(results.text) == 20


def test_the_sealed_search_is_the_signed_in_users_own(client: TestClient) -> None:
    location = _signed_in_from(client, f"/agent/domains/acme?{_query(EMAIL)}", "bob")
    assert result_count(client.get(location).text) == 20
    client.cookies.clear()
    sign_in(client, "ana")
    # Sealed for bob: it opens nothing for ana.
    assert client.get(location).status_code == 400


def test_the_contact_carried_stays_and_other_pages_keep_their_query(client: TestClient) -> None:
    location = _signed_in_from(client, f"/agent/domains/acme?{_query(EMAIL)}&contact=c-9")
    assert_clean(location, EMAIL)
    assert parse_qs(urlsplit(location).query)["contact"] == ["c-9"]
    client.cookies.clear()
    assert (
        _signed_in_from(client, "/agent/contacts/c-123?domain=acme")
        == "/agent/contacts/c-123?domain=acme"
    )


def _query(value: str) -> str:
    return urlencode({"q": value})
