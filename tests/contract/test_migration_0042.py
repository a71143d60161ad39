"""Migration 0042 (both databases): credential.domain_scope, the domains an API credential may
act on (auth.scope). The credentials stored before it keep NULL (every domain, as before) and
everything else; a scope is stored and read back; the downgrade drops the column and, first,
revokes the scoped credentials, which the code before it would take as reaching every domain."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import inspect, select, text

from openprofiles.auth.scope import loaded_scope
from openprofiles.store.database import Database
from openprofiles.store.migrate import downgrade_to, upgrade_to
from openprofiles.store.schema import credential

NOW = "2026-12-01 00:00:00"


def _columns(conn: Any) -> set[str]:
    return {column["name"] for column in inspect(conn).get_columns("credential")}


def _insert(conn: Any, key: str) -> None:
    conn.execute(
        text(
            "INSERT INTO credential (access_key_id, secret_sealed, role, created_at) "
            "VALUES (:k, :s, 'agent', :t)"
        ),
        {"k": key, "s": b"sealed", "t": NOW},
    )


def test_0042_keeps_stored_keys_unscoped_and_revokes_scoped_ones_on_downgrade(settings) -> None:
    database = Database.from_settings(settings)
    try:
        upgrade_to(database, "0041")
        with database.engine.begin() as conn:
            _insert(conn, "OPBEFORE")
        upgrade_to(database, "0042")
        with database.engine.begin() as conn:
            _insert(conn, "OPAFTER")  # SQL that does not name the column: unscoped too
            conn.execute(
                credential.insert().values(
                    access_key_id="OPSCOPED",
                    secret_sealed=b"sealed",
                    role="agent",
                    created_at=datetime(2026, 12, 1, tzinfo=UTC),
                    domain_scope=["care", "sales"],
                )
            )
            upgraded = {
                row.access_key_id: (row.role, bytes(row.secret_sealed), row.domain_scope)
                for row in conn.execute(select(credential))
            }
        downgrade_to(database, "0041")
        with database.engine.connect() as conn:
            columns = _columns(conn)
            kept = conn.execute(
                text("SELECT access_key_id FROM credential ORDER BY access_key_id")
            ).all()
    finally:
        database.dispose()
    assert {key: loaded_scope(scope) for key, (_, _, scope) in upgraded.items()} == {
        "OPBEFORE": None,
        "OPAFTER": None,
        "OPSCOPED": frozenset({"care", "sales"}),
    }
    assert upgraded["OPBEFORE"][:2] == ("agent", b"sealed")
    assert "domain_scope" not in columns
    assert [row[0] for row in kept] == ["OPAFTER", "OPBEFORE"]
