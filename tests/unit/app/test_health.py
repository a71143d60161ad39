"""GET /health answers what a load balancer needs (both backends): 200 while the database
answers, 503 once it does not — it used to answer 200 with the database refusing connections,
so a balancer kept sending requests that could only fail — and 503 for a while after a write
failed because the database cannot be written (read-only, disk full), which it answered 200;
on SQLite also while another process keeps the writer lock past the lock timeout."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError
from sqlalchemy import event, text
from tests.support.server import run_server
from tests.unit.store.test_writer_lock_bound import _holder, _release

from openprofiles.settings import Settings
from openprofiles.store.database import WRITE_PROBLEM_SECONDS, Database
from openprofiles.store.writer_lock import WriterLockBusy


def test_health_follows_the_database(settings: Settings) -> None:
    with run_server(settings) as server:
        assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
        # The database stops answering for what every request needs.
        with server.services.write() as tx:
            tx.conn.execute(text("ALTER TABLE domain RENAME TO domain_gone"))
        try:
            response = httpx.get(f"{server.url}/health")
            assert response.status_code == 503
            assert response.json() == {
                "status": "unavailable",
                "reason": "The database does not answer.",
            }
        finally:
            with server.services.write() as tx:
                tx.conn.execute(text("ALTER TABLE domain_gone RENAME TO domain"))
        assert httpx.get(f"{server.url}/health").status_code == 200


def _refusing_writes(database: Database, backend_setting: str) -> Callable[[], None]:
    """Make every new connection of `database` refuse writes as a read-only database does (or a
    full disk: `backend_setting` is the statement run on connecting); returns the undo. The
    pool is emptied both ways, so every connection after it has the setting, or none has."""

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(backend_setting)
        cursor.close()
        if not database.is_sqlite:
            dbapi_connection.commit()  # a SET in a transaction rolled back would be undone

    event.listen(database.engine, "connect", on_connect)
    database.engine.dispose()

    def undo() -> None:
        event.remove(database.engine, "connect", on_connect)
        database.engine.dispose()

    return undo


def test_health_reports_writes_the_database_refuses(settings: Settings) -> None:
    """The database answers reads, but refuses writes (a read-only file; a PostgreSQL standby):
    /health used to answer 200 while every write failed."""
    with run_server(settings) as server:
        client = server.client()
        client.create_domain(DomainName="health", DefaultExpirationDays=30)
        # A request's own failure says nothing of the database.
        with pytest.raises(ClientError):
            client.delete_profile(DomainName="health", ProfileId="0" * 32)
        with pytest.raises(ClientError):
            client.create_domain(DomainName="health", DefaultExpirationDays=30)
        assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
        database = server.services.database
        read_only = (
            "PRAGMA query_only=ON"
            if database.is_sqlite
            else "SET default_transaction_read_only = on"
        )
        undo = _refusing_writes(database, read_only)
        try:
            with pytest.raises(ClientError) as failed:
                client.create_profile(DomainName="health", FirstName="Ada")
            assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
            response = httpx.get(f"{server.url}/health")
            assert response.status_code == 503
            reason = response.json()["reason"]
            assert reason.startswith(
                "Writes to the database are failing: the database is read-only"
            )
        finally:
            undo()
        # Still reported after the writes work again, for a while: then no longer.
        client.create_profile(DomainName="health", FirstName="Ada")
        assert httpx.get(f"{server.url}/health").status_code == 503
        later = time.monotonic() + WRITE_PROBLEM_SECONDS + 1
        assert database.write_problem(now=later) is None


def test_health_reports_a_full_disk(sqlite_settings: Settings) -> None:
    """SQLite may not grow the file (max_page_count: what a full disk does to it)."""
    with run_server(sqlite_settings) as server:
        client = server.client()
        client.create_domain(DomainName="full", DefaultExpirationDays=30)
        database = server.services.database
        with database.read() as conn:
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
        undo = _refusing_writes(database, f"PRAGMA max_page_count={pages}")
        try:
            # Each profile takes room; the file may not grow, so one soon fails.
            written = 0
            failure = None
            while failure is None and written < 200:
                try:
                    client.create_profile(DomainName="full", AdditionalInformation="x" * 900)
                    written += 1
                except ClientError as error:
                    failure = error.response["ResponseMetadata"]["HTTPStatusCode"]
            assert failure == 500, f"{written} profiles were written"
            response = httpx.get(f"{server.url}/health")
        finally:
            undo()
        assert response.status_code == 503
        assert response.json() == {
            "status": "unavailable",
            "reason": "Writes to the database are failing: the disk is full.",
        }


def test_health_reports_a_writer_lock_another_process_keeps(tmp_path: Path) -> None:
    """SQLite: another process holds the writer lock and does not let go (a loader stopped with
    Ctrl-Z). Every write waits out the lock timeout and is answered 503, and /health used to
    answer 200 all the while. It now names the holder while it keeps the lock, without taking
    the lock or waiting for it, and says ok again once another writer has had the lock."""
    settings = Settings(data_dir=tmp_path / "data", database_lock_timeout_seconds=1)
    with run_server(settings) as server:
        client = server.client()
        client.create_domain(DomainName="stalled", DefaultExpirationDays=30)
        sqlite_file = settings.sqlite_file
        assert sqlite_file is not None
        lock_file = sqlite_file.with_name(sqlite_file.name + "-writer.lock")
        with _holder(lock_file, "thread") as holder:
            # Before any write met it, nothing says the lock is held for long.
            assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
            with pytest.raises(ClientError) as refused:
                client.create_profile(DomainName="stalled", FirstName="Ada")
            # The API's 503 (the SDKs retry it): on the event loop, where CreateProfile runs,
            # the wait's refusal was an unhandled exception, answered 500.
            assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
            assert refused.value.response["Error"]["Code"] == "ServiceUnavailableException"
            response = httpx.get(f"{server.url}/health", timeout=10)
            assert response.status_code == 503
            body = response.json()
            assert set(body) == {"status", "reason"} and body["status"] == "unavailable"
            assert re.fullmatch(
                "Writes to the database are failing: the writer lock has been held by "
                rf"process {holder.pid} for \d+ s\.",
                body["reason"],
            ), body["reason"]
            _release(holder)
        # The holder let go: the next write takes the lock, and /health says ok at once.
        client.create_profile(DomainName="stalled", FirstName="Ada")
        assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}


def test_a_stalled_writer_lock_is_reported_for_a_while_at_most(sqlite_settings: Settings) -> None:
    """A holder that let go with nobody writing after it is reported until WRITE_PROBLEM_SECONDS
    after the last refused write, as a write failure is."""
    lock_file = sqlite_settings.data_dir / "openprofiles.sqlite3-writer.lock"
    database = Database.from_settings(
        sqlite_settings.with_overrides(database_lock_timeout_seconds=0.2)
    )
    try:
        with _holder(lock_file, "thread") as holder:
            with pytest.raises(WriterLockBusy), database.write():
                pass
            assert f"process {holder.pid}" in (database.write_problem() or "")
            later = time.monotonic() + WRITE_PROBLEM_SECONDS + 1
            assert database.write_problem(now=later) is None
            _release(holder)
    finally:
        database.dispose()
