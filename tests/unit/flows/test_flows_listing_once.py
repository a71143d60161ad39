"""A source that keeps hanging holds one listing thread, not one more every pass — on SQLite
and PostgreSQL.

A listing that does not end within LISTING_LIMIT fails its run and is left to its thread (it
cannot be interrupted). Every later pass listed the same hung source again in a thread of its
own, so a hung network mount or an endpoint that never answers piled up threads, and their
sockets and file handles, without bound. Now a flow's source is not listed again while a
listing of it goes on in the process: the run ends FAILED at once, saying so (an Event check
passes the flow over), and once the hung listing returns the next pass lists as before. The
listing here hangs for real, on an event the test sets; the time it has been going is a clock
the test moves on."""

from __future__ import annotations

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
from .test_flows_one_run_at_a_time import runs
from .test_flows_templates import D, flow_definition, put_flow

PASSES = 5


def listing_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    """The listing threads alive now that were not before the test (another test's may still
    be ending)."""
    return [
        t
        for t in threading.enumerate()
        if t.name == "flow-listing" and t.is_alive() and t not in before
    ]


def test_a_hung_listing_is_not_begun_again_while_it_goes_on(
    services: Services, tmp_path: Path, release: threading.Event, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The run looks at its listing (and renews its claim) this often.
    monkeypatch.setattr(flow_listing, "RENEW_EVERY", timedelta(seconds=0.01))
    before = set(threading.enumerate())
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "a.jsonl").write_text(jsonl(user(1), user(2)))
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder), trigger=EVENT))
    clock = Clock()

    def hanging() -> HangingListing:
        # Each pass makes its source afresh, as the watcher does (flows.sources.source_for).
        return HangingListing(FolderSource(services.settings, str(folder)), clock, release)

    first = flows.run_flow(
        services, domain_name=D, flow_name="crm", trigger="Event", source=hanging(), clock=clock
    )
    assert counts(first) == ("FAILED", 0, 0, 0, 0)
    assert first.error is not None and first.error.startswith("The listing of the source did")
    assert len(listing_threads(before)) == 1

    for _ in range(PASSES):
        again = flows.run_flow(
            services, domain_name=D, flow_name="crm", trigger="Event", source=hanging(), clock=clock
        )
        assert counts(again) == ("FAILED", 0, 0, 0, 0)
        assert again.error is not None
        assert again.error.startswith("The source was not listed: an earlier listing of it")
        # The watcher's Event check lists the same source: passed over, nothing begun.
        assert flows.run_due_flows(services, now=datetime.now(UTC)) == []
        assert len(listing_threads(before)) == 1
    assert [r.status for r in runs(services)] == ["FAILED"] * (PASSES + 1)

    # The hung listing returns at last: the next pass lists the source, and reads it.
    release.set()
    for thread in listing_threads(before):
        thread.join()
    [run] = flows.run_due_flows(services, now=datetime.now(UTC))
    assert counts(run) == ("COMPLETED", 1, 2, 2, 0)
    assert listing_threads(before) == []


def test_another_flow_on_another_source_lists_while_one_hangs(
    services: Services, tmp_path: Path, release: threading.Event, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the hung source's listing is held back."""
    monkeypatch.setattr(flow_listing, "RENEW_EVERY", timedelta(seconds=0.01))
    make_domain(services, D)
    for name in ("hung", "fine"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.jsonl").write_text(jsonl(user(1 if name == "hung" else 2)))
        definition = flow_definition(name, "file://", str(tmp_path / name), trigger=EVENT)
        put_flow(services, name, TYPE, definition)
    clock = Clock()
    source = HangingListing(FolderSource(services.settings, str(tmp_path / "hung")), clock, release)
    hung = flows.run_flow(
        services, domain_name=D, flow_name="hung", trigger="Event", source=source, clock=clock
    )
    assert hung.status == "FAILED"

    [fine] = flows.run_due_flows(services, now=datetime.now(UTC))
    assert (fine.flow_name, counts(fine)) == ("fine", ("COMPLETED", 1, 1, 1, 0))
