"""ManyWriter writes exactly what SQLAlchemy's executemany writes, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import (
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    bindparam,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection

from openprofiles.context import Services
from openprofiles.store.many import ManyWriter
from openprofiles.store.types import UtcDateTime

metadata = MetaData()
thing = Table(
    "many_test_thing",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(50)),
    Column("blob", LargeBinary),
    Column("at", UtcDateTime),
    Column("kind", String(10)),
)
defaulted = Table(
    "many_test_defaulted",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("note", String(20), default="python-side"),
)

T0 = datetime(2026, 11, 28, 10, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def conn(services: Services) -> Iterator[Connection]:
    with services.database.write() as connection:
        metadata.create_all(connection)
        yield connection
        metadata.drop_all(connection)


def _rows(first: int) -> list[dict[str, object]]:
    return [
        {
            "id": first + i,
            "name": f"n{i}",
            "blob": bytes([i, 0, 255]),
            "at": T0 + timedelta(seconds=i) if i % 2 else None,
            "kind": "a" if i % 3 else "b",
        }
        for i in range(5)
    ]


def _stored(conn: Connection, ids: range) -> list[tuple[object, ...]]:
    rows = conn.execute(select(thing).where(thing.c.id.in_(list(ids))).order_by(thing.c.id))
    return [tuple(row)[1:] for row in rows]


def test_insert_update_delete_match_sqlalchemy(conn: Connection) -> None:
    ManyWriter(insert(thing)).execute(conn, _rows(0))
    conn.execute(insert(thing), _rows(100))
    assert _stored(conn, range(0, 5)) == _stored(conn, range(100, 105))
    assert _stored(conn, range(0, 5))[1] == (
        "n1",
        bytes([1, 0, 255]),
        T0 + timedelta(seconds=1),
        "a",
    )

    change = update(thing).where(thing.c.id == bindparam("i")).values(at=bindparam("a"))
    later = T0 + timedelta(days=1)
    ManyWriter(change).execute(conn, [{"i": 0, "a": later}, {"i": 1, "a": None}])
    assert [row[2] for row in _stored(conn, range(0, 2))] == [later, None]

    # A statement with a value fixed in it (kind == 'b') beside the rows' own values.
    drop_b = delete(thing).where(thing.c.id == bindparam("i"), thing.c.kind == "b")
    ManyWriter(drop_b).execute(conn, [{"i": i} for i in range(5)])
    assert [row[0] for row in _stored(conn, range(0, 5))] == ["n1", "n2", "n4"]


def test_what_it_cannot_plan_goes_through_sqlalchemy(conn: Connection) -> None:
    # A Python-side column default the rows do not supply: SQLAlchemy fills it in.
    ManyWriter(insert(defaulted)).execute(conn, [{"id": 1}, {"id": 2}])
    notes = conn.execute(select(defaulted.c.note).order_by(defaulted.c.id)).scalars().all()
    assert notes == ["python-side", "python-side"]
    # A key that is no column: whatever SQLAlchemy does with it (it ignores it in executemany).
    ManyWriter(insert(thing)).execute(conn, [{"id": 9, "name": "x", "nope": 1}])
    conn.execute(insert(thing), [{"id": 109, "name": "x", "nope": 1}])
    assert _stored(conn, range(9, 10)) == _stored(conn, range(109, 110))


def test_no_rows_is_nothing(conn: Connection) -> None:
    ManyWriter(insert(thing)).execute(conn, [])
    assert conn.execute(select(thing)).all() == []


def test_tuples_write_what_dicts_write(conn: Connection) -> None:
    keys = ("id", "name", "blob", "at", "kind")
    # Every key of the statement, no conversion (the timestamps' is one): passed as they are.
    plain = ("id", "name", "blob", "kind")
    writer = ManyWriter(insert(thing))
    writer.execute_tuples(conn, plain, [tuple(r[k] for k in plain) for r in _rows(0)])
    conn.execute(insert(thing), [{k: r[k] for k in plain} for r in _rows(100)])
    assert _stored(conn, range(0, 5)) == _stored(conn, range(100, 105))
    # Keys that need a conversion (UtcDateTime), or in another order than the statement's.
    ManyWriter(insert(thing)).execute_tuples(
        conn, keys, [tuple(r[k] for k in keys) for r in _rows(200)]
    )
    backwards = tuple(reversed(keys))
    ManyWriter(insert(thing)).execute_tuples(
        conn, backwards, [tuple(r[k] for k in backwards) for r in _rows(300)]
    )
    conn.execute(insert(thing), _rows(400))
    assert _stored(conn, range(200, 205)) == _stored(conn, range(300, 305))
    assert _stored(conn, range(200, 205)) == _stored(conn, range(400, 405))
    assert _stored(conn, range(200, 205))[1][2] == T0 + timedelta(seconds=1)
