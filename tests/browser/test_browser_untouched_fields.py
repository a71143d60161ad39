"""In Chromium: saving the profile form writes only what the agent typed. Chromium rewrote
values the agent never touched: an email input's internationalised domain became punycode
(zoe@exämple.com saved as zoe@xn--exmple-cua.com on an edit of the last name, and on create),
and a single-line input drops a line break the API stored ("Ann", "Marie" on two lines saved
as "AnnMarie")."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from tests.browser.conftest import WebUsers, sign_in
from tests.browser.test_browser_pages import unique
from tests.support.server import LiveServer

pytestmark = pytest.mark.browser

IDN_EMAIL = "zoe@exämple.com"


def _stored(live_server: LiveServer, domain: str, profile_id: str) -> dict[str, object]:
    found = live_server.client().search_profiles(
        DomainName=domain, KeyName="_profileId", Values=[profile_id]
    )
    item: dict[str, object] = found["Items"][0]
    return item


def _edit_last_name(
    page: Page, live_server: LiveServer, web_users: WebUsers, **fields: object
) -> dict[str, object]:
    """The profile made of `fields` as stored after an agent changed its last name only."""
    domain = unique("untouched")
    client = live_server.client()
    client.create_domain(DomainName=domain, DefaultExpirationDays=366)
    profile_id = client.create_profile(DomainName=domain, LastName="Smith", **fields)["ProfileId"]
    sign_in(page, live_server, web_users.agent)
    page.goto(f"{live_server.url}/agent/domains/{domain}/profiles/{profile_id}/edit")

    page.get_by_label("Last name").fill("Smyth")
    page.get_by_role("button", name="Save changes").click()

    expect(page.get_by_role("status").filter(has_text="Profile saved.")).to_be_visible()
    stored = _stored(live_server, domain, profile_id)
    assert stored["LastName"] == "Smyth"
    return stored


def test_an_edit_leaves_an_internationalised_email_as_stored(
    page: Page, live_server: LiveServer, web_users: WebUsers
) -> None:
    stored = _edit_last_name(page, live_server, web_users, EmailAddress=IDN_EMAIL)

    assert stored["EmailAddress"] == IDN_EMAIL


def test_an_edit_leaves_line_breaks_the_api_stored_as_they_are(
    page: Page, live_server: LiveServer, web_users: WebUsers
) -> None:
    stored = _edit_last_name(
        page,
        live_server,
        web_users,
        FirstName="Ann\nMarie",
        AdditionalInformation="line1\nline2",
        Address={"Address1": "1 Main St\nFlat 2"},
    )

    assert stored["FirstName"] == "Ann\nMarie"
    assert stored["Address"] == {"Address1": "1 Main St\nFlat 2"}
    assert stored["AdditionalInformation"] == "line1\nline2"


def test_a_new_profile_keeps_an_internationalised_email_as_typed(
    page: Page, live_server: LiveServer, web_users: WebUsers
) -> None:
    domain = unique("idn")
    live_server.client().create_domain(DomainName=domain, DefaultExpirationDays=366)
    sign_in(page, live_server, web_users.agent)
    page.goto(f"{live_server.url}/agent/domains/{domain}/profiles/new")

    page.get_by_label("First name").fill("Jörg")
    page.get_by_label("Email address", exact=True).fill("jorg@müller.de")
    page.get_by_role("button", name="Create profile").click()

    expect(page.get_by_role("heading", name="Jörg")).to_be_visible()
    created = re.search(r"/profiles/([0-9a-f]{32})", page.url)
    assert created, page.url
    profile_id = created.group(1)
    assert _stored(live_server, domain, profile_id)["EmailAddress"] == "jorg@müller.de"
