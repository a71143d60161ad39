"""In Chromium, one browser signed in to two OpenProfiles servers on two ports of 127.0.0.1 at
once (a second installation, a test server beside a working one). Cookies ignore ports, and both
named their session cookie "op_session": signing in to the second replaced the first's cookie,
so the agent was signed out of the first (and the first was sent the second's session). Each
installation's cookies now have names of their own, and signing out of one leaves the other."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from tests.browser.conftest import PASSWORD, WebUsers, sign_in
from tests.support.server import LiveServer, run_server

from openprofiles.settings import Settings

pytestmark = pytest.mark.browser

SECOND_AGENT = "agent-second"


@pytest.fixture
def second_server(tmp_path: Path) -> Iterator[LiveServer]:
    """Another installation (its own data directory and keyring, SQLite), on another port."""
    settings = Settings(data_dir=tmp_path / "second", matching_schedule_check_seconds=0)
    with run_server(settings) as server:
        server.create_web_user(SECOND_AGENT, PASSWORD, "agent")
        yield server


def _signed_in_as(page: Page, server: LiveServer, username: str) -> None:
    page.goto(f"{server.url}/agent/")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    expect(page.locator(".who")).to_contain_text(username)


def _signed_out(page: Page, server: LiveServer) -> None:
    page.goto(f"{server.url}/agent/")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()


def test_two_servers_on_two_ports_keep_their_own_sessions(
    page: Page, live_server: LiveServer, web_users: WebUsers, second_server: LiveServer
) -> None:
    assert live_server.url.rsplit(":", 1)[0] == second_server.url.rsplit(":", 1)[0]
    sign_in(page, live_server, web_users.agent)
    _signed_in_as(page, live_server, web_users.agent)

    sign_in(page, second_server, SECOND_AGENT)

    _signed_in_as(page, second_server, SECOND_AGENT)
    _signed_in_as(page, live_server, web_users.agent)
    sessions = [c for c in page.context.cookies() if c["name"].startswith("op_session")]
    assert len({c["name"] for c in sessions}) == 2, sessions
    for cookie in sessions:
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/"

    # Signing out of the second clears its own cookie only.
    page.goto(f"{second_server.url}/agent/")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    _signed_out(page, second_server)
    _signed_in_as(page, live_server, web_users.agent)
    left = [c for c in page.context.cookies() if c["name"].startswith("op_session")]
    assert len(left) == 1 and left[0]["name"] in {c["name"] for c in sessions}
