"""The Kinesis connector when the database fails a poll, on SQLite and PostgreSQL: a failure
that waiting may mend (the database read-only for a while) is waited out, and `run` goes on;
one that it never will (a table missing: the schema or the statement at fault) stops `run`, and
`openprofiles connectors kinesis` says so and exits with status 1, rather than retrying forever
with a warning that names only the error's type."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from tests.unit.integrations.integ_helpers import ctr, make_domain

from openprofiles.connectors.kinesis import KinesisContactRecords
from openprofiles.context import Services
from openprofiles.integrations.service import associate_instance
from openprofiles.profiles.service import SearchCriterion, search_profiles
from openprofiles.settings import Settings

INSTANCE = "arn:aws:connect:us-east-1:111122223333:instance/1d908e11-3d5f-4cfb-b34d-1e7e0f216898"
# A bound on the command's run (it used to run forever here), not a synchronisation delay.
COMMAND_BOUND_SECONDS = 120


@pytest.fixture(autouse=True)
def _aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")


@pytest.fixture
def domain(services: Services) -> str:
    make_domain(services, "stream")
    with services.write() as tx:
        associate_instance(tx, domain_name="stream", instance_arn=INSTANCE, move=False)
    return "stream"


def new_stream(moto_url: str) -> tuple[Any, str]:
    kinesis = boto3.client("kinesis", endpoint_url=moto_url, region_name="us-east-1")
    stream = f"ctr-{uuid.uuid4().hex[:12]}"
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    return kinesis, stream


def put(kinesis: Any, stream: str, *records: dict[str, Any]) -> None:
    for record in records:
        kinesis.put_record(StreamName=stream, Data=json.dumps(record).encode(), PartitionKey="p")


def found(services: Services, contact_id: str) -> int:
    with services.read() as tx:
        page, _ = search_profiles(
            tx, domain_name="stream", criteria=[SearchCriterion("_ctrContactId", (contact_id,))]
        )
    return len(page)


def rename_table(services: Services, old: str, new: str) -> None:
    with services.write() as tx:
        tx.conn.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Polls(threading.Event):
    """A stop event set after `polls` loops of `run`; its waits are recorded, and move the
    test's clock on at once."""

    def __init__(self, polls: int, clock: Clock) -> None:
        super().__init__()
        self.polls = polls
        self.clock = clock
        self.waits: list[float] = []

    def is_set(self) -> bool:
        self.polls -= 1
        return self.polls < 0

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0)
        self.clock.now += timeout or 0
        return False


def _read_only(services: Services) -> Any:
    """Every connection the pool makes from now on refuses to write, as a database gone
    read-only does (a standby after a failover, a file no longer writable): SQLite's
    query_only, PostgreSQL's read-only transactions. The pool's connections are made again."""
    sqlite = services.database.is_sqlite

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        if sqlite:
            dbapi_connection.execute("PRAGMA query_only = ON")
        else:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            dbapi_connection.commit()

    event.listen(services.database.engine, "connect", on_connect)
    services.database.engine.dispose()
    return on_connect


def _writable(services: Services, on_connect: Any) -> None:
    event.remove(services.database.engine, "connect", on_connect)
    services.database.engine.dispose()


