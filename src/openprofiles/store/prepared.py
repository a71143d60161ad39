"""Hot read statements run straight on the SQLite driver.

Running a cached, compiled select through SQLAlchemy costs about 100 µs of Python per statement
here (an execution context, parameter processing, a result wrapper) while SQLite answers an
index lookup in 10–20 µs; a SearchProfiles makes three such statements. `PreparedRead` compiles
its select once per dialect, keeps the SQL, the order of its parameters and the result
processors of its columns, and runs it on the driver's cursor: the same SQL, the same value
conversions both ways, rows with attribute access like SQLAlchemy's. Expanding IN lists get
their placeholders per list length.

PostgreSQL keeps SQLAlchemy's path (as `store.many` does for writes): the target there is
concurrency across processes, not the last 100 µs of one statement.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import LargeBinary, exc
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql import Select

_POSTCOMPILE = "__[POSTCOMPILE_{}]"
_GIVEN = object()
T = TypeVar("T")


@dataclass(frozen=True)
class _Plan:
    sql: str
    # Per positional parameter: (name, the value the statement fixes for it or _GIVEN when the
    # caller supplies it, the type's bind processor or None, expanding IN list).
    parameters: tuple[tuple[str, Any, Callable[[Any], Any] | None, bool], ...]
    row_type: Any
    # (column position, result processor) for the columns that need one.
    results: tuple[tuple[int, Callable[[Any], Any]], ...]


class PreparedRead:
    """One select, run with bound parameters; `rows()` returns every row."""

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        self._plan: _Plan | None = None
        self._lock = threading.Lock()

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> Sequence[Any]:
        if conn.dialect.name != "sqlite":
            return conn.execute(self.statement, dict(params)).all()
        make = (self._plan or self._compile(conn.dialect)).row_type._make
        return [make(row) for row in self.tuples(conn, params)]

    def tuples(self, conn: Connection, params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        """Every row as a plain tuple: for reads of many rows, where making each a row with
        attribute access costs as much as SQLite reading it."""
        if conn.dialect.name != "sqlite":
            return conn.execute(self.statement, dict(params)).all()
        plan = self._plan or self._compile(conn.dialect)
        sql = plan.sql
        values: list[Any] = []
        for name, fixed, process, expanding in plan.parameters:
            # A caller's value wins over one the statement carries, as on SQLAlchemy's path.
            value = params[name] if fixed is _GIVEN or name in params else fixed
            if expanding:
                items = list(value)
                # An empty IN list matches nothing: SQLite accepts `IN ()`.
                sql = sql.replace(_POSTCOMPILE.format(name), ", ".join("?" * len(items)), 1)
                values.extend(items if process is None else [process(v) for v in items])
            else:
                values.append(value if process is None else process(value))
        fetched = run_on_driver(conn, sql, lambda cursor: cursor.execute(sql, values).fetchall())
        if plan.results:
            fetched = [_processed(row, plan.results) for row in fetched]
        return fetched

    def first(self, conn: Connection, params: Mapping[str, Any]) -> Any | None:
        found = self.rows(conn, params)
        return found[0] if found else None

    def _compile(self, dialect: Dialect) -> _Plan:
        with self._lock:
            if self._plan is None:
                self._plan = _compile(self.statement, dialect)
            return self._plan


def run_on_driver(conn: Connection, sql: str, call: Callable[[Any], T]) -> T:
    """`call(cursor)` on a cursor of the connection's driver connection, inside the transaction
    SQLAlchemy began on it; driver errors come out as SQLAlchemy's (OperationalError and kin),
    with the parameters kept out of the message like the engine's hide_parameters."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        return call(cursor)
    except conn.dialect.loaded_dbapi.Error as error:
        raise exc.DBAPIError.instance(
            sql,
            None,
            error,
            conn.dialect.loaded_dbapi.Error,
            hide_parameters=True,
            dialect=conn.dialect,
        ) from error
    finally:
        cursor.close()


def bind_processor(type_: Any, dialect: Dialect) -> Callable[[Any], Any] | None:
    """The conversion a value of `type_` gets on its way to the driver, None for none.

    LargeBinary's wraps every value in `sqlite3.Binary` (a memoryview), which sqlite3 does not
    need for bytes (SQLAlchemy's own comment says so): a call per blob of every batch saved.
    """
    if dialect.name == "sqlite" and type(type_) is LargeBinary:
        return None
    process: Callable[[Any], Any] | None = type_._cached_bind_processor(dialect)
    return process


def _processed(row: tuple[Any, ...], results: tuple[tuple[int, Callable[[Any], Any]], ...]) -> Any:
    values = list(row)
    for position, process in results:
        values[position] = process(values[position])
    return values


def _compile(statement: Select[Any], dialect: Dialect) -> _Plan:
    compiled = statement.compile(dialect=dialect)
    if compiled.positiontup is None:
        raise TypeError(f"{dialect.name} does not take positional parameters")
    parameters = []
    for name in compiled.positiontup:
        bind = compiled.binds[name]
        # Literals in the statement (`case(..., else_=0)`, LIMIT's OFFSET) are binds with a value.
        fixed = _GIVEN if bind.required or bind.callable is not None else bind.value
        process = bind_processor(bind.type, dialect)
        parameters.append((name, fixed, process, bool(bind.expanding)))
    columns = list(statement.selected_columns)
    row_type = collections.namedtuple(  # type: ignore[misc]
        "Row", [column.key or f"c{i}" for i, column in enumerate(columns)], rename=True
    )
    results = []
    for position, column in enumerate(columns):
        process = column.type._cached_result_processor(dialect, None)
        if process is not None:
            results.append((position, process))
    return _Plan(compiled.string, tuple(parameters), row_type, tuple(results))
