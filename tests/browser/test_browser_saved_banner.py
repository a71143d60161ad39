"""In Chromium: "Profile saved." is shown once, on the page a save leads to, and not again on
reload, nor from an address that asks for it (ui.flash: it was `?saved=1`)."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import Page, expect
from tests.browser.conftest import WebUsers, sign_in
from tests.support.server import LiveServer

pytestmark = pytest.mark.browser


def test_saved_is_shown_once_and_never_from_an_address(
    page: Page, live_server: LiveServer, web_users: WebUsers
) -> None:
    domain = f"banner-{uuid.uuid4().hex[:8]}"
    live_server.client().create_domain(DomainName=domain, DefaultExpirationDays=366)
    sign_in(page, live_server, web_users.agent)
    page.goto(f"{live_server.url}/agent/domains/{domain}/profiles/new")
    page.get_by_label("First name").fill("Kofi")
    page.get_by_role("button", name="Create profile").click()
    saved = page.get_by_role("status").filter(has_text="Profile saved.")
    expect(saved).to_be_visible()
    assert "?" not in page.url
    profile = page.url

    page.reload()
    expect(page.get_by_role("heading", name="Kofi")).to_be_visible()
    expect(saved).to_have_count(0)

    page.goto(f"{profile}?saved=1")
    expect(page.get_by_role("heading", name="Kofi")).to_be_visible()
    expect(saved).to_have_count(0)

    page.get_by_role("link", name="Edit profile").click()
    page.get_by_label("Last name").fill("Mensah")
    page.get_by_role("button", name="Save changes").click()
    expect(saved).to_be_visible()
    expect(page.get_by_role("heading", name="Kofi Mensah")).to_be_visible()
    page.go_back()
    page.go_forward()
    expect(page.get_by_role("heading", name="Kofi Mensah")).to_be_visible()
    expect(saved).to_have_count(0)
