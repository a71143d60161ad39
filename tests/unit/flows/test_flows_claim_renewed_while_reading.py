"""A run keeps its claim on its flow while it reads an item without applying any of it — on
SQLite and PostgreSQL.

The claim was renewed only by the transactions that commit work (and before each item): a
resumed streamed item, whose records an earlier run applied and which are read again and passed
over, or a line too long to keep, read to its end, committed nothing, so on a huge item the
run went silent for longer than STALE_AFTER, and another run could take the flow over and read
it at the same time. Time passes as the item is read: each read of the stream moves the run's
clock (Renewal's) and its last progress in the database on by RENEW_EVERY, as if that read had
taken a minute; when the reading is past the part that commits nothing, another process asks
for a run of the flow.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select, update
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.context import Services
from openprofiles.errors import BadRequest
from openprofiles.flows import batches as flow_batches
from openprofiles.flows import items
from openprofiles.flows import listing as flow_listing
from openprofiles.flows import runs as flow_runs
from openprofiles.flows import service as flows
from openprofiles.flows.models import FlowRun
from openprofiles.flows.sources import FolderSource, ItemStream, SourceItem
from openprofiles.store.schema import flow_run

from .test_flows_failed_items import EVENT, TYPE, counts, ingested, jsonl, user
from .test_flows_listing_hangs import Clock
from .test_flows_one_run_at_a_time import age, runs
from .test_flows_one_run_at_a_time import other as other  # a fixture
from .test_flows_resumed_items import BreakingSource, Killed
from .test_flows_templates import D, flow_definition, put_flow

# The time one read of the stream takes.
READ_TAKES = flow_listing.RENEW_EVERY
# Bytes a read hands out: the item takes many reads, each a minute.
READ_BYTES = 16


def silent_for_longer(services: Services) -> None:
    """Each RUNNING run's last progress one read further back (as if the read took READ_TAKES
    by the database's clock too): a claim the run does not renew grows stale."""
    with services.write() as tx:
        for run_id, progress_at in tx.conn.execute(
            select(flow_run.c.run_id, flow_run.c.progress_at).where(flow_run.c.status == "RUNNING")
        ).all():
            tx.conn.execute(
                update(flow_run)
                .where(flow_run.c.run_id == run_id)
                .values(progress_at=progress_at - READ_TAKES)
            )


class _Slow:
    """The stream of `inner`, READ_BYTES a read, each taking READ_TAKES; `past` is called once
    the first `at` bytes have been handed out."""

    def __init__(self, inner: ItemStream, services: Services, clock: Clock, at: int) -> None:
        self.inner, self.services, self.clock, self.at = inner, services, clock, at
        self.version = inner.version
        self.given = 0
        self.past: Callable[[], None] = lambda: None

    def read(self, size: int) -> bytes:
        data = self.inner.read(min(size, READ_BYTES))
        self.clock.seconds += READ_TAKES.total_seconds()
        silent_for_longer(self.services)
        before, self.given = self.given, self.given + len(data)
        if before < self.at <= self.given:
            self.past()
        return data

    def __enter__(self) -> _Slow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.inner.__exit__(*exc)


class SlowSource:
    """A folder whose items are read slowly (`_Slow`), `past` called once the first `at` bytes
    of one are read."""

    def __init__(self, folder: Path, services: Services, clock: Clock, at: int) -> None:
        self.inner = FolderSource(services.settings, str(folder))
        self.services, self.clock, self.at = services, clock, at
        self.past: Callable[[], None] = lambda: None

    def items(self) -> list[SourceItem]:
        return self.inner.items()

    def open(self, key: str) -> ItemStream:
        stream = _Slow(self.inner.open(key), self.services, self.clock, self.at)
        stream.past = self.past
        return stream

    def describe(self, key: str) -> str:
        return self.inner.describe(key)


@pytest.fixture(autouse=True)
def streamed(monkeypatch: pytest.MonkeyPatch) -> None:
    # Batches of two records, and items read as JSON lines from their first few hundred bytes.
    monkeypatch.setattr(flow_batches, "BATCH_SIZE", 2)
    monkeypatch.setattr(items, "MAX_DOCUMENT_BYTES", 400)


def export(services: Services, tmp_path: Path, text: str) -> Path:
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "a.jsonl").write_text(text)
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder), trigger=EVENT))
    return folder


def asked_for_meanwhile(elsewhere: Services, refused: list[str], took_over: list[FlowRun]) -> None:
    """Another process asks for a run of the flow (the admin pages' button)."""
    try:
        took_over.append(flows.run_flow(elsewhere, domain_name=D, flow_name="crm"))
    except BadRequest as exc:
        refused.append(exc.message)


def test_a_resumed_item_keeps_the_claim_while_its_applied_records_are_passed_over(
    services: Services, other: Services, tmp_path: Path
) -> None:
    records = [user(n) for n in range(1, 25)]
    folder = export(services, tmp_path, jsonl(*records))
    # A first run killed after 20 records (10 batches) were committed; its claim expired.
    applied = len(jsonl(*records[:20]).encode())
    breaking = BreakingSource(
        FolderSource(services.settings, str(folder)), "a.jsonl", applied, Killed()
    )
    with pytest.raises(Killed):
        flows.run_flow(services, domain_name=D, flow_name="crm", trigger="Event", source=breaking)
    [killed] = runs(services)
    assert counts(killed)[1:] == (0, 20, 20, 0)
    age(services, killed.run_id, flow_runs.STALE_AFTER)

    # The next run resumes it: passing over the 20 records takes far longer than STALE_AFTER
    # (a read a minute), and commits nothing.
    assert applied / READ_BYTES * READ_TAKES > 2 * flow_runs.STALE_AFTER
    refused: list[str] = []
    took_over: list[FlowRun] = []
    clock = Clock()
    source = SlowSource(folder, services, clock, applied)
    source.past = lambda: asked_for_meanwhile(other, refused, took_over)
    run = flows.run_flow(
        services, domain_name=D, flow_name="crm", trigger="Event", source=source, clock=clock
    )

    assert took_over == []
    [message] = refused
    assert message.startswith(f"A run of the flow crm is in progress in domain {D} (run ")
    assert run.run_id in message
    assert counts(run) == ("COMPLETED", 1, 4, 4, 0)
    assert ingested(services, 21, 22, 23, 24) == [21, 22, 23, 24]


def test_a_line_too_long_to_keep_keeps_the_claim_while_it_is_read_to_its_end(
    services: Services, other: Services, tmp_path: Path
) -> None:
    long_line = '{"id": "' + "x" * 3000 + '"}\n'
    text = jsonl(user(1), user(2)) + long_line + jsonl(user(3))
    folder = export(services, tmp_path, text)
    past_long_line = len((jsonl(user(1), user(2)) + long_line).encode())
    # The long line takes far longer to read than STALE_AFTER, and commits nothing.
    assert len(long_line) / READ_BYTES * READ_TAKES > 2 * flow_runs.STALE_AFTER
    refused: list[str] = []
    took_over: list[FlowRun] = []
    clock = Clock()
    source = SlowSource(folder, services, clock, past_long_line)
    source.past = lambda: asked_for_meanwhile(other, refused, took_over)
    run = flows.run_flow(
        services, domain_name=D, flow_name="crm", trigger="Event", source=source, clock=clock
    )

    assert took_over == []
    [message] = refused
    assert run.run_id in message
    # The long line dead-lettered alone; the records around it ingested.
    assert counts(run) == ("COMPLETED", 1, 4, 3, 1)
    assert ingested(services, 1, 2, 3) == [1, 2, 3]
