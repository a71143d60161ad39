"""The Alembic migrations build exactly the schema the code declares, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from openprofiles.store.database import Database
from openprofiles.store.migrate import upgrade_to_head
from openprofiles.store.schema import metadata


def test_migrations_match_the_declared_schema(settings):
    database = Database.from_settings(settings)
    try:
        upgrade_to_head(database)
        upgrade_to_head(database)  # a second run is a no-op
        with database.engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        database.dispose()
    assert differences == [], "store/schema and the migrations disagree: add a migration"


def test_0015_0016_keep_rule_digests_and_pack_them_per_profile(settings):
    """Digests stored before 0015 are found per profile afterwards (the by-profile index they
    were found through is dropped)."""
    from sqlalchemy import inspect, text

    from openprofiles.identity.rule_store import unpack
    from openprofiles.store.migrate import upgrade_to

    database = Database.from_settings(settings)
    digests = {
        "p1": [(1, b"\x01" * 16), (1, b"\x02" * 16), (3, b"\x03" * 16)],
        "p2": [(2, b"\x04" * 16)],
    }
    try:
        upgrade_to(database, "0014")
        with database.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO domain (name, key_id, wrapped_key, config, created_at, "
                    "updated_at) VALUES ('d1', 'k', :w, '{}', :t, :t)"
                ),
                {"w": b"x", "t": "2026-11-29 00:00:00"},
            )
            conn.execute(
                text(
                    "INSERT INTO rule_match_digest (domain_name, level, digest, profile_id) "
                    "VALUES ('d1', :level, :digest, :pid)"
                ),
                [
                    {"level": level, "digest": digest, "pid": pid}
                    for pid, pairs in digests.items()
                    for level, digest in reversed(pairs)
                ],
            )
        upgrade_to_head(database)
        with database.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT profile_id, digests FROM rule_match_profile WHERE domain_name='d1'")
            ).all()
            indexes = {i["name"] for i in inspect(conn).get_indexes("rule_match_digest")}
            kept = conn.execute(text("SELECT count(*) FROM rule_match_digest")).scalar_one()
            if database.engine.dialect.name == "sqlite":  # 0016: clustered by their keys
                for table in ("rule_match_digest", "rule_match_profile"):
                    sql = conn.execute(
                        text("SELECT sql FROM sqlite_master WHERE name = :t"), {"t": table}
                    ).scalar_one()
                    assert "WITHOUT ROWID" in sql
    finally:
        database.dispose()
    assert {pid: unpack(bytes(packed)) for pid, packed in rows} == digests
    assert "ix_rule_match_digest_profile" not in indexes
    assert kept == 4
