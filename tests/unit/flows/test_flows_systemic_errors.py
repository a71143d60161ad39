"""An error that is not an item's does not count towards setting the item aside — on SQLite and
PostgreSQL.

Runs that stop on an item with an unexpected error three times in a row set it aside
(test_flows_crashing_items): its last attempt dead-letters, as not retryable, each record that
raises again on its own. An error of the system raised there as well: a database refusing every
write (a trigger or a grant gone wrong), a read-only server after a failover, a pool out of
connections, a connection to S3 broken off mid-object. Three such runs in a row dead-lettered
every good record of the item. Now
* on the last attempt, when no record of a batch (of more than one) applies alone, the error is
  taken for the system's: the run fails, nothing is set aside, the count stays as it was;
* the errors that say nothing of the item are not counted at all: every database error but a
  refused value or row (IntegrityError, DataError), and the pool's TimeoutError;
* an S3 object's body that breaks off fails the run as the source's (SourceError), never
  counted: test_flows_s3_broken_off breaks one off for real, between the flow and moto.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.context import Services
from openprofiles.flows import checkpoints as flow_checkpoints
from openprofiles.flows import crashes as flow_crashes
from openprofiles.flows import service as flows
from openprofiles.flows.sources import FolderSource

from .test_flows_crashing_items import watch
from .test_flows_failed_items import EVENT, TYPE, counts, ingested, jsonl, letters
from .test_flows_failed_items_read_again import person
from .test_flows_one_run_at_a_time import runs
from .test_flows_resumed_items import BreakingSource
from .test_flows_templates import D, flow_definition, put_flow


def refuse_every_object(services: Services, *, sqlstate: str | None) -> None:
    """Make the database refuse every object stored: on PostgreSQL with `sqlstate` (None: a plain
    RAISE EXCEPTION, P0001, a ProgrammingError), on SQLite with RAISE(ABORT), an
    IntegrityError."""
    with services.write() as tx:
        if services.database.is_sqlite:
            tx.conn.execute(
                text(
                    "CREATE TRIGGER refuse_every BEFORE INSERT ON profile_object "
                    "BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            )
            return
        using = f" USING ERRCODE = '{sqlstate}'" if sqlstate else ""
        tx.conn.execute(
            text(
                "CREATE FUNCTION refuse_every() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"RAISE EXCEPTION 'refused'{using}; END $$"
            )
        )
        tx.conn.execute(
            text(
                "CREATE TRIGGER refuse_every BEFORE INSERT ON profile_object "
                "FOR EACH ROW EXECUTE FUNCTION refuse_every()"
            )
        )


def accept_objects(services: Services) -> None:
    with services.write() as tx:
        tx.conn.execute(
            text(
                "DROP TRIGGER refuse_every"
                + ("" if services.database.is_sqlite else " ON profile_object")
            )
        )


def export(services: Services, tmp_path: Path) -> Path:
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "a.jsonl").write_text(jsonl(person(1), person(2), person(3)))
    (folder / "b.jsonl").write_text(jsonl(person(4), person(5)))
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder), trigger=EVENT))
    return folder


def test_a_batch_whose_every_record_fails_alone_is_not_set_aside(
    services: Services, tmp_path: Path
) -> None:
    """Refused as a constraint refuses a record (IntegrityError, counted), but every record:
    the last attempt finds none applies alone, and sets none aside."""
    export(services, tmp_path)
    refuse_every_object(services, sqlstate="check_violation")
    for _ in range(flow_checkpoints.CRASH_ATTEMPTS + 2):
        assert watch(services) == []
    assert letters(services) == []
    stopped = runs(services)
    assert [r.status for r in stopped] == ["FAILED"] * (flow_checkpoints.CRASH_ATTEMPTS + 2)
    # The runs from the last attempt on say the error is not taken for the records'.
    assert [r.error == flow_crashes.CRASHED_SYSTEMIC for r in reversed(stopped)] == [False] * (
        flow_checkpoints.CRASH_ATTEMPTS - 1
    ) + [True] * 3

    # Fixed, the next run reads both items whole: nothing was set aside.
    accept_objects(services)
    [run] = watch(services)
    assert counts(run) == ("COMPLETED", 2, 5, 5, 0)
    assert ingested(services, 1, 2, 3, 4, 5) == [1, 2, 3, 4, 5]
    assert letters(services) == []


# PostgreSQL only: SQLite's triggers can only raise IntegrityError (the next test covers SQLite).
@pytest.mark.parametrize("settings", ["postgres"], indirect=True)
def test_a_database_error_that_is_no_records_is_not_counted(
    services: Services, tmp_path: Path
) -> None:
    """PostgreSQL: a plain RAISE EXCEPTION (P0001), a ProgrammingError, as a permission revoked
    or a column missing are: never counted, so even a batch of one record is not set aside."""
    folder = export(services, tmp_path)
    (folder / "a.jsonl").write_text(jsonl(person(1)))
    (folder / "b.jsonl").unlink()
    refuse_every_object(services, sqlstate=None)
    for _ in range(flow_checkpoints.CRASH_ATTEMPTS + 1):
        assert watch(services) == []
    assert letters(services) == []
    accept_objects(services)
    [run] = watch(services)
    assert counts(run) == ("COMPLETED", 1, 1, 1, 0)


def _dbapi(kind: type[sa_exc.DBAPIError], message: str) -> sa_exc.DBAPIError:
    return kind("INSERT INTO profile_object ...", {}, Exception(message))


@pytest.mark.parametrize(
    "error",
    [
        sa_exc.TimeoutError("QueuePool limit of size 10 overflow 20 reached"),
        _dbapi(sa_exc.InternalError, "cannot execute INSERT in a read-only transaction"),
        _dbapi(sa_exc.ProgrammingError, "permission denied for table profile_object"),
        _dbapi(sa_exc.NotSupportedError, "not supported"),
        _dbapi(sa_exc.OperationalError, "server closed the connection unexpectedly"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_of_the_system_while_an_item_is_read_are_not_counted(
    services: Services, tmp_path: Path, error: Exception
) -> None:
    folder = export(services, tmp_path)
    breaking = BreakingSource(FolderSource(services.settings, str(folder)), "a.jsonl", 10, error)

    for _ in range(flow_checkpoints.CRASH_ATTEMPTS + 1):
        with pytest.raises(type(error)):
            flows.run_flow(
                services, domain_name=D, flow_name="crm", trigger="Event", source=breaking
            )
    # Not set aside: no dead letter, and the next run reads the item.
    assert letters(services) == []
    [run] = watch(services)
    assert counts(run) == ("COMPLETED", 2, 5, 5, 0)
