"""Migration 0030 (both databases): profile_object gains write_order (0 for the rows stored
before, whose ties stay broken by digest) and ix_profile_object_usage is keyed by profile; the
stored objects and their key rows survive the upgrade and the downgrade (a table rebuild on
SQLite would delete the key rows through their ON DELETE CASCADE)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect, text

from openprofiles.store.database import Database
from openprofiles.store.migrate import downgrade_to, upgrade_to

NOW = "2026-11-29 00:00:00"


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
            "INSERT INTO profile (domain_name, profile_id, sealed, version, created_at, "
            "updated_at) VALUES ('d1', 'p1', :s, 1, :t, :t)"
        ),
        {"s": b"sealed", "t": NOW},
    )
    for n in range(3):
        digest = bytes([n]) * 16
        conn.execute(
            text(
                "INSERT INTO profile_object (domain_name, object_type_name, unique_digest, "
                "profile_id, sealed, size, created_at, updated_at) "
                "VALUES ('d1', 'Crm', :u, 'p1', :s, 10, :t, :t)"
            ),
            {"u": digest, "s": b"object", "t": NOW},
        )
        conn.execute(
            text(
                "INSERT INTO profile_object_key (domain_name, object_type_name, unique_digest, "
                "key_name, digest) VALUES ('d1', 'Crm', :u, 'crmId', :d)"
            ),
            {"u": digest, "d": bytes([n + 10]) * 16},
        )


def _usage_columns(conn: Any) -> list[str]:
    [usage] = [
        i
        for i in inspect(conn).get_indexes("profile_object")
        if i["name"] == "ix_profile_object_usage"
    ]
    return list(usage["column_names"])


def test_0030_numbers_no_stored_object_and_keeps_them_all(settings) -> None:
    database = Database.from_settings(settings)
    try:
        upgrade_to(database, "0029")
        with database.engine.begin() as conn:
            _fill(conn)
        # Not to head: 0034 merges this index into ix_profile_object_profile.
        upgrade_to(database, "0030")
        with database.engine.connect() as conn:
            orders = conn.execute(text("SELECT write_order FROM profile_object")).scalars().all()
            keys = conn.execute(text("SELECT count(*) FROM profile_object_key")).scalar_one()
            upgraded = _usage_columns(conn)
        downgrade_to(database, "0029")
        with database.engine.connect() as conn:
            objects = conn.execute(text("SELECT count(*) FROM profile_object")).scalar_one()
            keys_after = conn.execute(text("SELECT count(*) FROM profile_object_key")).scalar_one()
            columns = {c["name"] for c in inspect(conn).get_columns("profile_object")}
            downgraded = _usage_columns(conn)
    finally:
        database.dispose()
    assert orders == [0, 0, 0]
    assert keys == 3
    assert upgraded == ["domain_name", "profile_id", "expires_at", "size"]
    assert (objects, keys_after) == (3, 3)
    assert "write_order" not in columns
    assert downgraded == ["domain_name", "expires_at", "size"]
