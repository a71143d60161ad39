"""In Chromium against a live server: the longest values a profile may hold (255 characters
without a space) and wide tables stay within a tablet-sized screen (768 pixels), and a refused
form puts the focus on its first field to correct rather than on the page."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect
from tests.browser.conftest import WebUsers, sign_in
from tests.support.server import LiveServer

pytestmark = pytest.mark.browser

LONGEST = 255


@pytest.fixture
def tablet(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 768, "height": 1000})
    opened = context.new_page()
    try:
        yield opened
    finally:
        context.close()


def overflow(page: Page) -> tuple[int, list[str]]:
    """How many pixels the page is wider than the screen (0: no sideways scrolling), and the
    innermost elements that reach past its right edge (to say which when it is not 0)."""
    found: tuple[int, list[str]] = page.evaluate(
        """() => {
            const edge = document.documentElement.clientWidth;
            const past = [...document.querySelectorAll('body *')].filter(e =>
                e.getBoundingClientRect().right > edge + 1 &&
                ![...e.children].some(c => c.getBoundingClientRect().right > edge + 1));
            return [document.documentElement.scrollWidth - edge,
                    past.slice(0, 5).map(e => e.tagName + '.' + e.className)];
        }"""
    )
    return found[0], found[1]


def test_255_character_values_and_wide_tables_fit_a_768_pixel_screen(
    tablet: Page, live_server: LiveServer, web_users: WebUsers
) -> None:
    client = live_server.client()
    domain = f"long-{uuid.uuid4().hex[:8]}"
    client.create_domain(DomainName=domain, DefaultExpirationDays=366)
    name = "A" * LONGEST
    profile_id = client.create_profile(
        DomainName=domain,
        FirstName=name,
        LastName="B" * LONGEST,
        AccountNumber="7" * LONGEST,
        Address={"Address1": "C" * LONGEST, "City": "D" * LONGEST},
        Attributes={"E" * LONGEST: "F" * LONGEST},
    )["ProfileId"]

    sign_in(tablet, live_server, web_users.admin)
    tablet.goto(f"{live_server.url}/agent/domains/{domain}/profiles/{profile_id}")
    expect(tablet.get_by_role("heading", level=1)).to_contain_text(name)
    assert overflow(tablet)[0] == 0, overflow(tablet)

    # The search results' table, with the name in a cell (found by its account number).
    tablet.goto(f"{live_server.url}/agent/domains/{domain}")
    tablet.locator("#q").fill("7" * LONGEST)
    tablet.locator("#q").press("Enter")
    expect(tablet.locator("table")).to_contain_text(name)
    assert overflow(tablet)[0] == 0, overflow(tablet)

    # The edit form, every field filled to its longest.
    tablet.goto(f"{live_server.url}/agent/domains/{domain}/profiles/{profile_id}/edit")
    assert overflow(tablet)[0] == 0, overflow(tablet)

    # Admin tables with many columns scroll inside their own box, not the page.
    for path in ("/admin/domains", "/admin/users", "/admin/instances", "/admin/integrations"):
        tablet.goto(f"{live_server.url}{path}")
        assert overflow(tablet)[0] == 0, (path, overflow(tablet))


def test_a_refused_form_focuses_its_first_field_to_correct(
    page: Page, live_server: LiveServer, web_users: WebUsers
) -> None:
    sign_in(page, live_server, web_users.admin)
    page.goto(f"{live_server.url}/admin/enable")
    page.get_by_label("Friendly name of the new domain").fill("not valid")
    page.get_by_label("Keep data for (days)").fill("0")
    page.get_by_role("button", name="Submit", exact=True).click()
    page.wait_for_load_state()

    expect(page.get_by_label("Friendly name of the new domain")).to_be_focused()
    expect(page.get_by_role("alert")).to_contain_text("Friendly name of the new domain")
    # The summary's link goes to the field it names.
    page.get_by_role("link", name="Keep data for (days)").click()
    assert page.evaluate("location.hash") == "#retention_days"
