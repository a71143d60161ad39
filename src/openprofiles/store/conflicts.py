"""When a transaction lost to a concurrent one, and running it again is the answer.

On PostgreSQL (READ COMMITTED, several server processes) a write can fail because of another
transaction: a deadlock (SQLSTATE 40P01), a serialization failure (40001), a row it relied on
deleted meanwhile (a foreign key, 23503) or inserted meanwhile (a unique key, 23505), or a
connection the server dropped (an OperationalError). Run again, it starts from the other's
committed work and decides afresh, so the caller never sees the race. Code that notices such a
race itself (a profile it locked is gone or merged since it was found) raises `ConcurrentChange`.

SQLite has one writer, so none of the races happen there; an integrity error there is a bug and
is never run again (SQLite's errors carry no SQLSTATE).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError

from openprofiles.errors import InternalServer

T = TypeVar("T")

# How many times a unit of work runs at most; a race lost four times in a row is load no
# immediate retry will get through, and the caller (an SDK retries a 500) waits instead.
ATTEMPTS = 4
_CONFLICT_SQLSTATES = frozenset({"40P01", "40001", "23503", "23505"})


class ConcurrentChange(Exception):
    """What this transaction read was changed by a concurrent one before it could lock it: run
    the transaction again. The message says what changed (for the log, never the caller)."""


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` is a lost race (see the module docstring) that a new attempt may win."""
    if isinstance(exc, ConcurrentChange | OperationalError):
        return True
    if isinstance(exc, DBAPIError):
        return getattr(exc.orig, "sqlstate", None) in _CONFLICT_SQLSTATES
    return False


def _why_not_done(exc: Exception) -> str:
    if isinstance(exc, ConcurrentChange) or (
        isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in _CONFLICT_SQLSTATES
    ):
        return (
            "The request conflicted with concurrent changes to the same data and was not "
            "completed; send it again."
        )
    # A connection lost, a database out of reach or out of space: nothing to do with races.
    return "The database could not complete the request; send it again."


def retrying(run: Callable[[], T], *, may_retry: Callable[[], bool] = lambda: True) -> T:
    """`run()`, run again (at most ATTEMPTS times in all) while it fails with a lost race and
    `may_retry()` says nothing of it is committed yet. A race lost every time, or after a
    commit, is an InternalServerException that says so, not the driver's error."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return run()
        except Exception as exc:
            if not is_transient(exc):
                raise
            if attempt < ATTEMPTS and may_retry():
                continue
            raise InternalServer(_why_not_done(exc)) from exc
    raise AssertionError("unreachable")
