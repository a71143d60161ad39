"""Migration 0047 (both databases): web_user.must_change_password. The users stored before it are
unmarked (they sign in as they did); the downgrade drops the column and keeps the users."""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect, text

from openprofiles.store.database import Database
from openprofiles.store.migrate import downgrade_to, upgrade_to

NOW = "2026-12-01 00:00:00"


def _columns(conn: Any) -> set[str]:
    return {column["name"] for column in inspect(conn).get_columns("web_user")}


def test_0047_leaves_the_users_stored_unmarked_and_the_downgrade_keeps_them(settings) -> None:
    database = Database.from_settings(settings)
    try:
        upgrade_to(database, "0046")
        with database.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO web_user (username_digest, username_sealed, password_hash, role, "
                    "created_at) VALUES (:d, :s, 'hash', 'admin', :t)"
                ),
                {"d": b"\x01" * 16, "s": b"sealed", "t": NOW},
            )
        upgrade_to(database, "0047")
        with database.engine.begin() as conn:
            stored = conn.execute(text("SELECT must_change_password FROM web_user")).scalar_one()
            conn.execute(text("UPDATE web_user SET must_change_password = :m"), {"m": True})
            marked = conn.execute(text("SELECT must_change_password FROM web_user")).scalar_one()
        downgrade_to(database, "0046")
        with database.engine.connect() as conn:
            columns = _columns(conn)
            kept = conn.execute(text("SELECT role FROM web_user")).scalars().all()
    finally:
        database.dispose()
    assert not stored and marked
    assert "must_change_password" not in columns
    assert kept == ["admin"]
