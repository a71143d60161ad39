"""In Chromium: an edit saved after the agent's session ended is not lost. The sign-in page keeps
it (only for a form the browser says came from this site: Sec-Fetch-Site, which Chromium
sends), and after signing in the agent goes back to the form with what they typed, to save."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import update
from tests.browser.conftest import PASSWORD, WebUsers, screenshot, sign_in
from tests.browser.test_browser_pages import unique
from tests.support.server import LiveServer

from openprofiles.store.schema import web_session
from openprofiles.users.service import SESSION_IDLE

pytestmark = pytest.mark.browser


def test_an_edit_sent_after_the_session_ended_is_kept_through_sign_in(
    page: Page, live_server: LiveServer, web_users: WebUsers
) -> None:
    domain = unique("kept")
    client = live_server.client()
    client.create_domain(DomainName=domain, DefaultExpirationDays=366)
    profile_id = client.create_profile(DomainName=domain, FirstName="Efua")["ProfileId"]
    sign_in(page, live_server, web_users.agent)
    page.goto(f"{live_server.url}/agent/domains/{domain}/profiles/{profile_id}/edit")
    page.get_by_label("Last name").fill("Owusu-Ansah")
    # The agent was away for over an hour.
    with live_server.services.write() as tx:
        tx.conn.execute(
            update(web_session).values(last_seen_at=tx.now - SESSION_IDLE - timedelta(minutes=1))
        )

    page.get_by_role("button", name="Save changes").click()

    expect(page.get_by_role("status")).to_contain_text("Your session has ended")
    assert "Owusu" not in page.content()
    page.get_by_label("Username").fill(web_users.agent)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Back to the form").click()

    expect(page.get_by_role("status")).to_contain_text("your changes were kept")
    expect(page.get_by_label("Last name")).to_have_value("Owusu-Ansah")
    screenshot(page, "agent-edit-kept", live_server)
    # Not saved by itself: the agent reviews it first.
    found = client.search_profiles(DomainName=domain, KeyName="_profileId", Values=[profile_id])
    assert "LastName" not in found["Items"][0]
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("heading", name="Efua Owusu-Ansah")).to_be_visible()


def test_back_to_the_form_sent_again_gives_the_same_form_back(
    page: Page, live_server: LiveServer, web_users: WebUsers
) -> None:
    """Sent again (here a reload, which Chromium sends as the same POST; a double click sends
    it twice and shows the second answer), "Back to the form" gives the same form back. It was
    given back once only, so the second answer said it was gone and the typing was lost."""
    domain = unique("kept2")
    client = live_server.client()
    client.create_domain(DomainName=domain, DefaultExpirationDays=366)
    profile_id = client.create_profile(DomainName=domain, FirstName="Kwesi")["ProfileId"]
    sign_in(page, live_server, web_users.agent)
    page.goto(f"{live_server.url}/agent/domains/{domain}/profiles/{profile_id}/edit")
    page.get_by_label("Last name").fill("Boateng")
    with live_server.services.write() as tx:
        tx.conn.execute(
            update(web_session).values(last_seen_at=tx.now - SESSION_IDLE - timedelta(minutes=1))
        )
    page.get_by_role("button", name="Save changes").click()
    page.get_by_label("Username").fill(web_users.agent)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.method) if r.url.endswith("/edit") else None)
    page.get_by_role("button", name="Back to the form").click()
    expect(page.get_by_label("Last name")).to_have_value("Boateng")

    page.reload()

    expect(page.get_by_role("status")).to_contain_text("your changes were kept")
    expect(page.get_by_label("Last name")).to_have_value("Boateng")
    assert sent == ["POST", "POST"]  # the reload did send it again
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("heading", name="Kwesi Boateng")).to_be_visible()
