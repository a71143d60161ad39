"""Migration 0044 (both databases): web_user.domain_scope, the domains a web user (an agent) may
see on the agent pages (users.service). The users stored before it keep NULL (every domain, as
before) and everything else; a scope is stored and read back; the downgrade drops the column
and, first, deletes the scoped users and their sessions, which the code before it would take as
seeing every domain."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import inspect, select, text

from openprofiles.auth.scope import loaded_scope
from openprofiles.store.database import Database
from openprofiles.store.migrate import downgrade_to, upgrade_to
from openprofiles.store.schema import web_user

NOW = "2026-12-01 00:00:00"
LATER = "2026-12-01 12:00:00"


def _columns(conn: Any) -> set[str]:
    return {column["name"] for column in inspect(conn).get_columns("web_user")}


def _insert(conn: Any, digest: bytes, role: str = "agent") -> None:
    conn.execute(
        text(
            "INSERT INTO web_user (username_digest, username_sealed, password_hash, role, "
            "created_at) VALUES (:d, :s, 'hash', :r, :t)"
        ),
        {"d": digest, "s": b"sealed", "r": role, "t": NOW},
    )


def _session(conn: Any, session: bytes, digest: bytes) -> None:
    conn.execute(
        text(
            "INSERT INTO web_session (id_digest, username_digest, csrf_token, expires_at) "
            "VALUES (:i, :u, 'csrf', :e)"
        ),
        {"i": session, "u": digest, "e": LATER},
    )


BEFORE, AFTER, SCOPED = b"b" * 16, b"a" * 16, b"s" * 16


def test_0044_keeps_stored_users_unscoped_and_deletes_scoped_ones_on_downgrade(settings) -> None:
    database = Database.from_settings(settings)
    try:
        upgrade_to(database, "0043")
        with database.engine.begin() as conn:
            _insert(conn, BEFORE, "admin")
            _session(conn, b"1" * 32, BEFORE)
        upgrade_to(database, "0044")
        with database.engine.begin() as conn:
            _insert(conn, AFTER)  # SQL that does not name the column: unscoped too
            conn.execute(
                web_user.insert().values(
                    username_digest=SCOPED,
                    username_sealed=b"sealed",
                    password_hash="hash",
                    role="agent",
                    created_at=datetime(2026, 12, 1, tzinfo=UTC),
                    domain_scope=["care", "sales"],
                )
            )
            _session(conn, b"2" * 32, SCOPED)
            _session(conn, b"3" * 32, AFTER)
            upgraded = {
                bytes(row.username_digest): (row.role, row.password_hash, row.domain_scope)
                # The columns of 0044 (the declared table has later ones too).
                for row in conn.execute(
                    select(
                        web_user.c.username_digest,
                        web_user.c.role,
                        web_user.c.password_hash,
                        web_user.c.domain_scope,
                    )
                )
            }
        downgrade_to(database, "0043")
        with database.engine.connect() as conn:
            columns = _columns(conn)
            kept = conn.execute(
                text("SELECT username_digest FROM web_user ORDER BY username_digest")
            ).all()
            sessions = conn.execute(
                text("SELECT username_digest FROM web_session ORDER BY username_digest")
            ).all()
    finally:
        database.dispose()
    assert {digest: loaded_scope(scope) for digest, (_, _, scope) in upgraded.items()} == {
        BEFORE: None,
        AFTER: None,
        SCOPED: frozenset({"care", "sales"}),
    }
    assert upgraded[BEFORE][:2] == ("admin", "hash")
    assert "domain_scope" not in columns
    assert [bytes(row[0]) for row in kept] == [AFTER, BEFORE]
    assert [bytes(row[0]) for row in sessions] == [AFTER, BEFORE]
