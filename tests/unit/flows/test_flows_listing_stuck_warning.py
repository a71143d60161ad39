"""An Event flow whose source's listing hangs says so in the log, once, not silently — on SQLite
and PostgreSQL.

A Scheduled or asked-for run whose listing does not end within LISTING_LIMIT ends FAILED saying
so, and while that listing goes on the flow's later runs fail at once saying so too. An Event
flow's check makes no run: it passed the flow over without a word, so a hung mount stopped the
flow and nothing showed it. Now the check logs a warning naming the flow and its domain (not the
folder or bucket: a path can be personal data), at most once per LISTING_LIMIT per flow, as the
watcher checks every few seconds. The listing hangs for real, on an event the test sets; the
time it has been going is a clock the test moves on."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.context import Services
from openprofiles.flows import listing as flow_listing
from openprofiles.flows import service as flows
from openprofiles.flows.sources import FolderSource

from .test_flows_failed_items import EVENT, TYPE, counts, jsonl, user
from .test_flows_listing_hangs import Clock, HangingListing
from .test_flows_listing_hangs import release as release  # a fixture
from .test_flows_listing_once import listing_threads
from .test_flows_templates import D, flow_definition, put_flow


def stuck_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == flow_listing.__name__
        and r.levelno == logging.WARNING
        and "was not checked for new items" in r.getMessage()
    ]


def test_an_event_flow_whose_listing_hangs_is_logged_once(
    services: Services,
    tmp_path: Path,
    release: threading.Event,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(flow_listing, "RENEW_EVERY", timedelta(seconds=0.01))
    # No flow warned of yet (an earlier test's Services may have had the same id).
    monkeypatch.setattr(flow_listing, "_STUCK_WARNED", {}, raising=False)
    caplog.set_level(logging.WARNING, logger=flow_listing.__name__)
    before = set(threading.enumerate())
    make_domain(services, D)
    folder = tmp_path / "customer-jane.doe@example.com"
    folder.mkdir()
    (folder / "a.jsonl").write_text(jsonl(user(1)))
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder), trigger=EVENT))
    clock = Clock()
    hung = HangingListing(FolderSource(services.settings, str(folder)), clock, release)
    run = flows.run_flow(
        services, domain_name=D, flow_name="crm", trigger="Event", source=hung, clock=clock
    )
    assert run.status == "FAILED"
    assert stuck_warnings(caplog) == []

    # The watcher's checks pass the flow over, the listing still hung: one warning.
    for _ in range(3):
        assert flows.run_due_flows(services, now=datetime.now(UTC)) == []
    [warning] = stuck_warnings(caplog)
    message = warning.getMessage()
    assert "Flow crm of domain " + D in message
    assert "jane.doe" not in message and str(folder) not in message

    # It returns: the next check lists the source and runs the flow.
    release.set()
    for thread in listing_threads(before):
        thread.join()
    [ran] = flows.run_due_flows(services, now=datetime.now(UTC))
    assert counts(ran) == ("COMPLETED", 1, 1, 1, 0)
    assert len(stuck_warnings(caplog)) == 1
