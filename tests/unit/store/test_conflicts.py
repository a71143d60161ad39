"""store.conflicts: a unit of work that lost a race runs again, against real databases — a real
PostgreSQL deadlock between two connections, a real SQLite integrity error that must not be
retried."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError, OperationalError
from tests.support.backends import postgres_schema_url

from openprofiles.errors import InternalServer
from openprofiles.store.conflicts import ATTEMPTS, ConcurrentChange, is_transient, retrying


def test_a_deadlock_victim_runs_again_and_both_complete() -> None:
    with postgres_schema_url() as url:
        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            with engine.begin() as conn:
                conn.execute(text("CREATE TABLE counter (id int PRIMARY KEY, n int)"))
                conn.execute(text("INSERT INTO counter VALUES (1, 0), (2, 0)"))
            both_hold_one = threading.Barrier(2)
            runs: list[int] = []
            errors: list[BaseException] = []

            def transfer(first: int, second: int) -> None:
                def work() -> None:
                    runs.append(first)
                    with engine.begin() as conn:
                        conn.execute(
                            text("UPDATE counter SET n = n + 1 WHERE id = :i"), {"i": first}
                        )
                        if len(runs) <= 2:
                            # Each holds its first row before asking for the other's: a deadlock.
                            both_hold_one.wait()
                        conn.execute(
                            text("UPDATE counter SET n = n + 1 WHERE id = :i"), {"i": second}
                        )

                try:
                    retrying(work)
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=transfer, args=p) for p in ((1, 2), (2, 1))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert errors == []
            # PostgreSQL aborted one of the two, which ran again. Its retry can win the row the
            # survivor was waking up for and deadlock once more (a woken waiter re-takes the
            # tuple lock in a race), so it may take more than one more run: seen once in CI.
            assert len(runs) >= 3 and sorted(set(runs)) == [1, 2]
            with engine.connect() as conn:
                assert conn.execute(text("SELECT sum(n) FROM counter")).scalar() == 4
        finally:
            engine.dispose()


def test_an_integrity_error_on_sqlite_is_a_bug_and_not_run_again(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id int PRIMARY KEY)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
    runs = []

    def insert_again() -> None:
        runs.append(1)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))

    with pytest.raises(IntegrityError) as exc:
        retrying(insert_again)
    assert isinstance(exc.value.orig, sqlite3.IntegrityError) and not is_transient(exc.value)
    assert len(runs) == 1
    engine.dispose()


def test_a_race_lost_every_time_is_an_internal_error_that_says_so() -> None:
    runs = []

    def always_changed() -> None:
        runs.append(1)
        raise ConcurrentChange("the profile was merged meanwhile")

    with pytest.raises(InternalServer, match="conflicted with concurrent changes"):
        retrying(always_changed)
    assert len(runs) == ATTEMPTS


def test_a_database_error_that_is_no_race_is_not_run_again(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    runs = []

    def read() -> None:
        runs.append(1)
        with engine.connect() as conn:
            conn.execute(text("SELECT * FROM no_such_table"))

    with pytest.raises(OperationalError):
        retrying(read)
    assert len(runs) == 1
    engine.dispose()


def test_a_busy_sqlite_database_is_waited_out(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n int)"))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    runs = []

    def write() -> None:
        runs.append(1)
        if len(runs) == 2:
            holder.execute("COMMIT")  # the other writer finishes before the second attempt
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))

    retrying(write)
    assert len(runs) == 2
    holder.close()
    engine.dispose()


def test_nothing_runs_again_once_part_of_it_committed() -> None:
    runs = []

    def changed() -> None:
        runs.append(1)
        raise ConcurrentChange("the profile was deleted meanwhile")

    with pytest.raises(InternalServer):
        retrying(changed, may_retry=lambda: False)
    assert len(runs) == 1
