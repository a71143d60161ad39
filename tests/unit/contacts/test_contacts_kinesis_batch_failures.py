"""The Kinesis connector, as a review found it, against moto's server mode:

- The database failing a batch's transaction with one of the store's own errors (a lock not
  granted in time: PostgreSQL's 55P03, a ServiceUnavailable; `retrying` giving up; a commit cut
  off) was taken for a request error and "deferred": `--once` exited 0 saying "0 stream
  records", and `run` polled again at once, its database back-off reset. It is the poll
  failing: `--once` exits 1 saying so, `run` waits longer with each such poll in a row, and
  the record is applied once the database can take it (the checkpoint never passed it).
- Two connectors on one stream (PostgreSQL) both applied a batch: each read the checkpoint
  before the other had saved it, so the records were counted twice and a rejected one had two
  attempts in its dead letter. The second now waits for the first's transaction and skips what
  it applied, the shard's first batch (no checkpoint row yet) as much as the later ones.
- Ctrl-C or SIGTERM landing inside the database driver's call (the pool's ping) fails it with
  an error of the driver's own, its cause the interrupt: `run` took it for the database failing
  (waited it out, the stop lost; or logged it at ERROR as one that waiting never mends). It
  stops.
- `--stream ''` (or any name Kinesis refuses) failed at every call with an error taken for a
  failed read, retried for ever; it is a usage error at the start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import event, select
from sqlalchemy.exc import OperationalError, ProgrammingError
from tests.unit.contacts.test_contacts_kinesis_database_errors import (
    Clock,
    Polls,
    found,
    new_stream,
    put,
)
from tests.unit.integrations.integ_helpers import associate, ctr, make_domain

from openprofiles.app import build_services
from openprofiles.cli import main
from openprofiles.cli_support import Terminated, caused_by_ctrl_c
from openprofiles.connectors.kinesis import DATABASE_ERRORS, KinesisContactRecords
from openprofiles.context import Services
from openprofiles.dlq.service import list_messages
from openprofiles.settings import Settings
from openprofiles.store.schema import stream_checkpoint

# PostgreSQL's lock_timeout for the connector that meets a lock another session holds: a bound
# on how long it waits for a lock it cannot get while the test holds it, not a synchronisation.
LOCK_TIMEOUT_SECONDS = 0.2


@pytest.fixture(autouse=True)
def _aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")


@pytest.fixture
def domain(services: Services) -> str:
    make_domain(services, "stream")
    associate(services, "stream")
    return "stream"


# The tests of PostgreSQL's locks run on it alone (SQLite's one writer serialises what they
# race): the shared `settings` fixture parametrised with its PostgreSQL backend only, so that
# SQLite is not a skipped case.
on_postgres = pytest.mark.parametrize(
    "settings", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


@pytest.fixture
def pg_settings(settings: Settings) -> Settings:
    assert not settings.is_sqlite, "a test of PostgreSQL's locks, marked on_postgres"
    return settings


def impatient(settings: Settings) -> Services:
    """Services on the same database that wait at most LOCK_TIMEOUT_SECONDS for a lock."""
    return build_services(replace(settings, database_lock_timeout_seconds=LOCK_TIMEOUT_SECONDS))


def checkpoint(services: Services, stream: str) -> str | None:
    with services.read() as tx:
        return tx.conn.execute(
            select(stream_checkpoint.c.sequence_number).where(
                stream_checkpoint.c.stream_name == stream
            )
        ).scalar()


@contextmanager
def locked(services: Services, table: str) -> Iterator[Callable[[], None]]:
    """`table` locked by another session (a long maintenance statement) until the function
    yielded is called, or the block ends."""
    raw = services.database.engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("BEGIN")
        cursor.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        yield raw.rollback
    finally:
        raw.rollback()
        raw.close()


# 1. The database failing a batch is the poll failing, never a deferred batch.


@on_postgres
def test_a_lock_not_granted_fails_the_poll_and_the_record_is_applied_later(
    pg_settings: Settings, services: Services, domain: str, moto_url: str
) -> None:
    kinesis, stream = new_stream(moto_url)
    waiting = impatient(pg_settings)
    try:
        connector = KinesisContactRecords(waiting, stream, client=kinesis)
        connector.poll_once()
        put(kinesis, stream, ctr("l1"))
        with locked(services, "profile_object"), pytest.raises(DATABASE_ERRORS) as failed:
            connector.poll_once()
        cause = failed.value.__cause__
        assert type(getattr(cause, "orig", None)).__name__ == "LockNotAvailable", repr(cause)
        assert (found(services, "l1"), checkpoint(services, stream)) == (0, None)

        again = connector.poll_once()
    finally:
        waiting.database.dispose()
    assert (again.stream_records, again.accepted, again.deferred) == (1, 1, 0)
    assert found(services, "l1") == 1


@on_postgres
def test_run_backs_off_longer_while_the_database_refuses_the_batch(
    pg_settings: Settings, services: Services, domain: str, moto_url: str
) -> None:
    """The database's back-off grows with each poll it fails in a row (jitter 0.5: three
    quarters of 1 s, then of 2 s), then the batch is applied and `run` idles. Deferred, it was
    polled again at the pace of reads (0.25 s), the back-off reset each time."""
    kinesis, stream = new_stream(moto_url)
    waiting = impatient(pg_settings)
    clock = Clock()
    try:
        connector = KinesisContactRecords(
            waiting, stream, client=kinesis, clock=clock, jitter=lambda: 0.5
        )
        connector.poll_once()
        put(kinesis, stream, ctr("b1"))
        with locked(services, "profile_object") as release:

            class Releasing(Polls):
                def wait(self, timeout: float | None = None) -> bool:
                    if len(self.waits) == 1:
                        release()
                    return super().wait(timeout)

            stop = Releasing(4, clock)
            connector.run(stop, idle_seconds=1.0)
    finally:
        waiting.database.dispose()
    assert stop.waits == [0.75, 1.5, 0.25, 1.0]
    assert found(services, "b1") == 1


@on_postgres
def test_once_exits_1_when_the_database_refuses_the_batch(
    pg_settings: Settings, services: Services, domain: str, moto_url: str
) -> None:
    kinesis, stream = new_stream(moto_url)
    put(kinesis, stream, ctr("o1"))
    command = ["connectors", "kinesis", "--data-dir", str(pg_settings.data_dir)]
    command += ["--database-url", str(pg_settings.database_url), "--endpoint-url", moto_url]
    env = {"OPENPROFILES_DATABASE_LOCK_TIMEOUT_SECONDS": str(LOCK_TIMEOUT_SECONDS)}
    with locked(services, "profile_object"):
        refused = CliRunner(env=env).invoke(main, [*command, "--stream", stream, "--once"])

    assert refused.exit_code == 1, refused.output
    assert "0 stream records" not in refused.output
    assert "The poll failed in the database (ServiceUnavailable, from " in refused.output
    assert (found(services, "o1"), checkpoint(services, stream)) == (0, None)
    applied = CliRunner(env=env).invoke(main, [*command, "--stream", stream, "--once"])
    assert applied.exit_code == 0, applied.output
    assert applied.output.startswith("1 stream records: 1 contact records accepted")


# 2. Two connectors on one stream apply each record once.


@on_postgres
@pytest.mark.parametrize("before", [False, True], ids=["first-batch", "later-batch"])
def test_two_connectors_on_one_stream_apply_a_batch_once(
    pg_settings: Settings, services: Services, domain: str, moto_url: str, before: bool
) -> None:
    """Connector B polls while connector A's batch transaction has read the checkpoint and not
    yet committed: B waits for it (here until its lock timeout, as the test holds A there),
    then skips what A applied. A rejected record (an address that is not one) has one
    attempt."""
    kinesis, stream = new_stream(moto_url)
    a = KinesisContactRecords(services, stream, client=kinesis)
    if before:
        put(kinesis, stream, ctr("t0"))
        assert a.poll_once().accepted == 1
    rejected = ctr("t2", CustomerEndpoint={"Address": "n/a", "Type": "TELEPHONE_NUMBER"})
    put(kinesis, stream, ctr("t1"), rejected, ctr("t3"))
    other = impatient(pg_settings)
    b = KinesisContactRecords(other, stream, client=kinesis)
    b_results: list[Any] = []

    def b_polls_inside_a(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        # After A's read of the shard's checkpoint, inside A's batch transaction.
        if b_results or not statement.startswith("SELECT stream_checkpoint.sequence_number"):
            return
        try:
            b_results.append(b.poll_once())
        except DATABASE_ERRORS as exc:
            b_results.append(exc)

    event.listen(services.database.engine, "after_cursor_execute", b_polls_inside_a)
    try:
        a_result = a.poll_once()
    finally:
        event.remove(services.database.engine, "after_cursor_execute", b_polls_inside_a)
    try:
        b_results.append(b.poll_once())
    finally:
        other.database.dispose()

    applied = [r.stream_records for r in (a_result, *b_results) if not isinstance(r, Exception)]
    assert sum(applied) == 3, (a_result, b_results)
    assert (a_result.stream_records, a_result.rejected) == (3, 1), a_result
    with services.read() as tx:
        letters = list_messages(tx, domain_name="stream")
    assert [letter.attempts for letter in letters] == [1]


# 3. Ctrl-C or SIGTERM inside the driver's call stops `run`.


@pytest.mark.parametrize("error", [OperationalError, ProgrammingError])
def test_run_stops_on_a_database_error_that_sigterm_caused(
    services: Services,
    domain: str,
    moto_url: str,
    caplog: pytest.LogCaptureFixture,
    error: type[OperationalError],
) -> None:
    """As the pool's ping does when SIGTERM lands in it: the driver, interrupted, fails the
    call with an error of its own, raised while the interrupt was handled. One that looks
    recoverable (OperationalError) was waited out, the stop lost; one that does not
    (ProgrammingError) was logged at ERROR as a database error waiting never mends."""
    kinesis, stream = new_stream(moto_url)
    clock = Clock()
    connector = KinesisContactRecords(services, stream, client=kinesis, clock=clock)
    connector.poll_once()
    put(kinesis, stream, ctr("s1"))
    interrupted: list[BaseException] = []

    def interrupt(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if interrupted:
            return
        try:
            raise Terminated()
        except Terminated as signal:
            interrupted.append(signal)
            # Raised while the interrupt is handled, as psycopg's is: its context.
            raise error(statement, {}, Exception("interrupted"))  # noqa: B904

    event.listen(services.database.engine, "before_cursor_execute", interrupt)
    stop = Polls(3, clock)
    try:
        with (
            caplog.at_level(logging.WARNING, logger="openprofiles.connectors.kinesis"),
            pytest.raises(error) as stopped,
        ):
            connector.run(stop, idle_seconds=1.0)
    finally:
        event.remove(services.database.engine, "before_cursor_execute", interrupt)

    assert caused_by_ctrl_c(stopped.value)
    assert stop.waits == []
    assert [r.getMessage() for r in caplog.records if "in the database" in r.getMessage()] == []


# 4. A stream's name Kinesis would refuse is a usage error.


@pytest.mark.parametrize("name", ["", "a b", "s/t", "x" * 129, "ctr:1"])
def test_a_name_that_is_not_a_streams_is_refused_at_the_start(
    tmp_path: Any, services: Services, name: str
) -> None:
    # No data dir: nothing is opened before the option is checked.
    command = ["connectors", "kinesis", "--data-dir", str(tmp_path / "none"), "--once"]

    refused = CliRunner().invoke(main, [*command, "--stream", name])

    assert refused.exit_code == 2, refused.output
    assert "Invalid value for '--stream'" in refused.output
    assert "neither a stream's name" in refused.output
    assert not (tmp_path / "none").exists()
    # StreamInvalid, a ValueError.
    with pytest.raises(ValueError, match="neither a stream's name"):
        KinesisContactRecords(services, name, client=object())


def test_the_names_kinesis_takes_are_taken() -> None:
    from openprofiles.connectors.kinesis import check_stream

    for name in ("c", "c.t_r-1", "x" * 128, "CTR-0"):
        assert check_stream(name) is None
