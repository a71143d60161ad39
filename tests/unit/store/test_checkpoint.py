"""WAL checkpoints run on the Checkpointer's thread, not inside a commit (store/checkpoint.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import text

from openprofiles.store.database import Database


def _wal_frames(path: Path) -> int:
    """Frames in the log now, read without checkpointing (a checkpoint would change it)."""
    wal = path.with_name(path.name + "-wal")
    return (wal.stat().st_size - 32) // (4096 + 24) if wal.exists() else 0


def test_commits_leave_the_log_to_the_background_checkpointer(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    database = Database(f"sqlite:///{path}")
    try:
        checkpointer = database.checkpointer
        assert checkpointer is not None
        with database.write() as conn:
            conn.execute(text("CREATE TABLE t (x BLOB)"))
        # The checkpoint that commit asked for, so the next one is the big insert's.
        assert checkpointer.wait_for_run(0, timeout=30)
        runs = checkpointer.runs
        # Well past the 1,000-page default at which a COMMIT would checkpoint by itself.
        with database.write() as conn:
            conn.execute(
                text(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1500)"
                    " INSERT INTO t SELECT randomblob(4000) FROM n"
                )
            )
        with database.read() as conn:
            assert conn.execute(text("PRAGMA wal_autocheckpoint")).scalar() == 0
        assert _wal_frames(path) > 1000

        assert checkpointer.wait_for_run(runs, timeout=30)
        assert checkpointer.last_result is not None
        busy, logged, done = checkpointer.last_result
        assert busy == 0 and logged > 1000 and done == logged
    finally:
        database.dispose()
    # Everything committed is in the database file itself, readable without the log.
    with sqlite3.connect(path) as plain:
        assert plain.execute("SELECT count(*) FROM t").fetchone()[0] == 1500


def test_dispose_stops_the_thread(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    with database.write() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    checkpointer = database.checkpointer
    assert checkpointer is not None and checkpointer._thread is not None
    database.dispose()
    assert not checkpointer._thread.is_alive()


def test_a_steady_write_load_does_not_grow_the_log_without_bound(tmp_path: Path) -> None:
    """Each passive checkpoint ends with newer frames behind it while writes never stop, so no
    write can start the log over; past `restart_after_frames` the checkpointer holds writers
    off for one checkpoint, and the log starts over."""
    path = tmp_path / "db.sqlite3"
    database = Database(f"sqlite:///{path}")
    try:
        checkpointer = database.checkpointer
        assert checkpointer is not None
        checkpointer.restart_after_frames = 1000
        with database.write() as conn:
            conn.execute(text("CREATE TABLE t (k BLOB PRIMARY KEY, v BLOB)"))
        commits = 10_000  # two to three pages each: about 25,000 frames in all
        for _ in range(commits):
            with database.write() as conn:
                conn.execute(text("INSERT INTO t VALUES (randomblob(16), randomblob(300))"))
        runs = checkpointer.runs
        assert checkpointer.wait_for_run(runs, timeout=30)
        assert checkpointer.paused >= 1
        assert checkpointer.last_result is not None
        _busy, logged, _copied = checkpointer.last_result
        # What was written since the log last started over: a fraction of all the frames.
        assert logged < 10_000, checkpointer.last_result
    finally:
        database.dispose()
    with sqlite3.connect(path) as plain:
        assert plain.execute("SELECT count(*) FROM t").fetchone()[0] == commits
