"""Another writer's work done between two statements of a reader's transaction, for tests of
reads that run several statements without locks (PostgreSQL, READ COMMITTED: each statement
sees what was committed when it started; SQLite: the transaction's one snapshot).

A lock cannot stop a plain reader between two of its statements (`lock_waits` needs the second
party to wait for a lock), so the work runs from a hook on the reader's own connection, just
before the statement named: SQLAlchemy's `before_cursor_execute` on PostgreSQL, the driver's
trace callback on SQLite (whose hot reads bypass SQLAlchemy: store.prepared). The work runs in
the reader's thread on connections of its own, once."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.sql import Select


@contextmanager
def before_statement(
    conn: Connection, statement: Select[Any], work: Callable[[], None]
) -> Iterator[list[bool]]:
    """While the block runs, `work()` runs once, just before `conn` first executes `statement`.
    Yields a list that holds True once the work has run; the work's exception is raised when
    the block ends (a driver's trace callback would swallow it)."""
    ran: list[bool] = []
    errors: list[BaseException] = []

    def run_once() -> None:
        if ran:
            return
        ran.append(True)
        try:
            work()
        except BaseException as exc:  # raised when the block ends
            errors.append(exc)

    sql = statement.compile(dialect=conn.dialect).string
    if conn.dialect.name == "sqlite":
        # The trace callback sees the SQL with its values written in: match around them.
        pattern = re.compile(".+?".join(map(re.escape, sql.split("?"))), re.DOTALL)
        driver = conn.connection.driver_connection
        assert driver is not None

        def trace(text: str) -> None:
            if pattern.fullmatch(text):
                run_once()

        driver.set_trace_callback(trace)
        try:
            yield ran
        finally:
            driver.set_trace_callback(None)
    else:

        def hook(_conn: Any, _cursor: Any, text: str, *_args: Any) -> None:
            if text == sql:
                run_once()

        event.listen(conn, "before_cursor_execute", hook)
        try:
            yield ran
        finally:
            event.remove(conn, "before_cursor_execute", hook)
    if errors:
        raise errors[0]
