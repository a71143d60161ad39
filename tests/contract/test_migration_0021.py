"""Migration 0021 on both databases: the contact-record deliveries that earlier deletions left
naming a profile that no longer exists are deleted; those of live profiles, and those naming no
profile, stay."""

from __future__ import annotations

from sqlalchemy import text

from openprofiles.store.database import Database
from openprofiles.store.migrate import upgrade_to, upgrade_to_head


def test_0021_deletes_the_deliveries_of_profiles_deleted_before_it(settings):
    database = Database.from_settings(settings)
    now = {"t": "2026-11-29 00:00:00"}
    try:
        upgrade_to(database, "0020")
        with database.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO domain (name, key_id, wrapped_key, config, created_at, "
                    "updated_at) VALUES ('d1', 'k', :w, '{}', :t, :t)"
                ),
                {"w": b"x", **now},
            )
            conn.execute(
                text(
                    "INSERT INTO profile (domain_name, profile_id, sealed, version, created_at, "
                    "updated_at) VALUES ('d1', 'live', :s, 1, :t, :t)"
                ),
                {"s": b"x", **now},
            )
            conn.execute(
                text(
                    "INSERT INTO contact_record (domain_name, contact_digest, partial, "
                    "object_type_name, profile_id, received_at) "
                    "VALUES ('d1', :g, false, 'CTR', :p, :t)"
                ),
                [
                    {"g": bytes([n]) * 16, "p": pid, **now}
                    for n, pid in enumerate(("live", "deleted", None))
                ],
            )
        upgrade_to_head(database)
        with database.engine.connect() as conn:
            left = conn.execute(text("SELECT profile_id FROM contact_record")).scalars().all()
    finally:
        database.dispose()
    assert sorted(left, key=str) == sorted(["live", None], key=str)
