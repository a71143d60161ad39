"""Migration 0041 (both databases): integration.flow_item_changes, the count of the changes of a
flow's checkpoints (flows.check_cache). The integrations stored before it start at 0 and keep
everything else; a change bumps it; the downgrade drops the column and keeps the rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect, text

from openprofiles.store.database import Database
from openprofiles.store.migrate import downgrade_to, upgrade_to

NOW = "2026-12-01 00:00:00"


def _columns(conn: Any) -> set[str]:
    return {column["name"] for column in inspect(conn).get_columns("integration")}


def test_0041_counts_from_0_for_the_integrations_stored_and_drops_the_count_on_downgrade(
    settings,
) -> None:
    database = Database.from_settings(settings)
    try:
        upgrade_to(database, "0040")
        with database.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO domain (name, key_id, wrapped_key, config, created_at, "
                    "updated_at) VALUES ('d1', 'k', :w, '{}', :t, :t)"
                ),
                {"w": b"x", "t": NOW},
            )
            conn.execute(
                text(
                    "INSERT INTO integration (domain_name, uri, settings, flow_name, created_at, "
                    "updated_at) VALUES ('d1', 'u1', '{}', 'crm', :t, :t)"
                ),
                {"t": NOW},
            )
        upgrade_to(database, "0041")
        with database.engine.begin() as conn:
            upgraded = conn.execute(
                text("SELECT flow_name, flow_item_changes FROM integration")
            ).all()
            # A row put after the upgrade by SQL that does not name the column starts at 0 too.
            conn.execute(
                text(
                    "INSERT INTO integration (domain_name, uri, settings, created_at, "
                    "updated_at) VALUES ('d1', 'u2', '{}', :t, :t)"
                ),
                {"t": NOW},
            )
            conn.execute(
                text(
                    "UPDATE integration SET flow_item_changes = flow_item_changes + 1 "
                    "WHERE uri = 'u1'"
                )
            )
            counted = dict(
                conn.execute(text("SELECT uri, flow_item_changes FROM integration")).all()
            )
        downgrade_to(database, "0040")
        with database.engine.connect() as conn:
            columns = _columns(conn)
            kept = conn.execute(text("SELECT uri, flow_name FROM integration ORDER BY uri")).all()
    finally:
        database.dispose()
    assert [tuple(row) for row in upgraded] == [("crm", 0)]
    assert counted == {"u1": 1, "u2": 0}
    assert "flow_item_changes" not in columns
    assert [tuple(row) for row in kept] == [("u1", "crm"), ("u2", None)]
