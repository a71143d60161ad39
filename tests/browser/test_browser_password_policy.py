"""The password policy on the pages, in Chromium against a live server: an administrator creating
a user with a commonly used password, and a user choosing their own username as a password, are
told why under the field, and nothing changes. Both used to be taken."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import Page, expect
from tests.browser.conftest import PASSWORD, WebUsers, screenshot, sign_in
from tests.support.server import LiveServer

pytestmark = pytest.mark.browser


def test_weak_passwords_are_refused_with_the_reason_under_the_field(
    page: Page, live_server: LiveServer, web_users: WebUsers
) -> None:
    sign_in(page, live_server, web_users.admin)
    page.goto(f"{live_server.url}/admin/users")
    name = f"newcomer-{uuid.uuid4().hex[:6]}"
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password", exact=True).fill("Password123!")
    page.get_by_label("Password again").fill("Password123!")
    page.get_by_role("button", name="Create user").click()
    error = page.locator('[id="password-error"]')
    expect(error).to_contain_text("one of the most commonly used")
    # The field with the error has the focus, and the name typed is kept.
    expect(page.get_by_label("Password", exact=True)).to_be_focused()
    expect(page.get_by_label("Username")).to_have_value(name)
    screenshot(page, "password-policy-common", live_server)
    expect(page.get_by_role("link", name=f"Manage user {name}")).to_have_count(0)

    page.goto(f"{live_server.url}/ui/password")
    own = f"{web_users.admin}-2024"
    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password", exact=True).fill(own)
    page.get_by_label("New password again").fill(own)
    page.get_by_role("button", name="Change password").click()
    expect(page.locator('[id="new_password-error"]')).to_contain_text(
        "not the username and does not contain it"
    )
