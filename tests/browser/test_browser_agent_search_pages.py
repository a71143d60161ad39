"""In Chromium against a live server: a long right-to-left name searched in the agent's search
box, its pages of results gone through both ways, and its values laid out right to left in
their own cells while the text around them stays left to right."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import Page, expect
from tests.browser.conftest import WebUsers, sign_in
from tests.support.server import LiveServer

pytestmark = pytest.mark.browser

FIRST, LAST = "\u0628" * 120, "\u0627" * 120  # 241 characters as a full name


def direction(page: Page, selector: str) -> str:
    found: str = page.locator(selector).first.evaluate("e => getComputedStyle(e).direction")
    return found


def test_a_long_right_to_left_name_is_searched_paged_and_isolated(
    page: Page, live_server: LiveServer, web_users: WebUsers
) -> None:
    client = live_server.client()
    domain = f"rtl-{uuid.uuid4().hex[:8]}"
    client.create_domain(DomainName=domain, DefaultExpirationDays=366)
    for n in range(21):
        client.create_profile(
            DomainName=domain, FirstName=FIRST, LastName=LAST, PhoneNumber=f"+1206555{n:04d}"
        )

    sign_in(page, live_server, web_users.agent)
    page.goto(f"{live_server.url}/agent/domains/{domain}")
    page.get_by_label("Search customers").fill(f"{FIRST} {LAST}")
    page.get_by_role("button", name="Search").click()
    heading = page.locator("#results-heading")
    expect(heading).to_contain_text("20+ results")
    expect(heading).to_contain_text("by _fullName")
    # The page's own text stays left to right; the name (its cell, its echo in the heading and
    # the search box) is laid out right to left, isolated from it.
    assert direction(page, "#results-heading") == "ltr"
    assert direction(page, "#results-heading bdi") == "rtl"
    assert direction(page, "table.results tbody th a") == "rtl"
    assert direction(page, "table.results tbody td") == "ltr"  # the phone number
    assert direction(page, "#q") == "rtl"

    page.get_by_role("link", name="Next page").click()
    expect(heading).to_contain_text("Results 21–21 of 21")
    expect(page.locator(".pager .page-number")).to_have_text("Page 2")
    page.get_by_role("link", name="Previous page").click()
    expect(heading).to_contain_text("20+ results")
    expect(page.get_by_role("link", name="Previous page")).to_have_count(0)
    expect(page.get_by_label("Search customers")).to_have_value(f"{FIRST} {LAST}")
    assert re.fullmatch(
        rf"{re.escape(live_server.url)}/agent/domains/{domain}\?s=[\w.-]+", page.url
    )
