"""No personal value appears in clear anywhere in the stored data: not in the SQLite files
(database, WAL, shared memory) and not in any PostgreSQL table."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import inspect, text

from openprofiles.profiles import service as profiles
from openprofiles.store.database import Database


def _markers() -> dict[str, str]:
    tag = uuid.uuid4().hex[:8].upper()
    return {
        "FirstName": f"Zorblax{tag}",
        "LastName": f"Quimby{tag}",
        "EmailAddress": f"marker{tag}@example.org",
        "PhoneNumber": "+1 415 555 0199",
        "AccountNumber": f"ACCT{tag}",
        "AdditionalInformation": f"secret-note-{tag}",
    }


def _store_profiles(services, markers: dict[str, str]) -> None:
    from openprofiles.context import Principal, RequestContext
    from openprofiles.domains.handlers import create_domain

    ctx = RequestContext(services=services, principal=Principal("test", "admin"))
    # Matching enabled: the profile's match features (identity.ml_features) are stored too.
    create_domain(
        ctx, {"DomainName": "sealed", "DefaultExpirationDays": 5, "Matching": {"Enabled": True}}
    )
    with services.write() as tx:
        record = profiles.create_profile(
            tx,
            domain_name="sealed",
            fields={
                **markers,
                "Address": {"City": markers["LastName"] + "ville"},
                "Attributes": {"note": markers["AdditionalInformation"]},
            },
        )
        profiles.add_profile_key(
            tx,
            domain_name="sealed",
            profile_id=record.profile_id,
            key_name="crm",
            values=[markers["AccountNumber"] + "-crm"],
        )
        profiles.update_profile(
            tx,
            domain_name="sealed",
            profile_id=record.profile_id,
            changes={"MiddleName": markers["FirstName"] + "middle"},
        )


def _assert_features_stored(services) -> None:
    """The checks below cover the match features only if some were written."""
    from sqlalchemy import func, select

    from openprofiles.store.schema import ml_feature

    with services.read() as tx:
        assert tx.conn.execute(select(func.count()).select_from(ml_feature)).scalar_one() == 1


def _needles(markers: dict[str, str]) -> list[bytes]:
    values = [v for v in markers.values()]
    values += ["4155550199", "+14155550199", markers["EmailAddress"].lower()]
    return [v.encode() for v in values] + [v.lower().encode() for v in values]


def test_sqlite_files_hold_no_marker(sqlite_settings):
    from openprofiles.app import build_services

    services = build_services(sqlite_settings)
    markers = _markers()
    _store_profiles(services, markers)
    _assert_features_stored(services)
    # Read the database, WAL and shared-memory files raw while open, and again after the
    # last connection closed (which checkpoints the WAL into the database file).
    files = sqlite_settings.data_dir.glob("openprofiles.sqlite3*")
    blob = b"".join(f.read_bytes() for f in files)
    services.database.dispose()
    blob += b"".join(f.read_bytes() for f in sqlite_settings.data_dir.glob("openprofiles.sqlite3*"))
    # The test is only meaningful if the data really is in these files.
    assert b"sealed" in blob
    for needle in _needles(markers):
        assert needle not in blob, f"{needle!r} found in clear in the SQLite files"


@pytest.mark.postgres
def test_postgres_tables_hold_no_marker(tmp_path):
    from tests.support.backends import postgres_schema_url

    from openprofiles.app import build_services
    from openprofiles.settings import Settings

    with postgres_schema_url() as url:
        settings = Settings(data_dir=tmp_path / "data", database_url=url)
        services = build_services(settings)
        markers = _markers()
        _store_profiles(services, markers)
        _assert_features_stored(services)
        db: Database = services.database
        dump = []
        with db.engine.connect() as conn:
            for table in inspect(conn).get_table_names():
                for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                    dump.append(repr(tuple(row)).encode())
        services.database.dispose()
        blob = b"\n".join(dump)
        assert b"sealed" in blob
        for needle in _needles(markers):
            assert needle not in blob, f"{needle!r} found in clear in PostgreSQL"
