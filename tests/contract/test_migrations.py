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


def test_0017_keeps_every_key_row_renames_the_markers_and_lets_sources_share_a_value(settings):
    """Rows written before 0017 stay, the origin markers gain their "@", and afterwards a
    value can have a row per source (the primary key includes the origin)."""
    from sqlalchemy import text

    from openprofiles.store.migrate import upgrade_to

    database = Database.from_settings(settings)
    insert_key = text(
        "INSERT INTO profile_key (domain_name, key_name, digest, profile_id, origin, "
        "value_sealed) VALUES ('d1', :k, :g, 'p1', :o, :v)"
    )
    try:
        upgrade_to(database, "0016")
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
                    "INSERT INTO profile (domain_name, profile_id, sealed, version, created_at, "
                    "updated_at) VALUES ('d1', 'p1', :s, 1, :t, :t)"
                ),
                {"s": b"s", "t": "2026-11-29 00:00:00"},
            )
            conn.execute(
                insert_key,
                [
                    {"k": "_email", "g": b"\x01" * 16, "o": "profile", "v": b"v1"},
                    {"k": "_phone", "g": b"\x02" * 16, "o": "explicit", "v": b"v2"},
                    {"k": "_profileId", "g": b"\x03" * 16, "o": "merge", "v": b"v3"},
                    {"k": "custId", "g": b"\x04" * 16, "o": "Accounts", "v": b"v4"},
                ],
            )
        upgrade_to_head(database)
        with database.engine.begin() as conn:
            # Another source backing the same value: a row of its own.
            conn.execute(insert_key, {"k": "custId", "g": b"\x04" * 16, "o": "Tickets", "v": b"v"})
            rows = conn.execute(
                text("SELECT key_name, origin, value_sealed FROM profile_key ORDER BY 1, 2")
            ).all()
    finally:
        database.dispose()
    assert [(k, o, bytes(v)) for k, o, v in rows] == [
        ("_email", "@profile", b"v1"),
        ("_phone", "@explicit", b"v2"),
        ("_profileId", "@merge", b"v3"),
        ("custId", "Accounts", b"v4"),
        ("custId", "Tickets", b"v"),
    ]
