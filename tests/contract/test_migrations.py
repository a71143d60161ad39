"""The Alembic migrations build exactly the schema the code declares, on both databases."""

from __future__ import annotations

from dataclasses import replace

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


_FLOW_EMAIL = "dana.whitfield@example.org"


def _pre_0018_flow(settings, folder):
    """A database at 0017 holding a flow's data as it was stored then (in clear), and the
    keys it was stored under."""
    import json

    from sqlalchemy import text

    from openprofiles.crypto.domain_keys import KeyManager
    from openprofiles.crypto.keyring import Keyring
    from openprofiles.crypto.providers import ProviderResolver
    from openprofiles.store.migrate import upgrade_to

    keys = KeyManager(ProviderResolver(settings, Keyring(settings.keyring_path)))
    wrapped = keys.new_domain_key("d1")
    item = folder / f"{_FLOW_EMAIL}.jsonl"
    item.write_text("{}\n")
    version = f"{item.stat().st_mtime_ns}-{item.stat().st_size}"
    definition = {
        "FlowName": "crm",
        "SourceFlowConfig": {
            "ConnectorType": "S3",
            "SourceConnectorProperties": {
                "S3": {"BucketName": "file://", "BucketPrefix": str(folder)}
            },
        },
        "Tasks": [
            {
                "TaskType": "Filter",
                "SourceFields": ["email"],
                "ConnectorOperator": {"S3": "EQUAL_TO"},
                "TaskProperties": {"VALUE": _FLOW_EMAIL},
            }
        ],
        "TriggerConfig": {"TriggerType": "OnDemand"},
    }
    error = f"Cannot read the file {item}: Permission denied"
    database = Database.from_settings(settings)
    stamp = {"t": "2026-11-29 00:00:00"}
    upgrade_to(database, "0017")
    with database.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO domain (name, key_id, wrapped_key, config, created_at, updated_at) "
                "VALUES ('d1', :k, :w, '{}', :t, :t)"
            ),
            {"k": wrapped.key_id, "w": wrapped.wrapped, **stamp},
        )
        conn.execute(
            text(
                "INSERT INTO integration (domain_name, uri, object_type_name, settings, "
                "flow_name, created_at, updated_at) VALUES ('d1', 'arn:flow/crm', "
                "'Zendesk-users', :s, 'crm', :t, :t)"
            ),
            {"s": json.dumps({"RoleArn": "arn:role", "FlowDefinition": definition}), **stamp},
        )
        conn.execute(
            text(
                "INSERT INTO flow_run (domain_name, run_id, flow_name, trigger, status, "
                "items_read, records_read, records_ingested, records_filtered, "
                "records_dead_lettered, error, started_at, finished_at) VALUES ('d1', :r, "
                "'crm', 'OnDemand', :status, 1, 0, 0, 0, 0, :e, :t, :t)"
            ),
            [
                {"r": "r1", "status": "FAILED", "e": error, **stamp},
                {"r": "r2", "status": "COMPLETED", "e": None, **stamp},
            ],
        )
        conn.execute(
            text(
                "INSERT INTO flow_item (domain_name, flow_name, item_key, version, processed_at) "
                "VALUES ('d1', 'crm', :k, :v, :t)"
            ),
            {"k": item.name, "v": version, **stamp},
        )
    return database, keys, definition, error


def _stored_text(database) -> bytes:
    """Every stored byte: the SQLite files (once the last connection closed), or a dump of
    every PostgreSQL table."""
    from sqlalchemy import inspect, text

    if database.engine.dialect.name == "sqlite":
        path = database.engine.url.database
        database.dispose()
        from pathlib import Path

        return b"".join(p.read_bytes() for p in Path(path).parent.glob(Path(path).name + "*"))
    with database.engine.connect() as conn:
        return b"\n".join(
            repr(tuple(row)).encode()
            for table in inspect(conn).get_table_names()
            for row in conn.execute(text(f'SELECT * FROM "{table}"'))
        )


