"""Engine set-up and transactions.

`Database.read()` and `Database.write()` yield a connection inside a transaction that commits
when the block ends and rolls back on error. SQLite runs in WAL mode with one writer: write
transactions first take the writer lock (`store.writer_lock`), so writers in this process and
in others queue in the kernel instead of sleeping on SQLite's busy handler, then start with
BEGIN IMMEDIATE (so a writer outside that lock makes them wait on the busy timeout instead of
failing on lock upgrade). On the event loop, the writes of one turn of the loop share a
transaction (`store.group_commit`). WAL checkpoints run on a background thread
(`store.checkpoint`), not inside the commit of whichever request happens to fill the log.

A write that fails because the database cannot be written (disk full, read-only, I/O error:
`storage_failure`) is remembered for a while (`Database.write_problem`), for /health to report,
and so is a SQLite writer lock that another process held past the lock timeout.

One setting bounds every wait for another writer, on either backend:
`Settings.database_lock_timeout_seconds` (0: no bound) — PostgreSQL's `lock_timeout`, and on
SQLite the writer lock's wait and SQLite's own busy timeout (`_sqlite_busy_timeout_ms`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, make_url
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import QueuePool

from openprofiles import json_codec
from openprofiles.blocking import CommitOutcome, loop_request, note_commit
from openprofiles.settings import (
    DEFAULT_DATABASE_LOCK_TIMEOUT_SECONDS,
    SQLITE_SYNCHRONOUS_MODES,
    Settings,
)
from openprofiles.store.checkpoint import DEFAULT_RESTART_AFTER_FRAMES, Checkpointer
from openprofiles.store.group_commit import CommitGroup
from openprofiles.store.writer_lock import WriterLock

logger = logging.getLogger("openprofiles.store")

# The log's restart point (store/checkpoint.py) in bytes, at SQLite's 4 KiB pages.
JOURNAL_SIZE_LIMIT = DEFAULT_RESTART_AFTER_FRAMES * 4096

# How long a write that failed for want of a writable database is reported (write_problem):
# a few of a load balancer's health checks. A write that succeeds meanwhile does not end it: on
# a full disk, a write that needs no new page still succeeds while every insert fails.
WRITE_PROBLEM_SECONDS = 60.0

# Why a write failed, by the driver's error code, when the database itself cannot be written;
# other failures (a constraint, a lock timeout, a request's own error) say nothing of its health.
# SQLite: the primary result code (the low byte of the extended one).
_SQLITE_FAILURES = {
    8: "the database is read-only",  # SQLITE_READONLY
    10: "disk I/O error",  # SQLITE_IOERR
    11: "the database file is corrupt",  # SQLITE_CORRUPT
    13: "the disk is full",  # SQLITE_FULL
    14: "the database file cannot be opened",  # SQLITE_CANTOPEN
}
# PostgreSQL: the SQLSTATE.
_POSTGRES_FAILURES = {
    "53100": "the database server's disk is full",  # disk_full
    "25006": "the database is read-only (a standby?)",  # read_only_sql_transaction
    "58030": "I/O error on the database server",  # io_error
}


def storage_failure(error: BaseException) -> str | None:
    """Why `error` says the database cannot be written, or None when it says nothing of that.
    A fixed text per error code: the driver's message may quote a statement's data."""
    # SQLAlchemy wraps the driver's exception (in `orig`); a statement sent to the driver
    # directly (BEGIN, SAVEPOINT) raises the driver's own.
    driver_error = getattr(error, "orig", None) or error
    code = getattr(driver_error, "sqlite_errorcode", None)
    if isinstance(code, int):
        return _SQLITE_FAILURES.get(code & 0xFF)
    state = getattr(driver_error, "sqlstate", None)
    return _POSTGRES_FAILURES.get(state) if isinstance(state, str) else None


# SQLite's longest busy timeout (a C int of milliseconds: about 24.8 days), what "no bound"
# (a lock timeout of 0) becomes there: SQLite reads a busy timeout of 0 as "do not wait at all".
_SQLITE_LONGEST_BUSY_MS = 2**31 - 1


def _sqlite_busy_timeout_ms(lock_timeout_seconds: float) -> int:
    """SQLite's busy timeout for the lock timeout setting. It follows the writer lock's bound
    rather than a fixed 30 s: it is the bound of a write that meets a writer outside the lock (a
    `sqlite3` shell, an older process) and of BEGIN IMMEDIATE after the lock, so an operator who
    allows writers a longer wait (or none: 0) gets it there too, and a shorter one is not undone
    by a 30 s wait inside SQLite."""
    if lock_timeout_seconds == 0:
        return _SQLITE_LONGEST_BUSY_MS
    # At least 1 ms: 0 would make SQLite fail a busy write at once.
    return min(_SQLITE_LONGEST_BUSY_MS, max(1, round(lock_timeout_seconds * 1000)))


def _sqlite_engine(url: str, cache_mib: int | None, synchronous: str, busy_ms: int) -> Engine:
    engine = create_engine(
        url,
        # Statement parameters are customers' sealed data and digests: never in error texts.
        hide_parameters=True,
        json_serializer=json_codec.dumps,
        json_deserializer=json_codec.loads,
        poolclass=QueuePool,
        pool_size=8,
        max_overflow=8,
        # pysqlite's own busy timeout, in seconds; _on_connect sets the same with the PRAGMA.
        connect_args={"check_same_thread": False, "timeout": busy_ms / 1000},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # NORMAL (the default) is durable across crashes of the process; FULL, when the
        # operator chooses it, across power loss too (Settings.sqlite_synchronous says the
        # cost). The value is one of a fixed set, checked by Database.
        cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Deleted and overwritten content is zeroed in the page, not just marked free: an
        # erased profile's sealed blob or domain's wrapped key must not stay readable in the
        # file (builds without SECURE_DELETE compiled in have it off). The log may still hold
        # the pages from before the erasure: Database.request_truncate empties it.
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        # Checkpoints are the Checkpointer's job, off the commit path (store/checkpoint.py).
        cursor.execute("PRAGMA wal_autocheckpoint=0")
        # When a write starts the log over, a log file grown past this (a bulk load) is cut
        # back to it, so the disk gets the space back (store/checkpoint.py).
        cursor.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
        if cache_mib is not None:
            # A negative size is in KiB (Settings.sqlite_cache_mib says who wants a larger one).
            cursor.execute(f"PRAGMA cache_size={-cache_mib * 1024}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.info.get("begin_mode", "DEFERRED")
        # Straight to the driver: through exec_driver_sql this statement cost as much as the
        # query of an index lookup it precedes.
        driver = conn.connection.driver_connection
        assert driver is not None
        driver.execute(f"BEGIN {mode}")

    return engine


class Database:
    """The application's database: one engine, transactions for reading and for writing."""

    def __init__(
        self,
        url: str,
        *,
        sqlite_cache_mib: int | None = None,
        sqlite_synchronous: str = "normal",
        lock_timeout_seconds: float = DEFAULT_DATABASE_LOCK_TIMEOUT_SECONDS,
    ) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.checkpointer: Checkpointer | None = None
        if self.is_sqlite:
            if sqlite_synchronous not in SQLITE_SYNCHRONOUS_MODES:
                raise ValueError(f"Unknown SQLite synchronous mode {sqlite_synchronous!r}")
            self._busy_ms = _sqlite_busy_timeout_ms(lock_timeout_seconds)
            self.engine = _sqlite_engine(url, sqlite_cache_mib, sqlite_synchronous, self._busy_ms)
            # A long log is cut short while writers wait (store.checkpoint); the lock is made
            # below, and is the one every writer of this database takes.
            self.checkpointer = Checkpointer(
                self._checkpoint_connection, pause_writers=lambda: self._sqlite_writer_lock()
            )
        else:
            self.engine = create_engine(
                _psycopg_url(url),
                hide_parameters=True,
                json_serializer=json_codec.dumps,
                json_deserializer=json_codec.loads,
                pool_size=10,
                max_overflow=10,
                pool_pre_ping=True,
                connect_args=_postgres_connect_args(url, lock_timeout_seconds),
            )
        # The setting's 0 ("no timeout", as PostgreSQL's lock_timeout reads it) is the lock's
        # None: a wait of 0 seconds would refuse every write that meets another writer.
        self._writer_lock = (
            WriterLock(_lock_path(url), wait_seconds=lock_timeout_seconds or None)
            if self.is_sqlite
            else None
        )
        # The open shared write transaction of an event loop, if any (store.group_commit).
        self._group: CommitGroup | None = None
        # (time.monotonic(), reason) of the latest write the database refused (write_problem).
        self._write_failure: tuple[float, str] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        url = settings.effective_database_url
        if settings.is_sqlite:
            settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            database = make_url(url).database
            if database and database != ":memory:":
                _owner_only(Path(database))
        return cls(
            url,
            sqlite_cache_mib=settings.sqlite_cache_mib,
            sqlite_synchronous=settings.sqlite_synchronous,
            lock_timeout_seconds=settings.database_lock_timeout_seconds,
        )

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            if self.is_sqlite:
                conn.info["begin_mode"] = "DEFERRED"
            with conn.begin():
                yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        try:
            if self._writer_lock is None:
                with self.engine.begin() as conn:
                    yield conn
                return
            group = self._group_to_join()
            if group is not None:
                with group.member() as conn:
                    yield conn
                note_commit()
                return
            with self._writer_lock, self.engine.connect() as conn, self._immediate(conn):
                yield conn
        except Exception as error:
            self.note_write_failure(error)
            raise
        note_commit()

    def note_write_failure(self, error: BaseException) -> None:
        """Remember `error` for `write_problem` when it says the database cannot be written."""
        reason = storage_failure(error)
        if reason is not None:
            self._write_failure = (time.monotonic(), reason)

    def write_problem(self, *, now: float | None = None) -> str | None:
        """Why writes to the database fail, when one of this process's failed for want of a
        writable database (disk full, read-only, I/O error) in the WRITE_PROBLEM_SECONDS before
        `now` (time.monotonic()), or waited in vain for the SQLite writer lock another process
        still holds (a loader stopped with Ctrl-Z: WriterLock.stalled_holder); else None. Costs
        no query and takes no lock: a health check may ask it as often as it likes."""
        failure = self._write_failure
        now = time.monotonic() if now is None else now
        if failure is not None and now - failure[0] <= WRITE_PROBLEM_SECONDS:
            return failure[1]
        if self._writer_lock is not None:
            return self._writer_lock.stalled_holder(within=WRITE_PROBLEM_SECONDS, now=now)
        return None

    def _group_to_join(self) -> CommitGroup | None:
        """On an event loop, its open shared transaction, opened now if there is none; else
        None (a worker thread, or no running loop: a transaction of the write's own)."""
        if loop_request() is None:
            return None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        group = self._group
        if group is not None and group.open and group.loop is loop:
            return group
        # The loop's way of taking the lock: WouldBlock rather than a wait, while nothing of
        # the request is written (openprofiles.blocking).
        assert self._writer_lock is not None
        with ExitStack() as opening:
            opening.enter_context(self._writer_lock)
            conn = opening.enter_context(self.engine.connect())
            conn.info["begin_mode"] = "IMMEDIATE"
            try:
                transaction = conn.begin()
            finally:
                conn.info["begin_mode"] = "DEFERRED"
            # Opened: the lock and the connection are the group's now (it ends them).
            opening.pop_all()
        # Requests of this loop waiting for the lock join this transaction instead: woken
        # before the commit is scheduled, they run first.
        self._writer_lock.wake_waiters_on(loop)
        group = self._group = CommitGroup(loop, conn, transaction, self._group_ended)
        # Its commit fails after every member's block has ended, out of `write`'s sight.
        group.outcome.add_done_callback(self._group_outcome)
        return group

    def _group_outcome(self, outcome: CommitOutcome) -> None:
        failure = None if outcome.cancelled() else outcome.result()
        if failure is not None:
            self.note_write_failure(failure)

    def _sqlite_writer_lock(self) -> WriterLock:
        assert self._writer_lock is not None
        return self._writer_lock

    def _group_ended(self, group: CommitGroup) -> None:
        if self._group is group:
            self._group = None
        assert self._writer_lock is not None and self.checkpointer is not None
        self._writer_lock.__exit__(None, None, None)
        self.checkpointer.nudge()

    @contextmanager
    def _immediate(self, conn: Connection) -> Iterator[None]:
        """A SQLite write transaction on `conn`; the caller holds the writer lock."""
        conn.info["begin_mode"] = "IMMEDIATE"
        try:
            with conn.begin():
                yield
        finally:
            conn.info["begin_mode"] = "DEFERRED"
        assert self.checkpointer is not None
        self.checkpointer.nudge()

    @contextmanager
    def pinned(self) -> Iterator[PinnedConnection]:
        """One connection for several transactions, read and write: for work that stages data
        in temporary tables (which belong to the connection) while it only reads, and writes
        them in a short write transaction, so the writer is held for the write alone."""
        with self.engine.connect() as conn:
            yield PinnedConnection(self, conn)

    def _checkpoint_connection(self) -> Any:
        # A connection of its own, outside the pool: the checkpointer holds it for its lifetime.
        cargs, cparams = self.engine.dialect.create_connect_args(self.engine.url)
        connection = self.engine.dialect.connect(*cargs, **cparams)
        connection.isolation_level = None
        connection.execute(f"PRAGMA busy_timeout={self._busy_ms}")
        connection.execute("PRAGMA secure_delete=ON")  # as every connection (_sqlite_engine)
        return connection

    def request_truncate(self) -> None:
        """Call after a transaction that erased data (a profile, a domain and its key, purged
        objects) has committed: on SQLite, the write-ahead log — which still holds the page
        images from before the erasure — is emptied shortly after, on the checkpointer's thread
        (store.checkpoint). Returns at once; safe on the event loop, and after a write that
        joined a shared transaction still open (the truncation waits for the writer lock, so
        for that commit). Nothing to do on PostgreSQL."""
        if self.checkpointer is not None:
            self.checkpointer.request_truncate()

    def dispose(self) -> None:
        group = self._group
        if group is not None and group.open:
            # Its loop stopped before the commit: none of its members was answered.
            group.abandon()
        if self.checkpointer is not None:
            self.checkpointer.close()
        self.engine.dispose()
        if self._writer_lock is not None:
            self._writer_lock.close()


