"""GET /health answers what a load balancer needs (both backends): 200 while the database
answers, 503 once it does not — it used to answer 200 with the database refusing connections,
so a balancer kept sending requests that could only fail — and 503 for a while after a write
failed because the database cannot be written (read-only, disk full), which it answered 200."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError
from sqlalchemy import event, text
from tests.support.server import run_server

from openprofiles.settings import Settings
from openprofiles.store.database import WRITE_PROBLEM_SECONDS, Database


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
