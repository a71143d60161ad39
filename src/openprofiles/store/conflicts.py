"""When a transaction lost to a concurrent one, and running it again is the answer.

On PostgreSQL (READ COMMITTED, several server processes) a write can fail because of another
transaction: a deadlock (SQLSTATE 40P01), a serialization failure (40001), a row it relied on
deleted meanwhile (a foreign key, 23503) or inserted meanwhile (a unique key, 23505); or its
connection was dropped (the pool invalidates it) before it committed. Run again, it starts from
the other's committed work and decides afresh, so the caller never sees the race. Code that
notices such a race itself (a profile it locked is gone or merged since it was found) raises
`ConcurrentChange`. A connection lost during the COMMIT leaves the outcome unknown: that is
context.CommitOutcomeUnknown, never run again.

SQLite has one writer, so none of the races happen there: only a statement that found the
database BUSY/LOCKED (a writer outside the writer lock) is run again; the server's own writes
wait on the writer lock and the busy timeout instead (their BEGIN IMMEDIATE fails raw). Any
other database error (a missing table, a full disk, an integrity error on SQLite) is no race:
it propagates as it is, to be logged with its traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError

from openprofiles.errors import InternalServer

T = TypeVar("T")
logger = logging.getLogger(__name__)

# How many times a unit of work runs at most; a race lost four times in a row is load no
# immediate retry will get through, and the caller (an SDK retries a 500) waits instead.
ATTEMPTS = 4
_CONFLICT_SQLSTATES = frozenset({"40P01", "40001", "23503", "23505"})
# A lock the statement would not wait for (FOR UPDATE NOWAIT) is held by another transaction.
_LOCK_UNAVAILABLE = "55P03"
# SQLite's primary result codes for "another connection holds the lock".
_SQLITE_BUSY_OR_LOCKED = (5, 6)


class ConcurrentChange(Exception):
    """What this transaction read was changed by a concurrent one before it could lock it: run
    the transaction again. The message says what changed (for the log, never the caller)."""


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` is a lost race or a dropped connection that a new attempt may get past."""
    if isinstance(exc, ConcurrentChange):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        # The pool has dropped the connection; the next attempt gets a new one.
        return True
    if getattr(exc.orig, "sqlstate", None) in _CONFLICT_SQLSTATES:
        return True
    code = getattr(exc.orig, "sqlite_errorcode", None)
    return (
        isinstance(exc, OperationalError)
        and code is not None
        and (code & 0xFF in _SQLITE_BUSY_OR_LOCKED)
    )


def is_lock_unavailable(exc: BaseException) -> bool:
    """Whether `exc` is PostgreSQL refusing a lock that the statement would not wait for
    (`profiles.service.lock_profiles(wait=False)`): the caller decides what to do instead."""
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) == _LOCK_UNAVAILABLE


def retrying(run: Callable[[], T], *, may_retry: Callable[[], bool] = lambda: True) -> T:
    """`run()`, run again (at most ATTEMPTS times in all) while it fails transiently and
    `may_retry()` says nothing of it is committed yet. One that keeps failing, or fails after a
    commit, is an InternalServerException that says why, with the error logged."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return run()
        except Exception as exc:
            if not is_transient(exc):
                raise
            if attempt < ATTEMPTS and may_retry():
                continue
            # The type and traceback for the operator (logging_setup withholds the message).
            logger.error(
                "gave up after %d attempt(s): %s", attempt, type(exc).__name__, exc_info=exc
            )
            raise InternalServer(_why_not_done(exc)) from exc
    raise AssertionError("unreachable")


def _why_not_done(exc: Exception) -> str:
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return "The connection to the database was lost; send the request again."
    return (
        "The request conflicted with concurrent changes to the same data and was not "
        "completed; send it again."
    )