def test_0018_seals_flow_definitions_and_run_errors_and_digests_item_keys(settings, tmp_path):
    """A flow's definition, run errors and checkpoints stored in clear before 0018 are sealed
    (or digested) by it, and read as before: the flow, its runs and which items it read."""
    from openprofiles.app import build_services
    from openprofiles.flows.models import parse_flow_definition
    from openprofiles.flows.runs import get_run
    from openprofiles.flows.sources import FolderSource
    from openprofiles.flows.triggers import pending_items
    from openprofiles.integrations.service import find_flow_integration
    from openprofiles.store.migrate import upgrade_to_head

    settings = replace(settings, flow_folder_roots=(tmp_path,))
    folder = tmp_path / "export"
    folder.mkdir()
    database, keys, definition, error = _pre_0018_flow(settings, folder)
    upgrade_to_head(database, keys)
    stored = _stored_text(database)
    database.dispose()
    for clear in (_FLOW_EMAIL, "Permission denied"):
        assert clear.encode() not in stored, f"{clear!r} still stored in clear"

    services = build_services(settings)
    try:
        with services.read() as tx:
            found = find_flow_integration(tx, domain_name="d1", flow_name="crm")
            failed = get_run(tx, domain_name="d1", run_id="r1")
            completed = get_run(tx, domain_name="d1", run_id="r2")
        assert found is not None and found.flow_definition == definition
        assert found.settings["RoleArn"] == "arn:role"
        assert (failed.error, completed.error) == (error, None)
        source = FolderSource(settings, str(folder))
        flow = parse_flow_definition(definition)
        # The item read before is still known as read; a new one is not.
        assert pending_items(services, "d1", flow, source) == []
        (folder / "new.jsonl").write_text("{}\n")
        assert [i.key for i in pending_items(services, "d1", flow, source)] == ["new.jsonl"]
    finally:
        services.database.dispose()


def test_0018_downgrade_opens_what_it_sealed(settings, tmp_path):
    from sqlalchemy import text

    from openprofiles.store.migrate import downgrade_to, upgrade_to_head

    settings = replace(settings, flow_folder_roots=(tmp_path,))
    database, keys, definition, error = _pre_0018_flow(settings, tmp_path)
    try:
        upgrade_to_head(database, keys)
        downgrade_to(database, "0017", keys)
        with database.engine.connect() as conn:
            stored = conn.execute(text("SELECT settings FROM integration")).scalar_one()
            errors = conn.execute(text("SELECT error FROM flow_run ORDER BY run_id")).scalars()
            assert list(errors) == [error, None]
            # A digest cannot give its key back: the checkpoints go, the items are read again.
            assert conn.execute(text("SELECT count(*) FROM flow_item")).scalar_one() == 0
    finally:
        database.dispose()
    if isinstance(stored, str):
        import json

        stored = json.loads(stored)
    assert stored == {"RoleArn": "arn:role", "FlowDefinition": definition}


def test_0018_with_a_disabled_key_stops_naming_the_domain_and_changes_nothing(settings, tmp_path):
    import pytest
    from sqlalchemy import text

    from openprofiles.crypto.errors import KeyUnusable
    from openprofiles.crypto.keyring import Keyring
    from openprofiles.store.migrate import upgrade_to_head

    settings = replace(settings, flow_folder_roots=(tmp_path,))
    database, keys, _, _ = _pre_0018_flow(settings, tmp_path)
    keyring = Keyring(settings.keyring_path)
    keyring.disable(keyring.default_key().key_id)
    keys.forget("d1")
    try:
        with pytest.raises(KeyUnusable, match="domain d1") as raised:
            upgrade_to_head(database, keys)
        assert "disabled" in raised.value.message
        with database.engine.connect() as conn:
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
            assert revision == "0017"
        keyring.enable(keyring.default_key().key_id)
        upgrade_to_head(database, keys)
    finally:
        database.dispose()