def test_run_waits_out_a_database_that_cannot_be_written_for_a_while(
    services: Services, domain: str, moto_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The database read-only for a while (what waiting may mend): the poll's batch fails
    whole, `run` logs the error's type, waits its first backoff, and at the next poll applies
    the batch, read again from the checkpoint."""
    kinesis, stream = new_stream(moto_url)
    put(kinesis, stream, ctr("d0"))
    clock = Clock()
    conn = KinesisContactRecords(services, stream, client=kinesis, clock=clock, jitter=lambda: 0.5)
    assert conn.poll_once().accepted == 1
    put(kinesis, stream, ctr("d1"), ctr("d2"))
    fault = _read_only(services)

    class Restoring(Polls):
        def wait(self, timeout: float | None = None) -> bool:
            if not self.waits:
                _writable(services, fault)
            return super().wait(timeout)

    stop = Restoring(3, clock)
    try:
        with caplog.at_level(logging.WARNING, logger="openprofiles.connectors.kinesis"):
            conn.run(stop, idle_seconds=1.0)
    finally:
        if not stop.waits:
            _writable(services, fault)

    # The backoff (jitter 0.5: three quarters of 1 s), the batch (one GetRecords), then idle.
    assert stop.waits == [0.75, 0.25, 1.0]
    assert [found(services, f"d{n}") for n in range(3)] == [1, 1, 1]
    [warning] = [r.getMessage() for r in caplog.records if "in the database" in r.getMessage()]
    assert "polled again in 0.8 s" in warning
    assert ("OperationalError" in warning) or ("ReadOnlySqlTransaction" in warning)


def test_run_stops_on_a_database_error_that_waiting_will_not_mend(
    services: Services, domain: str, moto_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A missing table (PostgreSQL's ProgrammingError; SQLite's OperationalError "no such
    table", SQLITE_ERROR) used to be retried forever, each poll logging only the error's type.
    It stops `run` at the first poll it fails, with an error logged that says so; nothing past
    the checkpoint was applied, and once the table is back the record is."""
    kinesis, stream = new_stream(moto_url)
    clock = Clock()
    conn = KinesisContactRecords(services, stream, client=kinesis, clock=clock, jitter=lambda: 0.5)
    conn.poll_once()
    put(kinesis, stream, ctr("m0"))
    rename_table(services, "stream_checkpoint", "stream_checkpoint_away")
    stop = Polls(5, clock)
    try:
        with (
            caplog.at_level(logging.WARNING, logger="openprofiles.connectors.kinesis"),
            pytest.raises(DBAPIError),
        ):
            conn.run(stop, idle_seconds=1.0)
    finally:
        rename_table(services, "stream_checkpoint_away", "stream_checkpoint")

    assert (stop.polls, stop.waits) == (4, [])  # one poll, no wait
    [record] = [r for r in caplog.records if "in the database" in r.getMessage()]
    assert record.levelno == logging.ERROR
    assert "will not mend; the connector stops" in record.getMessage()
    assert "stream_checkpoint" not in record.getMessage()
    assert found(services, "m0") == 0
    restarted = KinesisContactRecords(services, stream, client=kinesis)
    assert restarted.poll_once().accepted == 1


def test_the_command_stops_with_status_1_on_such_an_error(
    settings: Settings, services: Services, domain: str, moto_url: str
) -> None:
    """`openprofiles connectors kinesis` (not --once) ran forever on a missing table. It stops
    with a one-line error that says waiting will not mend it, and exit status 1."""
    kinesis, stream = new_stream(moto_url)
    put(kinesis, stream, ctr("c0"))
    storage = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        storage += ["--database-url", settings.database_url]
    command = [sys.executable, "-c", "from openprofiles.cli import main; main()", "connectors"]
    command += ["kinesis", *storage, "--stream", stream, "--endpoint-url", moto_url]
    rename_table(services, "stream_checkpoint", "stream_checkpoint_away")
    try:
        finished = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=COMMAND_BOUND_SECONDS,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            check=False,
        )
    finally:
        rename_table(services, "stream_checkpoint_away", "stream_checkpoint")

    assert finished.returncode == 1, finished.stderr
    [said] = [line for line in finished.stderr.splitlines() if line.startswith("Error: ")]
    assert said.startswith("Error: Stopped. The poll failed in the database (")
    assert "trying again will not mend" in said
    assert "stream_checkpoint" not in said
    assert found(services, "c0") == 0


def failure(run: Callable[[], Any]) -> Exception:
    try:
        run()
    except Exception as exc:
        return exc
    raise AssertionError("it did not fail")


def test_which_database_errors_are_waited_out(services: Services) -> None:
    """Errors raised by the database itself: a lock not granted (SQLite's "database is locked",
    even unwrapped as its BEGIN IMMEDIATE raises it; PostgreSQL's lock timeout) is waited out;
    a missing table or a syntax error is not."""
    from openprofiles.connectors.kinesis import database_may_recover

    if services.database.is_sqlite:
        path = str(services.settings.sqlite_file)
        holder, waiter = sqlite3.connect(path), sqlite3.connect(path, timeout=0)
        try:
            holder.isolation_level = waiter.isolation_level = None
            holder.execute("BEGIN IMMEDIATE")
            locked = failure(lambda: waiter.execute("BEGIN IMMEDIATE"))
        finally:
            holder.close()
            waiter.close()
    else:
        with services.write() as tx, services.database.engine.connect() as other:
            tx.conn.exec_driver_sql("LOCK TABLE stream_checkpoint IN ACCESS EXCLUSIVE MODE")
            other.exec_driver_sql("SET lock_timeout = '10ms'")
            locked = failure(lambda: other.exec_driver_sql("SELECT * FROM stream_checkpoint"))
    assert database_may_recover(locked), repr(locked)
    with services.database.engine.connect() as conn:
        missing = failure(lambda: conn.exec_driver_sql("SELECT * FROM no_such_table"))
        assert not database_may_recover(missing), repr(missing)
        conn.rollback()
        syntax = failure(lambda: conn.exec_driver_sql("SELEKT 1"))
        assert not database_may_recover(syntax), repr(syntax)
