"""Times on the profile page (a contact's start, when records and the profile were written) are
`<time datetime>` elements in UTC, readable as they are without script, which the page's one
script (static/local-time.js) rewrites to the browser's time zone (tests/browser checks that)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from starlette.testclient import TestClient
from tests.unit.integrations.integ_helpers import associate, ctr, send
from tests.unit.ui.test_ui_private_urls import (
    agent,  # noqa: F401  (the fixture: acme with 21 namesakes, and other)
    app_client,  # noqa: F401  (the fixture agent needs)
)

from openprofiles.ui.history import ShownTime, shown_time


def test_a_time_is_shown_in_utc_and_given_in_iso_utc() -> None:
    # 09:00 in New York in January is 14:00 UTC.
    new_york = datetime(2026, 1, 3, 9, 0, 5, tzinfo=timezone(timedelta(hours=-5)))
    assert shown_time(new_york, seconds=True) == ShownTime(
        "2026-01-03T14:00:05Z", "2026-01-03 14:00:05 UTC"
    )
    assert shown_time(new_york) == ShownTime("2026-01-03T14:00:05Z", "2026-01-03 14:00 UTC")
    # As the store keeps times: without a zone, they are UTC.
    assert shown_time(datetime(2026, 1, 3, 9, 0)) == ShownTime(
        "2026-01-03T09:00:00Z", "2026-01-03 09:00 UTC"
    )
    # To the second, in the attribute too.
    assert shown_time(datetime(2026, 1, 3, 9, 0, 0, 999, tzinfo=UTC)) == ShownTime(
        "2026-01-03T09:00:00Z", "2026-01-03 09:00 UTC"
    )
    assert shown_time(None) is None


def test_the_profile_page_marks_its_times_and_loads_the_script_that_localises_them(
    agent: TestClient,  # noqa: F811
) -> None:
    services = agent.app.state.services  # type: ignore[attr-defined]
    associate(services, "acme")
    send(services, ctr("c-times-1", start="2026-01-03T09:00:00Z"))
    popped = agent.get("/agent/contacts/c-times-1", params={"domain": "acme"})
    page = agent.get(popped.headers["location"]).text
    # The contact's start, in the contact history table, with the UTC text as the fallback.
    assert (
        '<td dir="auto"><time datetime="2026-01-03T09:00:00Z">2026-01-03 09:00:00 UTC</time>'
        in page
    )
    # When the record and the profile were written.
    iso_utc, minute = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r"\d{4}-\d\d-\d\d \d\d:\d\d"
    written = re.findall(rf'<time datetime="({iso_utc})">({minute}) UTC</time>', page)
    assert len(written) == 2
    for iso, text in written:
        assert iso.replace("T", " ").startswith(text)
    assert '<script src="/static/local-time.js" defer></script>' in page
    script = agent.get("/static/local-time.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert 'querySelectorAll("time[datetime]")' in script.text