_STAFF_EMAIL = "priya.raman@example.org"
_STAFF_TOKEN = "a-session-cookie-value"
# Why dead letters' sends failed, as stored before 0020: a queue's refusal quoting a value, a
# note of an object sent without, and the fixed marks (which stay as they are).
_REFUSAL = "SQS refused the message: Value omar.k@example.org for Message is invalid"
_SINK_ERRORS = {
    "m1": _REFUSAL,
    "m2": "sent to SQS with a note in place of its object: the queue refused (omar.k@example.org)",
    "m3": "the domain had no dead-letter queue when the record was dead-lettered",
    "m4": None,
}


def _pre_0020_users(settings, sink_errors=_SINK_ERRORS):
    """A database at 0019 holding two web users (one named by an e-mail address) and a session
    of that one, as they were stored then (names in clear), and dead letters with their sink
    errors in clear (`sink_errors`: message id -> error); and the key manager."""
    import hashlib

    from argon2 import PasswordHasher
    from sqlalchemy import text

    from openprofiles.crypto.domain_keys import KeyManager
    from openprofiles.crypto.keyring import Keyring
    from openprofiles.crypto.providers import ProviderResolver
    from openprofiles.store.migrate import upgrade_to

    keys = KeyManager(ProviderResolver(settings, Keyring(settings.keyring_path)))
    wrapped = keys.new_domain_key("d1")
    cipher = keys.cipher_for("d1", wrapped.key_id, wrapped.wrapped)
    database = Database.from_settings(settings)
    upgrade_to(database, "0019")
    stamp = "2026-11-29 00:00:00"
    with database.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO domain (name, key_id, wrapped_key, config, created_at, updated_at) "
                "VALUES ('d1', :k, :w, '{}', :t, :t)"
            ),
            {"k": wrapped.key_id, "w": wrapped.wrapped, "t": stamp},
        )
        conn.execute(
            text(
                "INSERT INTO dlq_message (domain_name, message_id, object_type_name, sealed, "
                "reason_category, attempts, sink_error, created_at, last_attempt_at) VALUES "
                "('d1', :m, 'Crm', :s, 'no_profile', 1, :e, :t, :t)"
            ),
            [
                {
                    "m": m,
                    "s": cipher.seal_record("dlq_message", m, {"object": "{}", "reason": "r"}),
                    "e": error,
                    "t": stamp,
                }
                for m, error in sink_errors.items()
            ],
        )
        conn.execute(
            text(
                "INSERT INTO web_user (username, password_hash, role, created_at) "
                "VALUES (:u, :h, :r, '2026-11-29 00:00:00')"
            ),
            [
                {"u": _STAFF_EMAIL, "h": PasswordHasher().hash("correct horse"), "r": "admin"},
                {"u": "bob", "h": PasswordHasher().hash("battery staple"), "r": "agent"},
            ],
        )
        conn.execute(
            text(
                "INSERT INTO web_session (id_digest, username, csrf_token, expires_at) "
                "VALUES (:d, :u, 'csrf', '2099-01-01 00:00:00')"
            ),
            {"d": hashlib.sha256(_STAFF_TOKEN.encode()).digest(), "u": _STAFF_EMAIL},
        )
    return database, keys


def test_0020_seals_usernames_and_users_still_sign_in_and_are_listed(settings):
    """Names stored in clear before 0020 are stored only sealed and digested after it; the users
    sign in with them, are listed by them, and a session signed in before stays signed in.
    Dead letters' sink errors are sealed but for their fixed marks, and read whole."""
    from sqlalchemy import text

    from openprofiles.app import build_services
    from openprofiles.dlq import service as dlq
    from openprofiles.store.migrate import upgrade_to_head
    from openprofiles.users import service as users

    database, keys = _pre_0020_users(settings)
    upgrade_to_head(database, keys)
    with database.engine.connect() as conn:
        marks = dict(conn.execute(text("SELECT message_id, sink_error FROM dlq_message")).all())
    stored = _stored_text(database)
    database.dispose()
    for clear in (_STAFF_EMAIL, "omar.k"):
        assert clear.encode() not in stored, f"{clear!r} still stored in clear"
    assert marks == {
        "m1": dlq.SQS_FAILED,
        "m2": dlq.SENT_WITHOUT_OBJECT,
        "m3": dlq.NO_QUEUE,
        "m4": None,
    }

    services = build_services(settings)
    try:
        with services.write() as tx:
            assert [(u.username, u.role) for u in users.list_users(tx)] == [
                ("bob", "agent"),
                (_STAFF_EMAIL, "admin"),
            ]
            signed_in = users.verify_password(tx, username=_STAFF_EMAIL, password="correct horse")
            assert signed_in is not None and signed_in.username == _STAFF_EMAIL
            assert users.verify_password(tx, username="bob", password="correct horse") is None
            session = users.get_session(tx, token=_STAFF_TOKEN)
            assert session is not None and (session.username, session.role) == (
                _STAFF_EMAIL,
                "admin",
            )
            assert users.create_session(tx, username="bob").session.username == "bob"
            letters = dlq.list_messages(tx, domain_name="d1")
        assert {x.message_id: x.sink_error for x in letters} == _SINK_ERRORS
    finally:
        services.database.dispose()