def _owner_only(path: Path) -> None:
    """Create the SQLite file readable by its owner alone, or take others' access away.

    The file holds web users' password hashes and session rows in clear (profiles are sealed).
    A data dir made beforehand may be world-readable, and SQLite creates its file with the
    umask's permissions; it gives the -wal and -shm files the database file's.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        logger.warning(
            "The database file %s was readable by other users (mode %o); now owner-only.",
            path,
            mode,
        )
        os.chmod(path, mode & 0o700)


def _lock_path(url: str) -> Path | None:
    """The writer lock's file beside the SQLite database; None for an in-memory database."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return Path(database).with_name(Path(database).name + "-writer.lock")


# libpq's settings for every PostgreSQL connection, unless the URL sets them itself
# (`?connect_timeout=30&keepalives_idle=10`). Without them a server that stopped answering —
# a network partition, a listener that accepts and never replies — held a connection attempt,
# and a query waiting for its result, for as long as the operating system's TCP defaults: many
# minutes, with requests and /health hanging. A connection attempt now gives up after
# `connect_timeout` seconds; an idle open connection whose peer has gone is dropped after
# idle + interval * count = 30 + 10 * 3 s of silence (keepalive probes unanswered).
_KEEPALIVES = {"keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}
# A connection with a statement or a commit still unacknowledged when the network goes is not
# idle, so keepalives never probe it: it was left to TCP's retransmissions (about 15 minutes on
# Linux), the request waiting all that time. `tcp_user_timeout` (milliseconds) bounds how long
# sent data may stay unacknowledged. It is the keepalives' own bound, idle + interval * count,
# as is usual: Linux applies it to keepalive probes too, so a smaller one would cut them short.
# A dead peer is then given up on after the same minute, idle or writing. It concerns only what
# this side sends (a server busy with a long query still acknowledges the bytes it received),
# so a slow query or a result read slowly is unaffected.
_DEAD_PEER_SECONDS = (
    _KEEPALIVES["keepalives_idle"]
    + _KEEPALIVES["keepalives_interval"] * _KEEPALIVES["keepalives_count"]
)
POSTGRES_CONNECT_DEFAULTS: dict[str, int] = {
    "connect_timeout": 10,
    "keepalives": 1,
    **_KEEPALIVES,
    "tcp_user_timeout": _DEAD_PEER_SECONDS * 1000,
}


def _postgres_connect_args(url: str, lock_timeout_seconds: float) -> dict[str, int | str]:
    """POSTGRES_CONNECT_DEFAULTS less what the URL's query sets (SQLAlchemy passes the query
    on to libpq, and `connect_args` would win over it); the connect timeout also yields to
    libpq's own PGCONNECT_TIMEOUT.

    And the session's `lock_timeout` (0: none), a start-up option added to the URL's own
    `options` (a search_path, say), unless they set one: without it a statement waits for a
    lock as long as another session holds it (a LOCK TABLE, a long ALTER, a VACUUM FULL), and
    every request waits with it, /health too. Given up, the request is answered 503
    (store.conflicts `unavailable`). Migrations wait as long as it takes (store.migrate)."""
    query = make_url(_psycopg_url(url)).query
    given = set(query)
    # libpq's own variables, read here and not in Settings: libpq reads them itself on every
    # connection (they are its configuration, not OpenProfiles'), and an argument given to it
    # wins over its variable, so the only question is whether to give one — asked of the
    # environment libpq is about to read, whoever built this Database.
    if "PGCONNECT_TIMEOUT" in os.environ:
        given.add("connect_timeout")
    args: dict[str, int | str] = {
        name: value for name, value in POSTGRES_CONNECT_DEFAULTS.items() if name not in given
    }
    options = query.get("options", "")
    if isinstance(options, tuple):  # the URL names it more than once: libpq takes the last
        options = options[-1]
    if "lock_timeout" not in options and "PGOPTIONS" not in os.environ:
        own = f"-c lock_timeout={round(lock_timeout_seconds * 1000)}"
        args["options"] = f"{options} {own}".strip()
    return args


def _psycopg_url(url: str) -> str:
    """Use psycopg 3 for plain postgresql:// URLs (SQLAlchemy defaults to psycopg2)."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("postgres://"):
        return "postgresql+psycopg://" + url[len("postgres://") :]
    return url


class PinnedConnection:
    """Transactions on one connection (Database.pinned), one at a time."""

    def __init__(self, database: Database, conn: Connection) -> None:
        self._database = database
        self._conn = conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        if self._database.is_sqlite:
            self._conn.info["begin_mode"] = "DEFERRED"
        with self._conn.begin():
            yield self._conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        database = self._database
        try:
            if database._writer_lock is None:
                with self._conn.begin():
                    yield self._conn
                return
            with database._writer_lock, database._immediate(self._conn):
                yield self._conn
        except Exception as error:
            database.note_write_failure(error)
            raise
        note_commit()
