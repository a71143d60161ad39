"""A source whose listing never ends no longer holds its flow for ever — on SQLite and
PostgreSQL.

A run renews its claim while it lists its source (a huge bucket takes minutes), so a listing
that never ended (a hung network mount, an endpoint handing out pages for ever) renewed it for
ever: the run stayed RUNNING, and no other run could take the flow. The run now ends FAILED once
the listing has gone on for LISTING_LIMIT, saying so, and the flow is free. The listing here
hangs for real (until the test ends); the time it has been going is a clock the test moves on."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.context import Services
from openprofiles.flows import listing as flow_listing
from openprofiles.flows import service as flows
from openprofiles.flows.sources import FolderSource, ItemStream, SourceItem

from .test_flows_failed_items import EVENT, TYPE, counts, jsonl, user
from .test_flows_one_run_at_a_time import runs
from .test_flows_templates import D, flow_definition, put_flow


class Clock:
    """Seconds, moved on by the test."""

    def __init__(self) -> None:
        self.seconds = 1000.0

    def __call__(self) -> float:
        return self.seconds


class HangingListing:
    """A folder whose listing, once begun, runs for longer than LISTING_LIMIT by `clock`, then
    never ends (until `release`)."""

    def __init__(self, inner: FolderSource, clock: Clock, release: threading.Event) -> None:
        self.inner, self.clock, self.release = inner, clock, release

    def items(self) -> list[SourceItem]:
        self.clock.seconds += flow_listing.LISTING_LIMIT.total_seconds()
        self.release.wait()
        return self.inner.items()

    def open(self, key: str) -> ItemStream:
        return self.inner.open(key)

    def describe(self, key: str) -> str:
        return self.inner.describe(key)


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Ends the hung listing's thread once the test is done."""
    event = threading.Event()
    try:
        yield event
    finally:
        event.set()


def test_a_listing_that_never_ends_fails_the_run_and_frees_the_flow(
    services: Services, tmp_path: Path, release: threading.Event, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The run looks at its listing (and renews its claim) this often.
    monkeypatch.setattr(flow_listing, "RENEW_EVERY", timedelta(seconds=0.01))
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "a.jsonl").write_text(jsonl(user(1), user(2)))
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder), trigger=EVENT))
    clock = Clock()
    source = HangingListing(FolderSource(services.settings, str(folder)), clock, release)

    run = flows.run_flow(
        services, domain_name=D, flow_name="crm", trigger="Event", source=source, clock=clock
    )
    assert counts(run) == ("FAILED", 0, 0, 0, 0)
    assert run.error is not None
    assert run.error.startswith("The listing of the source did not end within 60 minutes")
    [stored] = runs(services)
    assert (stored.run_id, stored.status, stored.error) == (run.run_id, "FAILED", run.error)
    # The flow is free: the next run (the listing still hung) takes it at once. It does not
    # list the source while the hung listing goes on (test_flows_listing_once), and says so;
    # once that listing has returned, the next run reads it.
    assert not release.is_set()
    again = flows.run_flow(services, domain_name=D, flow_name="crm", trigger="Event")
    assert counts(again) == ("FAILED", 0, 0, 0, 0)
    assert again.error is not None and again.error.startswith("The source was not listed")
    release.set()
    for thread in threading.enumerate():
        if thread.name == "flow-listing":
            thread.join()
    last = flows.run_flow(services, domain_name=D, flow_name="crm", trigger="Event")
    assert counts(last) == ("COMPLETED", 1, 2, 2, 0)
