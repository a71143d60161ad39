"""Erased rows leave the SQLite files: `secure_delete` on every connection, and the write-ahead
log emptied after an erasure (`Database.request_truncate`, store/checkpoint.py) without
stopping readers or writers for long."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import event, text

from openprofiles.store.database import Database

MARKER = b"ERASE-ME-" + b"0123456789abcdef" * 8


def _without_secure_delete_by_default(database: Database) -> None:
    """Make every new connection start with secure_delete off, as on SQLite builds without
    SECURE_DELETE compiled in (this one has it): the setting must come from the Database."""

    @event.listens_for(database.engine, "connect", insert=True)
    def _off(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA secure_delete=OFF")


def _secure_delete(database: Database) -> int:
    with database.read() as conn:
        return int(conn.execute(text("PRAGMA secure_delete")).scalar_one())


def test_every_connection_zeroes_what_it_deletes(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    database = Database(f"sqlite:///{path}")
    _without_secure_delete_by_default(database)
    try:
        assert _secure_delete(database) == 1
        with database.read():  # a second connection of the pool, the first checked out
            assert _secure_delete(database) == 1
        with database.write() as conn:
            conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)"))
            conn.execute(text("INSERT INTO t (v) VALUES (:v), (:o)"), {"v": MARKER, "o": b"kept"})
        with database.write() as conn:
            conn.execute(text("DELETE FROM t WHERE v = :v"), {"v": MARKER})
    finally:
        database.dispose()
    # The last connection closed: the log was copied into the database file and removed. The
    # page that held the row holds zeros where it was, not the row marked free.
    assert not path.with_name(path.name + "-wal").exists()
    assert MARKER not in path.read_bytes()
    with sqlite3.connect(path) as plain:
        assert plain.execute("SELECT v FROM t").fetchall() == [(b"kept",)]


def _wal(path: Path) -> bytes:
    wal = path.with_name(path.name + "-wal")
    return wal.read_bytes() if wal.exists() else b""


def _fill(database: Database) -> None:
    """A log that holds the marker row's page images far from its start: a delete that merely
    restarts the log writes over its first frames only."""
    with database.write() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)"))
        conn.execute(
            text("INSERT INTO t (v) SELECT randomblob(3000) FROM json_each('[1,2,3,4,5]')")
        )
    with database.write() as conn:
        conn.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": MARKER})


def test_the_log_is_emptied_soon_after_an_erasure(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    database = Database(f"sqlite:///{path}")
    try:
        checkpointer = database.checkpointer
        assert checkpointer is not None
        _fill(database)
        # Copied into the database file by a checkpoint (the commit asked for one), and still
        # in the log's frames too.
        assert checkpointer.wait_for(lambda: MARKER in path.read_bytes(), timeout=30)
        assert MARKER in _wal(path)
        with database.write() as conn:
            conn.execute(text("DELETE FROM t WHERE v = :v"), {"v": MARKER})
        truncations = checkpointer.truncations
        database.request_truncate()
        assert checkpointer.wait_for_truncation(truncations, timeout=30)
        assert _wal(path) == b""
        assert MARKER not in path.read_bytes()
        # Writing goes on as before, into a new log.
        with database.write() as conn:
            conn.execute(text("INSERT INTO t (v) VALUES (x'00')"))
        with database.read() as conn:
            assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 6
    finally:
        database.dispose()


def test_a_reader_in_the_log_holds_the_truncation_off_but_not_the_writers(
    tmp_path: Path,
) -> None:
    """A read transaction begun while the log held the erased row keeps reading it (its
    snapshot); the truncation waits for it a moment, lets the writers go, and tries again
    later — it happens once the reader has finished."""
    path = tmp_path / "db.sqlite3"
    database = Database(f"sqlite:///{path}")
    reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        checkpointer = database.checkpointer
        assert checkpointer is not None
        _fill(database)
        # A write the checkpointer does not hear of, so the reader's snapshot ends in the log.
        outside = sqlite3.connect(path, isolation_level=None)
        outside.execute("PRAGMA wal_autocheckpoint=0")
        outside.execute("INSERT INTO t (v) VALUES (x'01')")
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM t WHERE v = ?", (MARKER,)).fetchone() == (1,)

        with database.write() as conn:
            conn.execute(text("DELETE FROM t WHERE v = :v"), {"v": MARKER})
        database.request_truncate()
        assert checkpointer.wait_for(lambda: checkpointer.truncate_busy >= 1, timeout=30)
        assert checkpointer.truncations == 0

        # The truncation gave way: a writer writes while the reader still reads.
        wrote = threading.Event()

        def write() -> None:
            with database.write() as conn:
                conn.execute(text("INSERT INTO t (v) VALUES (x'02')"))
            wrote.set()

        writer = threading.Thread(target=write)
        writer.start()
        writer.join(timeout=60)
        assert wrote.is_set()
        # The reader's snapshot is whole: it still sees the row that was deleted since.
        assert reader.execute("SELECT count(*) FROM t WHERE v = ?", (MARKER,)).fetchone() == (1,)
        reader.execute("COMMIT")

        assert checkpointer.wait_for_truncation(0, timeout=60)
        assert MARKER not in _wal(path)
        assert MARKER not in path.read_bytes()
    finally:
        reader.close()
        outside.close()
        database.dispose()


def test_writers_and_truncations_at_once(tmp_path: Path) -> None:
    """Erasures asking for truncations while other threads write: every write commits."""
    path = tmp_path / "db.sqlite3"
    database = Database(f"sqlite:///{path}")
    failures: list[BaseException] = []
    try:
        checkpointer = database.checkpointer
        assert checkpointer is not None
        checkpointer.truncate_interval = 0.01
        with database.write() as conn:
            conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)"))

        def work(erasing: bool) -> None:
            try:
                for _ in range(300):
                    with database.write() as conn:
                        conn.execute(text("INSERT INTO t (v) VALUES (randomblob(500))"))
                        if erasing:
                            conn.execute(text("DELETE FROM t WHERE id = (SELECT min(id) FROM t)"))
                    if erasing:
                        database.request_truncate()
                    with database.read() as conn:
                        conn.execute(text("SELECT count(*) FROM t")).scalar_one()
            except BaseException as error:  # noqa: BLE001 — reported below
                failures.append(error)

        threads = [threading.Thread(target=work, args=(i == 0,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads)
        assert failures == []
        truncations = checkpointer.truncations
        database.request_truncate()
        assert checkpointer.wait_for_truncation(truncations, timeout=30)
        with database.read() as conn:
            assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 3 * 300
    finally:
        database.dispose()


def test_a_process_that_erases_and_exits_still_empties_the_log(tmp_path: Path) -> None:
    """A command (a DLQ purge, a user's deletion) erases and disposes of its Database at once,
    while a server keeps the file open (so SQLite does not empty the log on the last close):
    the truncation it asked for runs before its checkpointer stops."""
    path = tmp_path / "db.sqlite3"
    server = Database(f"sqlite:///{path}")
    command = Database(f"sqlite:///{path}")
    try:
        with server.read() as conn:  # the server's pooled connection stays open
            conn.execute(text("SELECT 1")).scalar_one()
        _fill(command)
        checkpointer = command.checkpointer
        assert checkpointer is not None
        checkpointer.truncate_interval = 60.0  # the next truncation is not due before the exit
        command.request_truncate()
        assert checkpointer.wait_for_truncation(0, timeout=30)
        with command.write() as conn:
            conn.execute(text("DELETE FROM t WHERE v = :v"), {"v": MARKER})
        command.request_truncate()
        command.dispose()
        assert checkpointer.truncations == 2
        assert _wal(path) == b""
        assert MARKER not in path.read_bytes()
    finally:
        command.dispose()
        server.dispose()
