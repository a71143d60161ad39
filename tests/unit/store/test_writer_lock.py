"""Writers queue on the writer lock, across processes too (store/writer_lock.py)."""

from __future__ import annotations

import fcntl
import os
import stat
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from openprofiles.store.database import Database


def _try_lock(path: Path) -> bool:
    """Whether another process could take the writer lock now (an open file description of its
    own, as another process has)."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def test_a_write_holds_the_lock_file_other_processes_take(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    lock = tmp_path / "db.sqlite3-writer.lock"
    try:
        with database.write() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
            assert not _try_lock(lock)
        assert _try_lock(lock)
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600
        # A failed write releases it too.
        with pytest.raises(RuntimeError), database.write() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
            raise RuntimeError("the block failed")
        assert _try_lock(lock)
    finally:
        database.dispose()


def test_a_second_database_waits_for_the_first_writer(tmp_path: Path) -> None:
    """Two Database objects on one file behave like two processes: the second writer waits for
    the first to commit, then writes, instead of failing with 'database is locked'."""
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    first, second = Database(url), Database(url)
    holding, waiting_started, done = threading.Event(), threading.Event(), threading.Event()
    outcome: list[object] = []

    def second_writer() -> None:
        holding.wait()
        waiting_started.set()
        try:
            with second.write() as conn:
                outcome.append(conn.execute(text("SELECT count(*) FROM t")).scalar())
                conn.execute(text("INSERT INTO t VALUES (2)"))
        except Exception as error:  # reported through `outcome`
            outcome.append(error)
        done.set()

    thread = threading.Thread(target=second_writer)
    thread.start()
    try:
        with first.write() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
            holding.set()
            assert waiting_started.wait(timeout=30)
            assert not done.is_set()
        assert done.wait(timeout=30)
        # The second writer saw the first one's committed row, then added its own.
        assert outcome == [1]
        with first.read() as conn:
            assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 2
    finally:
        thread.join(timeout=30)
        first.dispose()
        second.dispose()


def test_an_in_memory_database_needs_no_lock_file(tmp_path: Path) -> None:
    database = Database("sqlite://")
    try:
        with database.write() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
    finally:
        database.dispose()
    assert list(tmp_path.iterdir()) == []
