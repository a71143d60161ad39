"""One setting bounds a write's wait for another writer on both backends:
OPENPROFILES_DATABASE_LOCK_TIMEOUT_SECONDS (30 s by default, 0: no bound) — PostgreSQL's
lock_timeout, and on SQLite the writer lock's wait (store/writer_lock.py) and SQLite's own busy
timeout. SQLite's used to be 30 s whatever the setting said, so an operator could neither
shorten the stall a stopped loader causes nor let writers wait for it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from tests.unit.store.test_writer_lock_bound import _holder, _in_a_thread, _release

from openprofiles.settings import Settings
from openprofiles.store.database import Database
from openprofiles.store.writer_lock import WriterLockBusy


def _busy_timeout_ms(database: Database) -> int:
    with database.read() as conn:
        return int(conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one())


def _writer_lock_file(settings: Settings) -> Path:
    sqlite_file = settings.sqlite_file
    assert sqlite_file is not None
    return sqlite_file.with_name(sqlite_file.name + "-writer.lock")


def test_the_setting_bounds_the_wait_for_another_writer(settings: Settings) -> None:
    configured = Settings.from_env({"OPENPROFILES_DATABASE_LOCK_TIMEOUT_SECONDS": "1.5"})
    configured = configured.with_overrides(
        data_dir=settings.data_dir, database_url=settings.database_url
    )
    database = Database.from_settings(configured)
    try:
        if not database.is_sqlite:
            with database.read() as conn:
                assert conn.execute(text("SHOW lock_timeout")).scalar() == "1500ms"
            return
        assert _busy_timeout_ms(database) == 1500
        with _holder(_writer_lock_file(configured), "thread") as holder:

            def write() -> None:
                with database.write() as conn:
                    conn.exec_driver_sql("CREATE TABLE written (x INTEGER)")

            refused = _in_a_thread(write)
            assert isinstance(refused, WriterLockBusy), refused
            assert "not free within 1.5 seconds" in refused.message
            assert f"process {holder.pid} holds it" in refused.message
            _release(holder)
        with database.write() as conn:
            conn.exec_driver_sql("CREATE TABLE written (x INTEGER)")
    finally:
        database.dispose()


def test_zero_means_no_bound_on_both_backends(settings: Settings) -> None:
    database = Database.from_settings(settings.with_overrides(database_lock_timeout_seconds=0))
    try:
        if not database.is_sqlite:
            with database.read() as conn:
                assert conn.execute(text("SHOW lock_timeout")).scalar() == "0"
            return
        # SQLite reads a busy timeout of 0 as "do not wait": no bound is its longest instead.
        assert _busy_timeout_ms(database) == 2**31 - 1
        # The writer lock's "no bound" (a wait of 0 s would refuse every write that meets
        # another process's).
        assert database._writer_lock is not None
        assert database._writer_lock._wait_seconds is None
    finally:
        database.dispose()


def test_the_default_is_30_s_on_sqlite_as_on_postgresql(sqlite_settings: Settings) -> None:
    database = Database.from_settings(sqlite_settings)
    try:
        assert _busy_timeout_ms(database) == 30_000
        assert database._writer_lock is not None
        assert database._writer_lock._wait_seconds == 30
    finally:
        database.dispose()


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "3000000"])
def test_a_timeout_neither_backend_can_take_is_refused_with_its_name(value: str) -> None:
    """Both backends take the timeout as a C int of milliseconds (at most about 24.8 days):
    a larger one used to reach PostgreSQL as an overflow and SQLite as a negative busy timeout,
    which means no wait at all."""
    with pytest.raises(ValueError, match="OPENPROFILES_DATABASE_LOCK_TIMEOUT_SECONDS"):
        Settings.from_env({"OPENPROFILES_DATABASE_LOCK_TIMEOUT_SECONDS": value})
