"""Migration 0043 (both databases): ix_dlq_message_category (domain, reason category, sink
error), which GET /metrics' dead-letter counts read alone; the other indexes of dlq_message stay;
the downgrade drops it; the stored letters survive both."""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect, text

from openprofiles.store.database import Database
from openprofiles.store.migrate import downgrade_to, upgrade_to

NOW = "2026-12-01 00:00:00"


def _fill(conn: Any) -> None:
    conn.execute(
        text(
            "INSERT INTO domain (name, key_id, wrapped_key, config, created_at, updated_at) "
            "VALUES ('d1', 'k', :w, '{}', :t, :t)"
        ),
        {"w": b"x", "t": NOW},
    )
    conn.execute(
        text(
            "INSERT INTO dlq_message (domain_name, message_id, object_type_name, sealed, "
            "reason_category, attempts, sink_error, created_at, last_attempt_at) "
            "VALUES ('d1', :m, 'Crm', :s, :c, 1, :e, :t, :t)"
        ),
        [
            {"m": "m1", "s": b"sealed", "c": "no_profile", "e": None, "t": NOW},
            {"m": "m2", "s": b"sealed", "c": "transient", "e": "the send to SQS failed", "t": NOW},
        ],
    )


def _state(conn: Any) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    """The indexes of dlq_message by name, and its letters (id, category)."""
    indexes = {i["name"]: list(i["column_names"]) for i in inspect(conn).get_indexes("dlq_message")}
    letters = conn.execute(
        text("SELECT message_id, reason_category FROM dlq_message ORDER BY message_id")
    ).all()
    return indexes, [tuple(row) for row in letters]


def test_0043_adds_the_count_index_and_drops_it_on_downgrade(settings) -> None:
    database = Database.from_settings(settings)
    try:
        upgrade_to(database, "0042")
        with database.engine.begin() as conn:
            _fill(conn)
            before = _state(conn)
        upgrade_to(database, "0043")
        with database.engine.connect() as conn:
            upgraded = _state(conn)
        downgrade_to(database, "0042")
        with database.engine.connect() as conn:
            downgraded = _state(conn)
    finally:
        database.dispose()
    letters = [("m1", "no_profile"), ("m2", "transient")]
    others = {
        "ix_dlq_message_created": ["domain_name", "created_at"],
        "ux_dlq_message_repeat": ["domain_name", "repeat_digest"],
    }
    assert before == (others, letters)
    assert upgraded == (
        {**others, "ix_dlq_message_category": ["domain_name", "reason_category", "sink_error"]},
        letters,
    )
    assert downgraded == before
