"""In Chromium against a live server: where the keyboard focus is as an agent works — on the
sign-in username, the search box, the first field of the profile form, and after a search on the
results' heading (it stayed at the top of the page, so a keyboard or screen-reader agent tabbed
through the navigation to reach the results) — and what an empty search and one that finds
nothing say. Then the contact history's contact id and a record opened from it, indented."""

from __future__ import annotations

import json
import uuid

import pytest
from playwright.sync_api import Page, expect
from tests.browser.conftest import WebUsers, sign_in
from tests.support.server import LiveServer
from tests.unit.integrations.integ_helpers import ctr
from tests.wire.test_contact_records_http import post

pytestmark = pytest.mark.browser


def focused_id(page: Page) -> str:
    found: str = page.evaluate("document.activeElement ? document.activeElement.id : ''")
    return found


@pytest.fixture(scope="module")
def domain(live_server: LiveServer) -> str:
    name = f"focus-{uuid.uuid4().hex[:8]}"
    live_server.client().create_domain(DomainName=name, DefaultExpirationDays=366)
    return name


def test_the_focus_follows_the_agent_through_search_and_forms(
    page: Page, live_server: LiveServer, web_users: WebUsers, domain: str
) -> None:
    page.goto(f"{live_server.url}/ui/sign-in")
    expect(page.get_by_label("Username")).to_be_focused()
    sign_in(page, live_server, web_users.agent)
    page.goto(f"{live_server.url}/agent/domains/{domain}")
    box = page.get_by_label("Search customers")
    expect(box).to_be_focused()

    # Nothing typed: said, and the focus is back in the box to type.
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_have_text(
        "Type a phone number, email address, name, account number or profile id to search."
    )
    expect(box).to_be_focused()

    missing = f"nadia.{uuid.uuid4().hex[:6]}@example.com"
    page.keyboard.type(missing)
    page.keyboard.press("Enter")
    heading = page.get_by_role("heading", name="No profile found")
    expect(heading).to_contain_text(f"for “{missing}” by _email")
    expect(heading).to_be_focused()
    # From the heading, the next Tab is within the results (their "create a profile" link), not
    # the navigation at the top of the page.
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="create a profile")).to_be_focused()

    page.get_by_role("link", name="Create profile").click()
    expect(page.get_by_label("First name")).to_be_focused()
    assert focused_id(page) == "FirstName"


def test_the_contact_history_names_each_contact_and_opens_its_record_indented(
    page: Page, live_server: LiveServer, web_users: WebUsers, domain: str
) -> None:
    instance = f"arn:aws:connect:us-east-1:111122223333:instance/{uuid.uuid4()}"
    live_server.client().put_integration(DomainName=domain, Uri=instance)
    contact_id = f"c-focus-{uuid.uuid4().hex[:6]}"
    record = ctr(contact_id, instance=instance, start="2026-01-03T09:00:00Z")
    assert post(live_server, "/contact-records", json.dumps(record)).json()["Accepted"] == 1
    sign_in(page, live_server, web_users.agent)
    page.goto(f"{live_server.url}/agent/contacts/{contact_id}")
    table = page.locator(".history table")
    expect(table.get_by_role("columnheader", name="Contact ID")).to_be_visible()
    expect(table.get_by_role("cell", name=contact_id, exact=True)).to_be_visible()

    table.get_by_role("link", name="Open record 1").click()
    # The contact's details first, labelled; the record's JSON folded under them.
    details = page.locator("dl.contact-details")
    expect(details.locator("dt").first).to_have_text("Contact ID")
    expect(details.locator("dd").first).to_have_text(contact_id)
    page.get_by_text("The whole record, as JSON").click()
    expect(page.locator("pre.record")).to_be_visible()
    shown = page.locator("pre.record").inner_text()
    assert json.loads(shown)["ContactId"] == contact_id
    assert shown == json.dumps(json.loads(shown), indent=2, ensure_ascii=False, sort_keys=True)
