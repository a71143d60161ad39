"""When a transaction lost to a concurrent one, and running it again is the answer.

On PostgreSQL (READ COMMITTED, several server processes) a write can fail because of another
transaction: a deadlock (SQLSTATE 40P01), a serialization failure (40001), a row it relied on
deleted meanwhile (a foreign key, 23503) or inserted meanwhile (a unique key, 23505); or its
connection was dropped (the pool invalidates it) before it committed. Run again, it starts from
the other's committed work and decides afresh, so the caller never sees the race. Code that
notices such a race itself (a profile it locked is gone or merged since it was found) raises
`ConcurrentChange`. A connection lost during the COMMIT leaves the outcome unknown: that is
context.CommitOutcomeUnknown, never run again.

Two more PostgreSQL failures are no race but the database unable to do the work now, and are
answered 503 (`unavailable`: a ServiceUnavailable, which the SDKs retry), the work undone: its
shared lock table full (53200, "out of shared memory": max_locks_per_transaction times
max_connections slots, shared by every session), which is run again here first, since the
other sessions' transactions end and free their slots; and a lock waited for longer than the
sessions' lock_timeout (55P03, store.database), which is not: it waited long already.

SQLite has one writer, so none of the races happen there: only a statement that found the
database BUSY/LOCKED (a writer outside the writer lock) is run again; the server's own writes
wait on the writer lock and the busy timeout instead (their BEGIN IMMEDIATE fails raw). Any
other database error (a missing table, a full disk, an integrity error on SQLite) is no race:
it propagates as it is, to be logged with its traceback.

A transaction can also be run again for a reason of its own: it reached something slow that
must not happen while it holds locks (unwrapping a domain's data key, a call to KMS, with the
SQLite writer lock held would stop every write of every process for as long as KMS takes). It
raises `RestartOutside`; `retrying` lets it roll back, does the slow part with no transaction
open, keeps the result for the run's next attempts (`prepared`), and runs it again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError

from openprofiles.errors import InternalServer, ServiceError, ServiceUnavailable

T = TypeVar("T")
logger = logging.getLogger(__name__)

# How many times a unit of work runs at most; a race lost four times in a row is load no
# immediate retry will get through, and the caller (an SDK retries a 500) waits instead.
ATTEMPTS = 4
_CONFLICT_SQLSTATES = frozenset({"40P01", "40001", "23503", "23505"})
# A lock the statement would not wait for (FOR UPDATE NOWAIT) is held by another transaction.
_LOCK_UNAVAILABLE = "55P03"
# Out of memory; on PostgreSQL a full shared lock table ("out of shared memory").
_OUT_OF_MEMORY = "53200"
# SQLite's primary result codes for "another connection holds the lock".
_SQLITE_BUSY_OR_LOCKED = (5, 6)


class ConcurrentChange(Exception):
    """What this transaction read was changed by a concurrent one before it could lock it: run
    the transaction again. The message says what changed (for the log, never the caller)."""


class RestartOutside(BaseException):  # noqa: N818 — a signal to `retrying`, not an error
    """The transaction needs `prepare()` done first, with no transaction open: roll it back,
    prepare, and run it again, with what `prepare` returned kept under `key` (`prepared`).

    Raise it only where `restartable()` says so. A BaseException, so that the handlers'
    `except Exception` clauses (which dead-letter a record, or turn an error into an API error)
    let it through to `retrying` unchanged.
    """

    def __init__(self, what: str, key: Hashable, prepare: Callable[[], Any]) -> None:
        super().__init__(what)
        self.key = key
        self.prepare = prepare


@dataclass
class _Run:
    """One `retrying` call: whether it may still run again, and what was prepared for it."""

    may_retry: Callable[[], bool]
    prepared: dict[Hashable, Any] = field(default_factory=dict)


_current_run: ContextVar[_Run | None] = ContextVar("openprofiles_retrying", default=None)


def restartable() -> bool:
    """Whether the running code is inside `retrying`, which may still run it again."""
    run = _current_run.get()
    return run is not None and run.may_retry()


@contextmanager
def not_restartable() -> Iterator[None]:
    """Run the block as no `retrying` call may run it again: what runs after a transaction
    committed (its after-commit actions) must not restart the request that committed it, or
    the request would be applied twice."""
    token = _current_run.set(None)
    try:
        yield
    finally:
        _current_run.reset(token)


def prepared(key: Hashable) -> Any | None:
    """What a `RestartOutside` with this key prepared for the running `retrying` call, if any.

    It lives as long as that call (one request, one batch), never longer: a data key unwrapped
    for it is not a cache that outlives the key manager's own expiry."""
    run = _current_run.get()
    return None if run is None else run.prepared.get(key)


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` is a lost race or a dropped connection that a new attempt may get past."""
    if isinstance(exc, ConcurrentChange):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        # The pool has dropped the connection; the next attempt gets a new one.
        return True
    if getattr(exc.orig, "sqlstate", None) in (*_CONFLICT_SQLSTATES, _OUT_OF_MEMORY):
        return True
    code = getattr(exc.orig, "sqlite_errorcode", None)
    return isinstance(exc, OperationalError) and sqlite_locked(code)


def sqlite_locked(code: int | None) -> bool:
    """Whether a SQLite result code (extended or primary) says another connection holds the
    lock: what waiting mends."""
    return code is not None and code & 0xFF in _SQLITE_BUSY_OR_LOCKED


def is_lock_unavailable(exc: BaseException) -> bool:
    """Whether `exc` is PostgreSQL refusing a lock that the statement would not wait for
    (`profiles.service.lock_profiles(wait=False)`): the caller decides what to do instead."""
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) == _LOCK_UNAVAILABLE


def unavailable(exc: BaseException) -> ServiceError | None:
    """The 503 to answer for a database that could not do the work now (the module docstring),
    or None for another error. The message never quotes the database's: it may name data."""
    if not isinstance(exc, DBAPIError):
        return None
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate == _OUT_OF_MEMORY:
        return ServiceUnavailable(
            "The database ran out of lock space (out of shared memory), and the request was not "
            "completed. Send it again, or send smaller batches (the database's "
            "max_locks_per_transaction may be too small: docs/operations.md)."
        )
    if sqlstate == _LOCK_UNAVAILABLE:
        return ServiceUnavailable(
            "The database did not grant a lock in time: another session held it (a long "
            "maintenance statement, say), and the request was not completed; send it again."
        )
    return None


def retrying(run: Callable[[], T], *, may_retry: Callable[[], bool] = lambda: True) -> T:
    """`run()`, run again (at most ATTEMPTS times in all) while it fails transiently and
    `may_retry()` says nothing of it is committed yet. One that keeps failing, or fails after a
    commit, is an InternalServerException that says why, with the error logged.

    A `RestartOutside` is no failure and counts no attempt: each key is prepared once, and
    from then on `prepared` has it, so it cannot come back."""
    state = _Run(may_retry)
    token = _current_run.set(state)
    try:
        attempt = 1
        while True:
            try:
                return run()
            except RestartOutside as outside:
                if outside.key in state.prepared:
                    raise AssertionError(f"prepared twice: {outside}") from None
                state.prepared[outside.key] = outside.prepare()
            except Exception as exc:
                if not is_transient(exc):
                    if (busy := unavailable(exc)) is not None:
                        raise busy from exc
                    raise
                if attempt < ATTEMPTS and may_retry():
                    attempt += 1
                    continue
                # The type and traceback for the operator (logging_setup withholds the message).
                logger.error(
                    "gave up after %d attempt(s): %s", attempt, type(exc).__name__, exc_info=exc
                )
                raise unavailable(exc) or InternalServer(_why_not_done(exc)) from exc
    finally:
        _current_run.reset(token)


def _why_not_done(exc: Exception) -> str:
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return "The connection to the database was lost; send the request again."
    return (
        "The request conflicted with concurrent changes to the same data and was not "
        "completed; send it again."
    )