def test_0020_downgrade_opens_the_names(settings):
    import hashlib

    from sqlalchemy import text

    from openprofiles.store.migrate import downgrade_to, upgrade_to_head

    database, keys = _pre_0020_users(settings)
    try:
        upgrade_to_head(database, keys)
        downgrade_to(database, "0019", keys)
        with database.engine.connect() as conn:
            names = conn.execute(text("SELECT username, role FROM web_user ORDER BY 1")).all()
            session = conn.execute(text("SELECT id_digest, username FROM web_session")).one()
            errors = dict(
                conn.execute(text("SELECT message_id, sink_error FROM dlq_message")).all()
            )
    finally:
        database.dispose()
    assert [tuple(r) for r in names] == [("bob", "agent"), (_STAFF_EMAIL, "admin")]
    assert (bytes(session.id_digest), session.username) == (
        hashlib.sha256(_STAFF_TOKEN.encode()).digest(),
        _STAFF_EMAIL,
    )
    assert errors == _SINK_ERRORS


def test_0020_converts_dead_letters_beyond_one_batch_both_ways(settings):
    """The sink errors are read a batch at a time, in key order: every one is sealed, and
    opened again by the downgrade, however many batches they take."""
    from sqlalchemy import text

    from openprofiles.dlq import service as dlq
    from openprofiles.store.migrate import downgrade_to, upgrade_to_head

    many = {
        **_SINK_ERRORS,
        **{f"n{i:05d}": f"{_REFUSAL} ({i})" for i in range(1234)},
        **{f"s{i:05d}": f"{dlq.SENT_WITHOUT_OBJECT}refused ({i})" for i in range(600)},
    }
    query = text("SELECT message_id, sink_error FROM dlq_message")
    database, keys = _pre_0020_users(settings, many)
    try:
        upgrade_to_head(database, keys)
        with database.engine.connect() as conn:
            sealed = dict(conn.execute(query).all())
        downgrade_to(database, "0019", keys)
        with database.engine.connect() as conn:
            opened = dict(conn.execute(query).all())
    finally:
        database.dispose()
    assert sum(v == dlq.SQS_FAILED for v in sealed.values()) == 1235
    assert sum(v == dlq.SENT_WITHOUT_OBJECT for v in sealed.values()) == 601
    assert opened == many


def test_0020_with_a_disabled_default_key_stops_and_changes_nothing(settings):
    import pytest
    from sqlalchemy import text

    from openprofiles.crypto.errors import KeyUnusable
    from openprofiles.crypto.keyring import Keyring
    from openprofiles.store.migrate import upgrade_to_head

    database, keys = _pre_0020_users(settings)
    keyring = Keyring(settings.keyring_path)
    keyring.disable(keyring.default_key().key_id)
    try:
        with pytest.raises(KeyUnusable, match="web users' names") as raised:
            upgrade_to_head(database, keys)
        assert "disabled" in raised.value.message
        with database.engine.connect() as conn:
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
            name = conn.execute(text("SELECT username FROM web_session")).scalar_one()
        assert (revision, name) == ("0019", _STAFF_EMAIL)
    finally:
        database.dispose()
