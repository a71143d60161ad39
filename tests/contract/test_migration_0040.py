"""Migration 0040 (both databases): flow_item.version becomes text, so a failed item's checkpoint
names every record set aside (flows.checkpoints); the checkpoints stored survive the upgrade,
and the downgrade shortens those longer than 255 characters as the code before 0040 wrote them —
a failed one naming the records set aside that fit, every record from the first one left unnamed
applied again rather than one set aside never; any other deleted, its item read from its
start."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from openprofiles.flows.checkpoints import Unapplied, failed_plan
from openprofiles.store.database import Database
from openprofiles.store.migrate import downgrade_to, upgrade_to

NOW = "2026-12-01 00:00:00"
VERSION = "1764550000000000000-4096"
# Every odd position of the first 400 set aside: about 1,200 characters.
ASIDE = frozenset(range(1, 400, 2))
LONG_FAILED = Unapplied(500, ASIDE).failed_checkpoint(VERSION)
SHORT = f"partial:12:{VERSION}"


def _item(conn: Any, digest: int, version: str) -> None:
    conn.execute(
        text(
            "INSERT INTO flow_item (domain_name, flow_name, item_digest, version, processed_at) "
            "VALUES ('d1', 'crm', :d, :v, :t)"
        ),
        {"d": bytes([digest]) * 16, "v": version, "t": NOW},
    )


def _versions(conn: Any) -> dict[int, str]:
    rows = conn.execute(text("SELECT item_digest, version FROM flow_item")).all()
    return {bytes(r.item_digest)[0]: r.version for r in rows}


def test_0040_stores_a_checkpoint_of_any_length_and_shortens_it_on_downgrade(settings) -> None:
    assert len(LONG_FAILED) > 255
    database = Database.from_settings(settings)
    try:
        upgrade_to(database, "0039")
        with database.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO domain (name, key_id, wrapped_key, config, created_at, "
                    "updated_at) VALUES ('d1', 'k', :w, '{}', :t, :t)"
                ),
                {"w": b"x", "t": NOW},
            )
            _item(conn, 1, SHORT)
        upgrade_to(database, "0040")
        with database.engine.begin() as conn:
            _item(conn, 2, LONG_FAILED)
            _item(conn, 3, "partial:7:" + "v" * 300)
            upgraded = _versions(conn)
        downgrade_to(database, "0039")
        with database.engine.connect() as conn:
            downgraded = _versions(conn)
    finally:
        database.dispose()
    assert upgraded == {1: SHORT, 2: LONG_FAILED, 3: "partial:7:" + "v" * 300}
    assert set(downgraded) == {1, 2}
    assert downgraded[1] == SHORT
    assert len(downgraded[2]) <= 255
    shortened = failed_plan(downgraded[2], VERSION)
    assert shortened is not None
    # Every record set aside is still to be applied; some applied ones are applied again.
    assert all(shortened.wants(p) for p in ASIDE) and all(shortened.wants(p) for p in (501, 900))
    assert not shortened.wants(2)
