"""Executemany without SQLAlchemy's per-row work, for the batched write paths on SQLite.

`conn.execute(statement, rows)` with a list of dicts makes SQLAlchemy build, for every row, a
parameter dict from the compiled statement and run each value's type processor through its
execution context: on SQLite that was a fifth of the ingestion pipeline's time, more than
SQLite's own inserts. `ManyWriter` compiles its statement once per set of row keys, keeps the
bind processors of the types involved, and hands the driver plain tuples — the same SQL, the
same value conversions, the per-row bookkeeping done once, straight on the driver's cursor (as
`store.prepared` does for reads). One-row inserts on hot paths use it too.

PostgreSQL keeps SQLAlchemy's path: there it batches rows into multi-VALUES statements
("insertmanyvalues"), which is better than a plain executemany.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.base import Executable

from openprofiles.store.prepared import bind_processor, run_on_driver


@dataclass(frozen=True)
class _Plan:
    sql: str
    # Per positional parameter: (row key, or None for a value fixed in the statement; the
    # fixed value; the type's bind processor, if any).
    parameters: tuple[tuple[str | None, Any, Callable[[Any], Any] | None], ...]

    def takes(self, keys: tuple[str, ...]) -> bool:
        """Whether tuples of `keys`' values are already the driver's parameters."""
        return tuple(k for k, _, _ in self.parameters) == keys and all(
            process is None for _, _, process in self.parameters
        )


class ManyWriter:
    """One statement executed for many rows (dicts with the same keys)."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._plans: dict[tuple[str, ...], _Plan | None] = {}
        self._lock = threading.Lock()

    def execute(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        plan = self._plan(conn.dialect, tuple(rows[0])) if conn.dialect.name == "sqlite" else None
        if plan is None:
            conn.execute(self.statement, list(rows))
            return
        values = _tuples(plan, rows)
        run_on_driver(conn, plan.sql, lambda cursor: cursor.executemany(plan.sql, values))

    def execute_tuples(
        self, conn: Connection, keys: tuple[str, ...], rows: Sequence[tuple[Any, ...]]
    ) -> None:
        """`execute` for rows given as tuples of the values of `keys`, in that order: when the
        statement's parameters are those keys in that order and need no conversion, the tuples
        go to the driver as they are, with no per-row work in Python at all."""
        if not rows:
            return
        plan = self._plan(conn.dialect, keys) if conn.dialect.name == "sqlite" else None
        if plan is None or not plan.takes(keys):
            self.execute(conn, [dict(zip(keys, row, strict=True)) for row in rows])
            return
        run_on_driver(conn, plan.sql, lambda cursor: cursor.executemany(plan.sql, rows))

    def _plan(self, dialect: Dialect, keys: tuple[str, ...]) -> _Plan | None:
        if keys in self._plans:
            return self._plans[keys]
        with self._lock:
            if keys not in self._plans:
                self._plans[keys] = _compile(self.statement, dialect, keys)
            return self._plans[keys]


def _tuples(plan: _Plan, rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    """The rows as the driver's positional tuples, each value through its type's processor.

    A batch's rows mostly share their timestamps (the transaction's `now`): each processor
    remembers its last input, so the same object is converted once, not once per row."""
    out: list[list[Any]] = [[None] * len(plan.parameters) for _ in rows]
    for position, (key, fixed, process) in enumerate(plan.parameters):
        if key is None:
            value = fixed if process is None else process(fixed)
            for values in out:
                values[position] = value
            continue
        if process is None:
            for values, row in zip(out, rows, strict=True):
                values[position] = row[key]
            continue
        last_in: Any = _NOTHING
        last_out: Any = None
        for values, row in zip(out, rows, strict=True):
            value = row[key]
            if value is not last_in:
                last_in, last_out = value, process(value)
            values[position] = last_out
    return [tuple(values) for values in out]


_NOTHING = object()


def _compile(statement: Executable, dialect: Dialect, keys: tuple[str, ...]) -> _Plan | None:
    """The plan, or None when the statement needs what only SQLAlchemy's path does (Python-side
    column defaults, expanding IN lists, a bind the rows do not supply)."""
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))  # type: ignore[attr-defined]
    if compiled.positiontup is None or getattr(compiled, "insert_prefetch", None):
        return None
    wanted = set(keys)
    if not wanted <= set(compiled.positiontup):
        return None  # SQLAlchemy's path names the unknown keys in its error
    parameters = []
    for name in compiled.positiontup:
        bind = compiled.binds[name]
        if bind.expanding:
            return None
        if name in wanted:
            key: str | None = name
            fixed = None
        elif bind.value is not None or not bind.required:
            key, fixed = None, bind.effective_value
        else:
            return None
        parameters.append((key, fixed, bind_processor(bind.type, dialect)))
    return _Plan(compiled.string, tuple(parameters))
