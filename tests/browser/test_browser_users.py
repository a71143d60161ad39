"""Web users' pages in Chromium against a live server: an admin creates a user once they typed
their own password again (a wrong one is said under its field, the name typed kept and the
passwords not), gives the user a new password, likewise (the user's open page then asks them to
sign in), the user changes
their own password, the admin deletes the user after ticking the box (their session ends at
once), and cannot delete the last administrator."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import Browser, Page, expect
from tests.browser.conftest import PASSWORD, WebUsers, screenshot, sign_in
from tests.support.server import LiveServer

pytestmark = pytest.mark.browser

FIRST = "first-password-1"
SECOND = "second-password-2"
THIRD = "third-password-3"


def sign_in_as(page: Page, live_server: LiveServer, username: str, password: str) -> None:
    page.goto(f"{live_server.url}/ui/sign-in")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def test_admin_resets_a_password_the_user_changes_it_and_is_deleted(
    page: Page, browser: Browser, live_server: LiveServer, web_users: WebUsers
) -> None:
    sign_in(page, live_server, web_users.admin)
    page.goto(f"{live_server.url}/admin/users")
    name = f"leaver-{uuid.uuid4().hex[:6]}@example.com"
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password", exact=True).fill(FIRST)
    page.get_by_label("Password again").fill(FIRST)
    # The administrator's own password is asked again: a wrong one creates no one.
    page.get_by_label("Your password").fill(FIRST)
    page.get_by_role("button", name="Create user").click()
    expect(page.locator('[id="your_password-error"]')).to_contain_text("This is not your password")
    expect(page.get_by_label("Your password")).to_be_focused()
    expect(page.get_by_label("Username")).to_have_value(name)
    for label in ("Password", "Password again", "Your password"):
        expect(page.get_by_label(label, exact=True)).to_have_value("")
    expect(page.get_by_role("link", name=f"Manage user {name}")).to_have_count(0)
    page.get_by_label("Password", exact=True).fill(FIRST)
    page.get_by_label("Password again").fill(FIRST)
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_role("button", name="Create user").click()
    expect(page.get_by_role("status")).to_contain_text(f"Created the user {name}")

    # The agent works in a browser of their own.
    other = browser.new_context(viewport={"width": 1366, "height": 800})
    agent = other.new_page()
    try:
        sign_in_as(agent, live_server, name, FIRST)
        expect(agent.locator(".who")).to_contain_text(name)

        # The admin sets a new password: spaces only are refused, then the agent's page asks
        # them to sign in.
        page.get_by_role("link", name=f"Manage user {name}").click()
        page.get_by_label("New password", exact=True).fill(" " * 8)
        page.get_by_label("New password again").fill(" " * 8)
        page.get_by_role("button", name="Set password").click()
        expect(page.locator('[id="new_password-error"]')).to_contain_text("not only spaces")
        # The administrator's own password is asked again: a wrong one changes nothing.
        page.get_by_label("New password", exact=True).fill(SECOND)
        page.get_by_label("New password again").fill(SECOND)
        page.locator("#your_password").fill(FIRST)
        page.get_by_role("button", name="Set password").click()
        expect(page.locator('[id="your_password-error"]')).to_contain_text(
            "This is not your password"
        )
        page.get_by_label("New password", exact=True).fill(SECOND)
        page.get_by_label("New password again").fill(SECOND)
        page.locator("#your_password").fill(PASSWORD)
        page.get_by_role("button", name="Set password").click()
        expect(page.get_by_role("status")).to_contain_text(
            f"Set a new password for {name}; ended 1 session."
        )
        agent.reload()
        expect(agent.get_by_role("heading", name="Sign in")).to_be_visible()

        # The agent signs in with it and chooses their own.
        sign_in_as(agent, live_server, name, SECOND)
        agent.get_by_role("link", name="Password", exact=True).click()
        agent.get_by_label("Current password").fill(SECOND)
        agent.get_by_label("New password", exact=True).fill(THIRD)
        agent.get_by_label("New password again").fill(THIRD)
        agent.get_by_role("button", name="Change password").click()
        expect(agent.get_by_role("status")).to_contain_text("Your password has been changed")

        # Deleted after the confirmation step: the box unticked, nothing is deleted.
        page.get_by_role("link", name=f"Delete user {name}").click()
        page.get_by_role("button", name="Delete user").click()
        expect(page.locator('[id="confirm-error"]')).to_contain_text("Tick the box")
        agent.reload()
        expect(agent.get_by_role("heading", name="Your password")).to_be_visible()
        page.get_by_label("Delete this user for good").check()
        page.get_by_label("Your password").fill(PASSWORD)
        page.get_by_role("button", name="Delete user").click()
        expect(page.get_by_role("status")).to_contain_text(f"Deleted the user {name}")
        expect(page.get_by_role("row", name=name)).to_have_count(0)
        agent.reload()
        expect(agent.get_by_role("heading", name="Sign in")).to_be_visible()
        sign_in_as(agent, live_server, name, THIRD)
        expect(agent.get_by_role("alert")).to_contain_text("The username or password is not right")
    finally:
        other.close()

    # The only administrator cannot delete themselves.
    page.get_by_role("link", name=f"Delete user {web_users.admin}").click()
    page.get_by_label("Delete this user for good").check()
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_role("button", name="Delete user").click()
    expect(page.locator('[id="confirm-error"]')).to_contain_text(
        f"{web_users.admin} is the last administrator"
    )
    screenshot(page, "admin-user-delete", live_server)
