"""Migration 0034 (both databases): ix_profile_object_profile and ix_profile_object_usage become
one index, ix_profile_object_profile (domain, profile, type, updated_at, write_order,
expires_at, size); the downgrade brings the two back; the stored objects and their key rows
survive both."""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect, text

from openprofiles.store.database import Database
from openprofiles.store.migrate import downgrade_to, upgrade_to, upgrade_to_head

NOW = "2026-11-30 00:00:00"


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
                "profile_id, sealed, size, created_at, updated_at, write_order) "
                "VALUES ('d1', 'Crm', :u, 'p1', :s, 10, :t, :t, :o)"
            ),
            {"u": digest, "s": b"object", "t": NOW, "o": n + 1},
        )
        conn.execute(
            text(
                "INSERT INTO profile_object_key (domain_name, object_type_name, unique_digest, "
                "key_name, digest) VALUES ('d1', 'Crm', :u, 'crmId', :d)"
            ),
            {"u": digest, "d": bytes([n + 10]) * 16},
        )


def _state(conn: Any) -> tuple[dict[str, list[str]], int, int]:
    """The (domain, profile) indexes of profile_object by name, and the rows of both tables."""
    indexes = {
        i["name"]: list(i["column_names"])
        for i in inspect(conn).get_indexes("profile_object")
        if i["column_names"][:2] == ["domain_name", "profile_id"]
    }
    objects = conn.execute(text("SELECT count(*) FROM profile_object")).scalar_one()
    keys = conn.execute(text("SELECT count(*) FROM profile_object_key")).scalar_one()
    return indexes, objects, keys


def test_0034_makes_one_index_of_two_and_back(settings) -> None:
    database = Database.from_settings(settings)
    try:
        upgrade_to(database, "0033")
        with database.engine.begin() as conn:
            _fill(conn)
        upgrade_to_head(database)
        with database.engine.connect() as conn:
            upgraded = _state(conn)
        downgrade_to(database, "0033")
        with database.engine.connect() as conn:
            downgraded = _state(conn)
    finally:
        database.dispose()
    merged = ["updated_at", "write_order", "expires_at", "size"]
    assert upgraded == (
        {"ix_profile_object_profile": ["domain_name", "profile_id", "object_type_name", *merged]},
        3,
        3,
    )
    assert downgraded == (
        {
            "ix_profile_object_profile": [
                "domain_name",
                "profile_id",
                "object_type_name",
                "updated_at",
            ],
            "ix_profile_object_usage": ["domain_name", "profile_id", "expires_at", "size"],
        },
        3,
        3,
    )
