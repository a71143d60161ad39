"""What the reviewer saw in Chromium, on a live server (both backends): contacts posted to
/contact-records one request at a time are shown newest contact first on the page the screen
pop opens, in the browser's time zone (in UTC without script), and a domain whose key is
disabled neither breaks the screen pop for the others nor tells an agent to run an
administrator's command."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect
from tests.browser.conftest import WebUsers, screenshot, sign_in
from tests.support.backends import database_url_for
from tests.support.server import LiveServer, run_server
from tests.unit.integrations.integ_helpers import ctr
from tests.wire.test_contact_records_http import post

from openprofiles.crypto.keyring import Keyring
from openprofiles.settings import Settings


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def live_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A live server without a data-key cache: a key disabled is noticed at the next page."""
    tmp = tmp_path_factory.mktemp("server")
    with database_url_for(request.param, tmp) as url:
        settings = Settings(
            data_dir=tmp / "data",
            database_url=url,
            matching_schedule_check_seconds=0,
            data_key_cache_seconds=0,
        )
        with run_server(settings) as server:
            yield server


@pytest.fixture(scope="module")
def contacts(live_server: LiveServer) -> dict[str, str]:
    """A domain fed by an instance, and the ids of contacts of Jan 3, Jan 1 and Jan 2 (by
    start), each posted in its own request in that order."""
    domain = f"calls-{uuid.uuid4().hex[:8]}"
    instance = f"arn:aws:connect:us-east-1:111122223333:instance/{uuid.uuid4()}"
    client = live_server.client()
    client.create_domain(DomainName=domain, DefaultExpirationDays=366)
    client.put_integration(DomainName=domain, Uri=instance)
    ids = {day: f"c1-{day}-{uuid.uuid4().hex[:6]}" for day in (3, 1, 2)}
    for day, contact_id in ids.items():
        record = ctr(contact_id, instance=instance, start=f"2026-01-0{day}T09:00:00Z")
        assert post(live_server, "/contact-records", json.dumps(record)).json()["Accepted"] == 1
    return {"domain": domain, **{f"jan{day}": contact_id for day, contact_id in ids.items()}}


def history_starts(page: Page) -> list[str]:
    rows = page.locator(".history table tbody tr")
    return [rows.nth(i).locator("td").nth(1).inner_text() for i in range(rows.count())]


def test_the_screen_pop_shows_the_contacts_newest_first(
    page: Page, live_server: LiveServer, web_users: WebUsers, contacts: dict[str, str]
) -> None:
    sign_in(page, live_server, web_users.agent)
    page.goto(f"{live_server.url}/agent/contacts/{contacts['jan1']}")
    expect(page.get_by_role("heading", name="Contact history and records")).to_be_visible()
    assert f"/agent/domains/{contacts['domain']}/profiles/" in page.url
    assert history_starts(page) == [
        "2026-01-03 09:00:00 UTC",
        "2026-01-02 09:00:00 UTC",
        "2026-01-01 09:00:00 UTC",
    ]
    screenshot(page, "agent-contact-history-order", live_server)


def test_a_domain_with_a_disabled_key_does_not_stop_the_screen_pop(
    page: Page, live_server: LiveServer, web_users: WebUsers, contacts: dict[str, str]
) -> None:
    settings = live_server.settings
    keyring = Keyring(settings.keyring_path)
    key = keyring.create_key(f"keyed-{uuid.uuid4().hex[:6]}")
    keyed = f"keyed-{uuid.uuid4().hex[:8]}"
    client = live_server.client()
    client.create_domain(
        DomainName=keyed,
        DefaultExpirationDays=366,
        DefaultEncryptionKey=key.arn(settings.region, settings.account_id),
    )
    keyed_profile = client.create_profile(DomainName=keyed, FirstName="Kofi")["ProfileId"]
    keyring.disable(key.key_id)
    try:
        sign_in(page, live_server, web_users.agent)
        page.goto(f"{live_server.url}/agent/contacts/{contacts['jan2']}")
        expect(page.get_by_role("heading", name="Contact history and records")).to_be_visible()
        assert f"/agent/domains/{contacts['domain']}/profiles/" in page.url

        page.goto(f"{live_server.url}/agent/contacts/{uuid.uuid4()}")
        expect(page.get_by_text(f"Not searched: {keyed}.")).to_be_visible()
        expect(page.get_by_text("No profile in the domains searched is linked")).to_be_visible()
        # The one domain left to search in: its search box.
        expect(page.get_by_label("Search customers")).to_be_visible()
        screenshot(page, "agent-screen-pop-unreadable-domain", live_server)

        answer = page.goto(f"{live_server.url}/agent/domains/{keyed}/profiles/{keyed_profile}")
        assert answer is not None and answer.status == 403
        expect(page.get_by_text("Ask an administrator")).to_be_visible()
        assert "openprofiles keys" not in page.content()
    finally:
        keyring.enable(key.key_id)


@pytest.mark.parametrize(
    ("script", "starts"),
    [
        # The browser's zone, with its short name; 09:00 UTC is 04:00 in New York in January.
        (True, ["2026-01-03 04:00:00 EST", "2026-01-02 04:00:00 EST", "2026-01-01 04:00:00 EST"]),
        # Without script, the page's own UTC text, which says it is UTC.
        (False, ["2026-01-03 09:00:00 UTC", "2026-01-02 09:00:00 UTC", "2026-01-01 09:00:00 UTC"]),
    ],
)
def test_contact_times_read_in_the_browsers_time_zone(
    browser: Browser,
    live_server: LiveServer,
    web_users: WebUsers,
    contacts: dict[str, str],
    script: bool,
    starts: list[str],
) -> None:
    context = browser.new_context(
        timezone_id="America/New_York", locale="en-US", java_script_enabled=script
    )
    try:
        page = context.new_page()
        sign_in(page, live_server, web_users.agent)
        page.goto(f"{live_server.url}/agent/contacts/{contacts['jan1']}")
        expect(page.get_by_role("heading", name="Contact history and records")).to_be_visible()
        if script:
            expect(page.locator(".history time").first).to_have_text(starts[0])
            # The UTC reading stays at hand, for comparing with other systems' logs.
            expect(page.locator(".history time").first).to_have_attribute(
                "title", "2026-01-03 09:00:00 UTC"
            )
        assert history_starts(page) == starts
        assert page.locator(".history time").first.get_attribute("datetime") == (
            "2026-01-03T09:00:00Z"
        )
        screenshot(page, f"agent-contact-times-{'local' if script else 'utc'}", live_server)
    finally:
        context.close()
