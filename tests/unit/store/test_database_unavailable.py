"""PostgreSQL unable to do the work now is a 503 in the AWS format, never a hang or a bare 500:
a lock another session holds longer than the sessions' lock_timeout
(OPENPROFILES_DATABASE_LOCK_TIMEOUT_SECONDS, 30 s by default; there was none, and a LOCK TABLE
held for 90 s made every request wait 90 s), and a full shared lock table (SQLSTATE 53200,
"out of shared memory"), which is first run again. Migrations wait for their locks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import botocore.exceptions
import pytest
from sqlalchemy import create_engine, text
from tests.support.backends import postgres_schema_url
from tests.support.server import run_server

from openprofiles.app import build_services
from openprofiles.context import Services
from openprofiles.settings import Settings
from openprofiles.store.conflicts import ATTEMPTS, retrying
from openprofiles.store.migrate import migrating

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres_schema_url() as url:
        yield url


@pytest.fixture
def pg_services(pg_url: str, tmp_path: Path) -> Iterator[Services]:
    built = build_services(Settings(data_dir=tmp_path / "data", database_url=pg_url))
    try:
        yield built
    finally:
        built.database.dispose()


def test_a_lock_held_too_long_is_answered_503(pg_url: str, tmp_path: Path) -> None:
    """Another session holds the `domain` table (a maintenance statement): a request gives up
    after the lock timeout, set here to 1 s through its variable, and says so with a 503."""
    settings = Settings.from_env({"OPENPROFILES_DATABASE_LOCK_TIMEOUT_SECONDS": "1"})
    settings = settings.with_overrides(
        data_dir=tmp_path / "data", database_url=pg_url, matching_schedule_check_seconds=0
    )
    domain = f"d-{uuid.uuid4().hex[:10]}"
    engine = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with run_server(settings) as server:
        # A read timeout that a request waiting for the lock would reach.
        client = server.client(read_timeout=15)
        client.create_domain(DomainName=domain, DefaultExpirationDays=30)
        try:
            with engine.connect() as locker:
                locker.execute(text("LOCK TABLE domain IN ACCESS EXCLUSIVE MODE"))
                with pytest.raises(botocore.exceptions.ClientError) as caught:
                    client.get_domain(DomainName=domain)
                locker.rollback()
        finally:
            engine.dispose()
        error = caught.value.response
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert error["Error"]["Code"] == "ServiceUnavailableException"
        assert "send it again" in error["Error"]["Message"]
        # The lock gone, the same request is answered.
        assert client.get_domain(DomainName=domain)["DomainName"] == domain


def test_the_sessions_wait_for_a_lock_30_s_and_a_migration_as_long_as_it_takes(
    pg_services: Services,
) -> None:
    database = pg_services.database
    with database.read() as conn:
        assert conn.execute(text("SHOW lock_timeout")).scalar() == "30s"
    with migrating(database) as conn:
        assert conn.execute(text("SHOW lock_timeout")).scalar() == "0"
    # The pooled session keeps its own.
    with database.read() as conn:
        assert conn.execute(text("SHOW lock_timeout")).scalar() == "30s"


def test_a_full_lock_table_is_run_again_then_answered_503(pg_services: Services) -> None:
    """PostgreSQL's own error 53200 (raised here by PL/pgSQL, as the lock manager raises it when
    its table is full: filling the shared table would fail every other session of the server)."""
    attempts = 0

    def run() -> None:
        nonlocal attempts
        attempts += 1
        with pg_services.write() as tx:
            tx.conn.execute(
                text(
                    "DO $$ BEGIN RAISE EXCEPTION 'out of shared memory' "
                    "USING ERRCODE = 'out_of_memory'; END $$"
                )
            )

    with pytest.raises(Exception) as caught:
        retrying(run)
    assert attempts == ATTEMPTS
    error = caught.value
    assert getattr(error, "status", None) == 503, repr(error)
    assert getattr(error, "code", None) == "ServiceUnavailableException"
    assert "smaller batches" in getattr(error, "message", "")
