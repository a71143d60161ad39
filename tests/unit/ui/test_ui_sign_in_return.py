"""Signing in returns to exactly the address that asked for it (ui.web.UI.sign_in_url and
after_sign_in), for a contact id that holds "/", "%", "?" or a literal "%2F" in the path (the
screen pop, /agent/contacts/{id}) or in the `?contact=` parameter. `next` used to be built from
the decoded path: a contact "x%2Fy" came back as "x/y", another contact."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient
from tests.unit.ui.test_ui_pages import _FormFields
from tests.unit.ui.test_ui_sessions import PASSWORD, csrf_of

from openprofiles.app import create_app
from openprofiles.settings import Settings
from openprofiles.users import service as users

# Contact ids as a contact centre may send them (agent_pages.contact_url quotes them whole).
CONTACT_IDS = ["x%2Fy", "a/b", "50%off", "what?now", "a%3Fb#c"]


@pytest.fixture
def client(sqlite_settings: Settings) -> Iterator[TestClient]:
    app = create_app(sqlite_settings)
    with app.state.services.write() as tx:
        users.create_user(tx, username="ana", password=PASSWORD, role="agent")
    with TestClient(app, follow_redirects=False) as test_client:
        yield test_client
    app.state.services.database.dispose()


def returned_to(client: TestClient, address: str) -> str:
    """Where signing in leads, from the sign-in page that `address`, signed out, redirects to."""
    client.cookies.clear()
    asked = client.get(address)
    assert asked.status_code == 303 and asked.headers["location"].startswith("/ui/sign-in?")
    page = client.get(asked.headers["location"])
    fields = _FormFields()
    fields.feed(page.text)
    signed = client.post(
        "/ui/sign-in",
        data={
            **fields.fields,
            "username": "ana",
            "password": PASSWORD,
            "csrf_token": csrf_of(page.text),
        },
    )
    assert signed.status_code == 303
    return signed.headers["location"]


@pytest.mark.parametrize("contact_id", CONTACT_IDS)
def test_the_screen_pop_of_a_contact_comes_back_as_it_was(
    client: TestClient, contact_id: str
) -> None:
    address = f"/agent/contacts/{quote(contact_id, safe='')}"
    assert returned_to(client, address) == address


@pytest.mark.parametrize("contact_id", CONTACT_IDS)
def test_a_page_carrying_a_contact_comes_back_as_it_was(
    client: TestClient, contact_id: str
) -> None:
    address = f"/agent/domains/acme/profiles/new?contact={quote(contact_id, safe='')}"
    assert returned_to(client, address) == address
