"""The agent pages' create form creates one profile however often it is sent (ui.submissions):
a double click, Back and resend, two sends at once. On SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from httpx import Response
from starlette.testclient import TestClient
from tests.support.concurrency import race
from tests.unit.ui.test_ui_pages import csrf_of, signed_in_admin, wizard

from openprofiles.profiles import service as profiles
from openprofiles.settings import Settings
from openprofiles.ui.flash import FLASH_COOKIE

NEW = "/agent/domains/acme/profiles/new"


@pytest.fixture
def admin(settings: Settings) -> Iterator[TestClient]:
    with signed_in_admin(settings) as client:
        yield client


def form(client: TestClient) -> dict[str, str]:
    page = client.get(NEW)
    token = re.search(r'name="submission" value="([^"]+)"', page.text)
    assert token, "the create form has no one-time token"
    return {"csrf_token": csrf_of(page.text), "submission": token.group(1)}


def confirms(response: Response) -> bool:
    """Whether the redirect leaves the profile page its one-shot "Profile saved." (ui.flash)."""
    return any(
        # The server's flash cookie: its name goes on with the installation's suffix.
        cookie.startswith(f"{FLASH_COOKIE}-")
        for cookie in response.headers.get_list("set-cookie")
    )


def named(client: TestClient, first_name: str) -> list[str]:
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.read() as tx:
        found, _ = profiles.search_profiles(
            tx,
            domain_name="acme",
            criteria=[profiles.SearchCriterion("_fullName", (f"{first_name} Twice",))],
        )
    return [record.profile_id for record, _ in found]


def test_a_form_sent_twice_creates_one_profile(admin: TestClient) -> None:
    """It created two profiles of one customer ("Twice Posted" twice)."""
    assert wizard(admin, domain_name="acme")[0] == 303
    data = {**form(admin), "FirstName": "Ana", "LastName": "Twice"}
    first = admin.post(NEW, data=data)
    again = admin.post(NEW, data=data)
    assert first.status_code == again.status_code == 303
    # Only the first confirms "Profile saved." (ui.flash); the second shows the profile the
    # first created.
    assert confirms(first) and not confirms(again)
    assert again.headers["location"] == first.headers["location"]
    assert len(named(admin, "Ana")) == 1
    # A new form is a new profile (two customers of one name).
    fresh = admin.post(NEW, data={**form(admin), "FirstName": "Ana", "LastName": "Twice"})
    assert fresh.status_code == 303 and confirms(fresh)
    assert len(named(admin, "Ana")) == 2


def test_a_form_whose_profile_was_deleted_makes_one_again(admin: TestClient) -> None:
    """Sent again after its profile was deleted, it answered with the deleted profile's page
    (a 404), and the customer typed in was lost."""
    assert wizard(admin, domain_name="acme")[0] == 303
    data = {**form(admin), "FirstName": "Di", "LastName": "Twice"}
    first = admin.post(NEW, data=data).headers["location"]
    [deleted] = named(admin, "Di")
    services = admin.app.state.services  # type: ignore[attr-defined]
    with services.write() as tx:
        profiles.delete_profile(tx, domain_name="acme", profile_id=deleted)
    again = admin.post(NEW, data=data)
    assert again.status_code == 303 and again.headers["location"] != first
    assert admin.get(again.headers["location"]).status_code == 200
    assert len(named(admin, "Di")) == 1


def test_a_refused_form_keeps_its_token(admin: TestClient) -> None:
    assert wizard(admin, domain_name="acme")[0] == 303
    data = form(admin)
    refused = admin.post(NEW, data={**data, "FirstName": "Bo", "EmailAddress": "not an email"})
    assert refused.status_code == 400
    assert f'name="submission" value="{data["submission"]}"' in refused.text
    done = admin.post(NEW, data={**data, "FirstName": "Bo", "LastName": "Twice"})
    assert (
        admin.post(NEW, data={**data, "FirstName": "Bo", "LastName": "Twice"}).headers["location"]
        == done.headers["location"]
    )
    assert len(named(admin, "Bo")) == 1


def test_two_sends_at_once_create_one_profile(admin: TestClient) -> None:
    assert wizard(admin, domain_name="acme")[0] == 303
    data = {**form(admin), "FirstName": "Cy", "LastName": "Twice"}

    def send() -> list[str]:
        return [admin.post(NEW, data=data).headers["location"]]

    places = race([send, send])
    assert places[0] == places[1]
    assert len(named(admin, "Cy")) == 1
