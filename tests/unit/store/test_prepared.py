"""PreparedRead returns exactly what SQLAlchemy's execution of the same select returns, on both
backends: values converted by their column types, IN lists of any length, the statement's own
literals, and SQLAlchemy's exception types for driver errors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import (
    JSON,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    bindparam,
    case,
    func,
    insert,
    select,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from openprofiles.context import Services
from openprofiles.store.prepared import PreparedRead
from openprofiles.store.types import UtcDateTime

metadata = MetaData()
item = Table(
    "prepared_test_item",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(50)),
    Column("blob", LargeBinary),
    Column("at", UtcDateTime),
    Column("doc", JSON),
)

T0 = datetime(2026, 11, 28, 10, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def conn(services: Services) -> Iterator[Connection]:
    with services.database.write() as connection:
        metadata.create_all(connection)
        connection.execute(
            insert(item),
            [
                {
                    "id": i,
                    "name": f"n{i % 3}",
                    "blob": bytes([i, 0, 255]),
                    "at": T0 + timedelta(seconds=i),
                    "doc": {"i": i, "tags": ["a", str(i)]},
                }
                for i in range(1, 11)
            ],
        )
        yield connection
        metadata.drop_all(connection)


def _same(
    conn: Connection, statement: object, params: dict[str, object]
) -> list[tuple[object, ...]]:
    expected = [tuple(row) for row in conn.execute(statement, params)]  # type: ignore[call-overload]
    got = PreparedRead(statement).rows(conn, params)  # type: ignore[arg-type]
    assert [tuple(row) for row in got] == expected
    return expected


def test_converts_values_like_sqlalchemy(conn: Connection) -> None:
    statement = select(item).where(item.c.at >= bindparam("since"))
    rows = _same(conn, statement, {"since": T0 + timedelta(seconds=8)})
    assert [r[0] for r in rows] == [8, 9, 10]
    found = PreparedRead(statement).first(conn, {"since": T0 + timedelta(seconds=10)})
    assert found is not None
    assert found.at == T0 + timedelta(seconds=10) and found.at.tzinfo is not None
    assert found.doc == {"i": 10, "tags": ["a", "10"]}
    assert bytes(found.blob) == bytes([10, 0, 255])


def test_tuples_are_the_rows_as_plain_tuples(conn: Connection) -> None:
    statement = select(item.c.id, item.c.doc).where(item.c.id <= bindparam("most"))
    prepared = PreparedRead(statement)
    got = prepared.tuples(conn, {"most": 2})
    assert [tuple(row) for row in got] == [tuple(row) for row in prepared.rows(conn, {"most": 2})]
    assert [tuple(row) for row in got] == [
        (1, {"i": 1, "tags": ["a", "1"]}),
        (2, {"i": 2, "tags": ["a", "2"]}),
    ]


def test_in_lists_of_any_length(conn: Connection) -> None:
    statement = select(item.c.id, item.c.name).where(
        item.c.id.in_(bindparam("ids", expanding=True)), item.c.name == bindparam("name")
    )
    prepared = PreparedRead(statement)
    assert [r.id for r in prepared.rows(conn, {"ids": [1, 4, 7, 9], "name": "n1"})] == [1, 4, 7]
    assert [r.id for r in prepared.rows(conn, {"ids": [2], "name": "n2"})] == [2]
    assert prepared.rows(conn, {"ids": [], "name": "n1"}) == []
    _same(conn, statement, {"ids": [3, 6, 9, 10], "name": "n0"})


def test_statement_literals_and_anonymous_columns(conn: Connection) -> None:
    flag = func.max(case((item.c.name == bindparam("name"), 1), else_=0))
    statement = (
        select(item.c.name, flag)
        .group_by(item.c.name)
        .order_by(item.c.name)
        .limit(bindparam("limit"))
        .offset(1)
    )
    rows = _same(conn, statement, {"name": "n2", "limit": 5})
    assert rows == [("n1", 0), ("n2", 1)]


def test_a_callers_value_overrides_the_statements(conn: Connection) -> None:
    statement = select(item.c.id).where(item.c.id == bindparam("id", value=1))
    assert [r.id for r in PreparedRead(statement).rows(conn, {})] == [1]
    assert [r.id for r in PreparedRead(statement).rows(conn, {"id": 5})] == [5]


def test_driver_errors_surface_as_sqlalchemy_errors(conn: Connection) -> None:
    other = Table("prepared_test_missing", MetaData(), Column("id", Integer))
    # In a savepoint: on PostgreSQL a failed statement aborts the transaction it runs in.
    with pytest.raises(DBAPIError) as raised, conn.begin_nested():
        PreparedRead(select(other).where(other.c.id == bindparam("id"))).rows(conn, {"id": 1})
    assert "prepared_test_missing" in str(raised.value)
