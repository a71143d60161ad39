"""An item a run began and did not finish — its process killed, or an error escaping the run —
is resumed by the next incremental run after the records the first one committed — on SQLite
and PostgreSQL.

It used to be read again from its first record: what was applied was applied again (harmless
for objects, stored under their UNIQUE key), but the next run counted those records again, and
dead-lettered again the ones that had failed. The crash is a real source (a folder) whose
stream breaks off after a given byte, as a killed process or a bug would stop the run there:
the item is read as JSON lines (MAX_DOCUMENT_BYTES made small), so its first batches are
committed before the break."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.context import Services
from openprofiles.flows import batches as flow_batches
from openprofiles.flows import items
from openprofiles.flows import runs as flow_runs
from openprofiles.flows import service as flows
from openprofiles.flows.sources import FolderSource, ItemStream, SourceItem

from .test_flows_failed_items import EVENT, TYPE, counts, ingested, jsonl, letters, user
from .test_flows_one_run_at_a_time import age, runs
from .test_flows_templates import D, flow_definition, put_flow


class Killed(BaseException):
    """The process killed: not an Exception, so the run does not even end FAILED."""


class _Breaking:
    """The stream of `inner`, handed out a few bytes at a time (as a slow network would),
    raising `error` once asked for more than its first `at` bytes."""

    def __init__(self, inner: ItemStream, at: int, error: BaseException) -> None:
        self.inner, self.at, self.error = inner, at, error
        self.version = inner.version
        self.given = 0

    def read(self, size: int) -> bytes:
        if self.given >= self.at:
            raise self.error
        data = self.inner.read(min(size, 64, self.at - self.given))
        self.given += len(data)
        return data

    def __enter__(self) -> _Breaking:
        return self

    def __exit__(self, *exc: object) -> None:
        self.inner.__exit__(*exc)


class BreakingSource:
    """A folder whose item `key` breaks off after `at` bytes."""

    def __init__(self, inner: FolderSource, key: str, at: int, error: BaseException) -> None:
        self.inner, self.key, self.at, self.error = inner, key, at, error

    def items(self) -> list[SourceItem]:
        return self.inner.items()

    def open(self, key: str) -> ItemStream:
        stream = self.inner.open(key)
        return _Breaking(stream, self.at, self.error) if key == self.key else stream

    def describe(self, key: str) -> str:
        return self.inner.describe(key)


RECORDS: list[dict[str, Any]] = [
    user(1),
    {"no": "id"},
    user(3),
    user(4),
    user(5),
    user(6),
    user(7),
]


@pytest.fixture
def streamed(monkeypatch: pytest.MonkeyPatch) -> None:
    # Batches of two records, and items read as JSON lines from their first few hundred bytes.
    monkeypatch.setattr(flow_batches, "BATCH_SIZE", 2)
    monkeypatch.setattr(items, "MAX_DOCUMENT_BYTES", 400)


def export(services: Services, tmp_path: Path) -> Path:
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "a.jsonl").write_text(jsonl(*RECORDS))
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder), trigger=EVENT))
    return folder


def fifth_line_end() -> int:
    """Where the item breaks off: after its fifth record, so that two batches (records 1-4)
    are committed and the third (record 5) is not."""
    return len(jsonl(*RECORDS[:5]).encode())


@pytest.mark.parametrize(
    "crash", [Killed(), RuntimeError("a bug")], ids=["process-killed", "error-escaping"]
)
@pytest.mark.usefixtures("streamed")
def test_an_item_begun_by_a_run_that_crashed_is_resumed_after_its_committed_batches(
    services: Services, tmp_path: Path, crash: BaseException
) -> None:
    folder = export(services, tmp_path)
    source = BreakingSource(
        FolderSource(services.settings, str(folder)), "a.jsonl", fifth_line_end(), crash
    )
    with pytest.raises(type(crash)):
        flows.run_flow(services, domain_name=D, flow_name="crm", trigger="Event", source=source)
    [first] = runs(services)
    # Two batches committed: records 1-4, one of them dead-lettered.
    assert counts(first)[1:] == (0, 4, 3, 1)
    if isinstance(crash, Killed):
        # Still RUNNING: the next run takes the flow over once it has been silent long enough.
        assert first.status == "RUNNING"
        age(services, first.run_id, flow_runs.STALE_AFTER)
    else:
        assert first.status == "FAILED"

    # The watcher finds the item pending (begun, not finished) and resumes it.
    [second] = flows.run_due_flows(services, now=datetime.now(UTC))
    assert counts(second) == ("COMPLETED", 1, 3, 3, 0)
    assert ingested(services, 1, 3, 4, 5, 6, 7) == [1, 3, 4, 5, 6, 7]
    # The record that failed was dead-lettered once.
    [letter] = letters(services)
    assert letter.attempts == 1
    # Every record counted once, over both runs.
    [done, crashed] = runs(services)
    assert done.run_id == second.run_id and crashed.run_id == first.run_id
    assert crashed.records_read + done.records_read == len(RECORDS)
    # Finished: checkpointed whole, nothing pending.
    assert flows.run_due_flows(services, now=datetime.now(UTC)) == []


@pytest.mark.usefixtures("streamed")
def test_an_item_changed_since_a_crash_is_read_from_its_start(
    services: Services, tmp_path: Path
) -> None:
    """The records counted belong to the content read then: a new version is a new item."""
    folder = export(services, tmp_path)
    source = BreakingSource(
        FolderSource(services.settings, str(folder)), "a.jsonl", fifth_line_end(), RuntimeError()
    )
    with pytest.raises(RuntimeError):
        flows.run_flow(services, domain_name=D, flow_name="crm", trigger="Event", source=source)
    (folder / "a.jsonl").write_text(jsonl(user(11), user(12), user(13), user(14), user(15)))
    [second] = flows.run_due_flows(services, now=datetime.now(UTC))
    assert counts(second) == ("COMPLETED", 1, 5, 5, 0)
    assert ingested(services, 11, 12, 13, 14, 15) == [11, 12, 13, 14, 15]


@pytest.mark.usefixtures("streamed")
def test_a_run_that_reads_every_item_reads_a_begun_item_whole(
    services: Services, tmp_path: Path
) -> None:
    """A run that reads every item (an OnDemand flow's, DataPullMode Complete's) reads them
    whole, the one begun as the ones read before; the next
    incremental run then finds it finished."""
    folder = export(services, tmp_path)
    source = BreakingSource(
        FolderSource(services.settings, str(folder)), "a.jsonl", fifth_line_end(), RuntimeError()
    )
    with pytest.raises(RuntimeError):
        flows.run_flow(services, domain_name=D, flow_name="crm", trigger="Event", source=source)
    whole = flows.run_flow(services, domain_name=D, flow_name="crm", complete=True)
    assert counts(whole) == ("COMPLETED", 1, 7, 6, 1)
    assert flows.run_due_flows(services, now=datetime.now(UTC)) == []
