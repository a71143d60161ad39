"""An item whose processing raises an unexpected error every time (a bug, a record that crashes
the mapping: no failure the run knows, ItemFailed or a rejected record) is set aside after
CRASH_ATTEMPTS runs in a row, as a failed item — on SQLite and PostgreSQL.

It used to stop every run at it for ever: each pass of the watcher read it again, the run ended
FAILED with an internal error, and the items after it were never read. Now the runs in a row
that stopped on it are counted in its checkpoint (CRASHED_MARK); the last attempt applies the
batch that stops it one record at a time, and dead-letters the record that raises (its text
kept, the reason saying why); the item is checkpointed failed, so no automatic run reads it
again until it changes, and the run goes on with the next items.

The crashing record is real: a Validate task (VALIDATE_NON_NEGATIVE) compares the number a
record's "NaN" parses to, which raises decimal.InvalidOperation (flows.tasks). The item that
fails while it is read is a real folder whose stream raises a plain error at a given byte, as a
bug in a source would."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.context import Services
from openprofiles.flows import service as flows
from openprofiles.flows.sources import FolderSource

from .test_flows_failed_items import EVENT, TYPE, counts, ingested, jsonl, letters, user
from .test_flows_one_run_at_a_time import runs
from .test_flows_resumed_items import BreakingSource
from .test_flows_resumed_items import streamed as streamed  # a fixture
from .test_flows_templates import D, flow_definition, put_flow

NON_NEGATIVE_ID: list[dict[str, Any]] = [
    {
        "TaskType": "Validate",
        "SourceFields": ["id"],
        "TaskProperties": {"VALIDATION_ACTION": "NoOp"},
        "ConnectorOperator": {"S3": "VALIDATE_NON_NEGATIVE"},
    }
]


def watch(services: Services) -> list[Any]:
    """One pass of `flows watch`."""
    return flows.run_due_flows(services, now=datetime.now(UTC))


def test_a_record_that_always_crashes_is_set_aside_after_a_few_runs(
    services: Services, tmp_path: Path
) -> None:
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    crashing = user(2, id="NaN")
    (folder / "a.jsonl").write_text(jsonl(user(1), crashing, user(3)))
    (folder / "b.jsonl").write_text(jsonl(user(4)))
    definition = flow_definition(
        "crm", "file://", str(folder), trigger=EVENT, tasks=NON_NEGATIVE_ID
    )
    put_flow(services, "crm", TYPE, definition)

    # The runs before the last attempt stop at the item, as a bug stops them.
    for _ in range(flows.CRASH_ATTEMPTS - 1):
        assert watch(services) == []
    stopped = runs(services)
    assert [r.status for r in stopped] == ["FAILED"] * (flows.CRASH_ATTEMPTS - 1)
    assert {r.error for r in stopped} == {"An internal error stopped the run."}
    assert ingested(services, 1, 3, 4) == []
    assert letters(services) == []

    # The last attempt reads the item a record at a time where it stops, sets the record
    # aside, and goes on: the item after it is read too.
    [run] = watch(services)
    assert counts(run) == ("COMPLETED", 2, 4, 3, 1)
    assert ingested(services, 1, 3, 4) == [1, 3, 4]
    [letter] = letters(services)
    assert letter.object_json.replace(" ", "") == jsonl(crashing).strip().replace(" ", "")
    assert letter.reason.startswith("Flow crm, a.jsonl")
    assert "InvalidOperation" in letter.reason
    assert f"{flows.CRASH_ATTEMPTS} runs in a row" in letter.reason
    assert letter.not_retryable is not None

    # Failed: no automatic run reads it again while it has not changed.
    assert watch(services) == []
    assert watch(services) == []
    # Changed, it is read again (here fixed: nothing crashes).
    (folder / "a.jsonl").write_text(jsonl(user(1), user(2), user(3)))
    [fixed] = watch(services)
    assert counts(fixed) == ("COMPLETED", 1, 3, 3, 0)
    assert ingested(services, 2) == [2]


@pytest.mark.usefixtures("streamed")
def test_an_item_whose_reading_always_crashes_is_a_failed_item_after_a_few_runs(
    services: Services, tmp_path: Path
) -> None:
    """A crash while the item is read, not while a batch is applied: the records before it
    are applied, the item is dead-lettered naming it and where it stopped, and checkpointed
    failed."""
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    records = [user(n) for n in range(1, 8)]
    (folder / "a.jsonl").write_text(jsonl(*records))
    (folder / "b.jsonl").write_text(jsonl(user(8)))
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder), trigger=EVENT))
    # Breaks off after its fifth record: two batches of two are committed before.
    source = BreakingSource(
        FolderSource(services.settings, str(folder)),
        "a.jsonl",
        len(jsonl(*records[:5]).encode()),
        RuntimeError("a bug"),
    )

    def run() -> Any:
        return flows.run_flow(
            services, domain_name=D, flow_name="crm", trigger="Event", source=source
        )

    for _ in range(flows.CRASH_ATTEMPTS - 1):
        with pytest.raises(RuntimeError):
            run()
    assert ingested(services, 1, 2, 3, 4) == [1, 2, 3, 4]

    last = run()
    # The records before the break were applied by the first run; the item counts as one
    # record read and dead-lettered, as a failed item does; b.jsonl is read.
    assert counts(last) == ("COMPLETED", 2, 2, 1, 1)
    assert ingested(services, 5, 6, 7, 8) == [8]
    [letter] = letters(services)
    assert letter.reason.startswith("Flow crm, a.jsonl")
    assert "RuntimeError" in letter.reason and "after its first 4 records" in letter.reason
    assert letter.not_retryable is not None
    # Failed: the watcher does not read it again while it has not changed.
    assert watch(services) == []
    # A run that reads every item reads it again (the cause may be fixed): here from the
    # folder itself.
    again = flows.run_flow(services, domain_name=D, flow_name="crm", complete=True)
    assert counts(again)[:2] == ("COMPLETED", 2)
    assert ingested(services, 5, 6, 7) == [5, 6, 7]


@pytest.mark.usefixtures("streamed")
def test_runs_that_read_every_item_count_the_crashes_too(
    services: Services, tmp_path: Path
) -> None:
    """A run that reads the item from its start (OnDemand, DataPullMode Complete) applies again
    the batches before the one that stops it: their checkpoints do not undo the count."""
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    records = [user(1), user(2), user(3), user(4), user(5), user(6, id="NaN"), user(7)]
    (folder / "a.jsonl").write_text(jsonl(*records))
    definition = flow_definition(
        "crm", "file://", str(folder), trigger=EVENT, tasks=NON_NEGATIVE_ID
    )
    put_flow(services, "crm", TYPE, definition)

    def run() -> Any:
        return flows.run_flow(services, domain_name=D, flow_name="crm", complete=True)

    for _ in range(flows.CRASH_ATTEMPTS - 1):
        with pytest.raises(ArithmeticError):
            run()
    # Batches of two: records 1-4 applied, the batch of 5 and 6 applied one at a time.
    last = run()
    assert counts(last) == ("COMPLETED", 1, 7, 6, 1)
    assert ingested(services, 1, 2, 3, 4, 5, 7) == [1, 2, 3, 4, 5, 7]
    [letter] = letters(services)
    assert letter.reason.startswith("Flow crm, a.jsonl, line 6")
    assert watch(services) == []
