"""An item whose processing raises an unexpected error every time (a bug, a record that crashes
the mapping: no failure the run knows, ItemFailed or a rejected record) is set aside after
CRASH_ATTEMPTS runs in a row, as a failed item — on SQLite and PostgreSQL.

It used to stop every run at it for ever: each pass of the watcher read it again, the run ended
FAILED with an internal error, and the items after it were never read. Now the runs in a row
that stopped on it are counted in its checkpoint (CRASHED_MARK); the last attempt applies the
batch that stops it one record at a time, and dead-letters the record that raises (its text
kept, the reason saying why); the item is checkpointed failed, so no automatic run reads it
again until it changes — a run asked for does, once the cause is fixed — and the run goes on
with the next items.

The crashing record is real: the database refuses its row with an error the run does not know
(a trigger of the test's, as a constraint or trigger an operator added would: an
IntegrityError on both backends, a refusal of the record), for the one record large enough. (It
used to be a record whose "NaN" a Validate task compared, which raised
decimal.InvalidOperation; such a record now simply fails the task:
test_flows_non_finite_numbers.) The item that fails while it is read is a real folder whose
stream raises a plain error at a given byte, as a bug in a source would."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.context import Services
from openprofiles.flows import checkpoints as flow_checkpoints
from openprofiles.flows import service as flows
from openprofiles.flows.sources import FolderSource

from .test_flows_failed_items import EVENT, TYPE, counts, ingested, jsonl, letters, user
from .test_flows_one_run_at_a_time import runs
from .test_flows_resumed_items import BreakingSource
from .test_flows_resumed_items import streamed as streamed  # a fixture
from .test_flows_templates import D, flow_definition, put_flow

# The stored size (its object's JSON) over which the database refuses a record (`refuse_large`):
# more than any other record of these tests has, less than a streamed item's longest line.
LARGE = len(json.dumps(user(99))) + 10


def crashing(n: int) -> dict[str, Any]:
    """A record the database refuses (`refuse_large`): larger than the others."""
    return user(n, notes="x" * 30)


def refuse_large(services: Services) -> str:
    """Make the database refuse, with an error the run does not know, every object stored larger
    than LARGE; the name of the error's type, as the dead letter's reason gives it."""
    with services.write() as tx:
        if services.database.is_sqlite:
            for event in ("INSERT", "UPDATE"):
                tx.conn.execute(
                    text(
                        f"CREATE TRIGGER refuse_large_{event.lower()} BEFORE {event} ON "
                        f"profile_object WHEN NEW.size > {LARGE} "
                        "BEGIN SELECT RAISE(ABORT, 'refused'); END"
                    )
                )
            return "IntegrityError"
        tx.conn.execute(
            text(
                "CREATE FUNCTION refuse_large() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.size > {LARGE} THEN RAISE EXCEPTION 'refused' "
                "USING ERRCODE = 'check_violation'; END IF; RETURN NEW; "
                "END $$"
            )
        )
        tx.conn.execute(
            text(
                "CREATE TRIGGER refuse_large BEFORE INSERT OR UPDATE ON profile_object "
                "FOR EACH ROW EXECUTE FUNCTION refuse_large()"
            )
        )
        # A constraint's refusal (SQLSTATE class 23), an IntegrityError to SQLAlchemy: a plain
        # RAISE EXCEPTION (P0001) would be a ProgrammingError, which says nothing of the record
        # and is not counted against it (as a permission revoked or a column missing).
        return "IntegrityError"


def allow_large(services: Services) -> None:
    """Undo `refuse_large`: the record's cause fixed."""
    with services.write() as tx:
        if services.database.is_sqlite:
            for event in ("insert", "update"):
                tx.conn.execute(text(f"DROP TRIGGER refuse_large_{event}"))
        else:
            tx.conn.execute(text("DROP TRIGGER refuse_large ON profile_object"))


def watch(services: Services) -> list[Any]:
    """One pass of `flows watch`."""
    return flows.run_due_flows(services, now=datetime.now(UTC))


def test_a_record_that_always_crashes_is_set_aside_after_a_few_runs(
    services: Services, tmp_path: Path
) -> None:
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    refused = refuse_large(services)
    (folder / "a.jsonl").write_text(jsonl(user(1), crashing(2), user(3)))
    (folder / "b.jsonl").write_text(jsonl(user(4)))
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder), trigger=EVENT))

    # The runs before the last attempt stop at the item, as a bug stops them.
    for _ in range(flow_checkpoints.CRASH_ATTEMPTS - 1):
        assert watch(services) == []
    stopped = runs(services)
    assert [r.status for r in stopped] == ["FAILED"] * (flow_checkpoints.CRASH_ATTEMPTS - 1)
    assert {r.error for r in stopped} == {"An internal error stopped the run."}
    assert ingested(services, 1, 3, 4) == []
    assert letters(services) == []

    # The last attempt reads the item a record at a time where it stops, sets the record
    # aside, and goes on: the item after it is read too.
    [run] = watch(services)
    assert counts(run) == ("COMPLETED", 2, 4, 3, 1)
    assert ingested(services, 1, 3, 4) == [1, 3, 4]
    [letter] = letters(services)
    assert letter.object_json.replace(" ", "") == jsonl(crashing(2)).strip().replace(" ", "")
    assert letter.reason.startswith("Flow crm, a.jsonl")
    assert f"internal error ({refused})" in letter.reason
    assert f"{flow_checkpoints.CRASH_ATTEMPTS} runs in a row" in letter.reason
    assert letter.not_retryable is not None

    # Failed: no automatic run reads it again while it has not changed.
    assert watch(services) == []
    assert watch(services) == []
    # Its cause fixed, the run its reason asks for (openprofiles flows run: OnDemand, here
    # incremental, as the flow is an Event one) reads the item again, unchanged, and applies
    # the record set aside, the only one of it not applied.
    assert "openprofiles flows run" in letter.reason
    allow_large(services)
    again = flows.run_flow(services, domain_name=D, flow_name="crm")
    assert counts(again) == ("COMPLETED", 1, 1, 1, 0)
    assert ingested(services, 2) == [2]
    assert watch(services) == []
    # Changed, it is read again by the watcher.
    (folder / "a.jsonl").write_text(jsonl(user(1), user(5), user(3)))
    [changed] = watch(services)
    assert counts(changed) == ("COMPLETED", 1, 3, 3, 0)
    assert ingested(services, 5) == [5]


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

    for _ in range(flow_checkpoints.CRASH_ATTEMPTS - 1):
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
    refuse_large(services)
    records = [user(1), user(2), user(3), user(4), user(5), crashing(6), user(7)]
    (folder / "a.jsonl").write_text(jsonl(*records))
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder), trigger=EVENT))

    def run() -> Any:
        return flows.run_flow(services, domain_name=D, flow_name="crm", complete=True)

    for _ in range(flow_checkpoints.CRASH_ATTEMPTS - 1):
        with pytest.raises(DBAPIError):
            run()
    # Batches of two: records 1-4 applied, the batch of 5 and 6 applied one at a time.
    last = run()
    assert counts(last) == ("COMPLETED", 1, 7, 6, 1)
    assert ingested(services, 1, 2, 3, 4, 5, 7) == [1, 2, 3, 4, 5, 7]
    [letter] = letters(services)
    assert letter.reason.startswith("Flow crm, a.jsonl, line 6")
    assert watch(services) == []
