"""In Chromium against a live server, on a phone-sized window (375 pixels): tables stay
readable. A cell wraps between words, never inside a short word (a contact's start time was
laid out one character a line), the page never scrolls sideways (a wide table scrolls within
its own box), and a dead-letter row's Retry button can be reached."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect
from tests.browser.conftest import WebUsers, sign_in
from tests.browser.test_browser_admin_ops import put_crm_type
from tests.support.server import LiveServer
from tests.unit.integrations.integ_helpers import ctr
from tests.wire.test_contact_records_http import post

pytestmark = pytest.mark.browser


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 375, "height": 800})
    opened = context.new_page()
    try:
        yield opened
    finally:
        context.close()


def page_overflow(page: Page) -> int:
    """How many pixels the page is wider than the window (0: no sideways scrolling)."""
    width: int = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    return width


def broken_cells(page: Page) -> list[str]:
    """The table cells laid out on more lines than they have words: a word of theirs was broken
    (no word here is longer than a column may be wide, 24 characters). A line may end after a
    hyphen, as normal wrapping does, so the parts of "2026-12-01" count as words."""
    found: list[str] = page.evaluate(
        """() => [...document.querySelectorAll('table th, table td')].filter(cell => {
            const text = cell.innerText.trim();
            const words = text.split(/[\\s-]+/).filter(w => w);
            if (!words.length || words.some(w => w.length > 24)) return false;
            const tops = new Set();
            const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
            for (let node = walker.nextNode(); node; node = walker.nextNode()) {
                if (!node.textContent.trim()) continue;
                const range = document.createRange();
                range.selectNodeContents(node);
                for (const rect of range.getClientRects()) {
                    if (rect.width > 0) tops.add(Math.round(rect.top));
                }
            }
            return tops.size > words.length;
        }).map(cell => cell.innerText.trim())"""
    )
    return found


def test_tables_are_readable_on_a_375_pixel_window(
    phone: Page, live_server: LiveServer, web_users: WebUsers
) -> None:
    client = live_server.client()
    domain = f"narrow-{uuid.uuid4().hex[:8]}"
    instance = f"arn:aws:connect:us-east-1:111122223333:instance/{uuid.uuid4()}"
    client.create_domain(DomainName=domain, DefaultExpirationDays=366)
    client.put_integration(DomainName=domain, Uri=instance)
    contact_id = f"c-voice-{uuid.uuid4().hex[:6]}"
    record = ctr(contact_id, instance=instance, start="2026-11-30T09:00:00Z")
    assert post(live_server, "/contact-records", json.dumps(record)).json()["Accepted"] == 1
    # A record the CRM type may not create a profile for: a dead letter.
    put_crm_type(client, domain, allow=False)
    crm = {"id": f"crm-{uuid.uuid4().hex[:6]}", "email": "nobody@example.com", "first": "Nadia"}
    client.put_profile_object(DomainName=domain, ObjectTypeName="Crm", Object=json.dumps(crm))

    sign_in(phone, live_server, web_users.admin)

    # The profile's contact history.
    phone.goto(f"{live_server.url}/agent/domains/{domain}")
    phone.locator("#q").fill("+17208401003")
    phone.locator("#q").press("Enter")
    results = phone.locator("table.results")
    expect(results).to_be_visible()
    assert page_overflow(phone) == 0
    assert broken_cells(phone) == []
    results.locator("tbody a").first.click()
    expect(phone.locator("table").first).to_contain_text("VOICE")
    assert page_overflow(phone) == 0
    assert broken_cells(phone) == []

    # The dead-letter queue: one row is one row high, and its Retry button can be pressed.
    phone.goto(f"{live_server.url}/admin/domains/{domain}/dlq")
    rows = phone.locator("table.dlq tbody tr")
    expect(rows).to_have_count(1)
    assert page_overflow(phone) == 0
    assert broken_cells(phone) == []
    assert rows.first.bounding_box()["height"] < 400  # type: ignore[index]
    retry = rows.first.get_by_role("button", name="Retry record")
    retry.scroll_into_view_if_needed()
    expect(retry).to_be_in_viewport()

    for path in ("/admin/domains", "/admin/instances", "/admin/integrations", "/admin/users"):
        phone.goto(f"{live_server.url}{path}")
        assert page_overflow(phone) == 0, path
        assert broken_cells(phone) == [], path
