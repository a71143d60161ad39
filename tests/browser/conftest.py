"""Playwright on Debian's Chromium, against a live server, for the browser tests.

In CI a missing Chromium fails the run: a skipped browser tier is an untested one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page
from tests.support.server import LiveServer

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).with_name("artifacts")
PASSWORD = "browser-test-password"


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not os.path.exists(CHROMIUM):
        message = f"{CHROMIUM} is missing: apt-get install -y chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class WebUsers:
    admin: str
    agent: str


@pytest.fixture(scope="module")
def web_users(live_server: LiveServer) -> WebUsers:
    suffix = uuid.uuid4().hex[:6]
    users = WebUsers(admin=f"admin-{suffix}", agent=f"agent-{suffix}")
    live_server.create_web_user(users.admin, PASSWORD, "admin")
    live_server.create_web_user(users.agent, PASSWORD, "agent")
    return users


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    # A laptop screen.
    context = browser.new_context(viewport={"width": 1366, "height": 800})
    opened = context.new_page()
    try:
        yield opened
    finally:
        context.close()


def sign_in(page: Page, live_server: LiveServer, username: str) -> None:
    page.goto(f"{live_server.url}/ui/sign-in")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def screenshot(page: Page, name: str, live_server: LiveServer) -> None:
    backend = "sqlite" if live_server.settings.is_sqlite else "postgres"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}-{backend}.png"), full_page=True)
