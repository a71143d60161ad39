"""Erased data does not stay in the SQLite files: after DeleteProfile and DeleteDomain have
committed (the erasing code asks for it: `Tx.erased`, `Database.request_truncate`), neither
the deleted profile's sealed blob nor the domain's wrapped data key is in the database file or
in its write-ahead log. Before, the log was only ever restarted, not emptied: its old frames — the
page images written when the profile and the domain were created — stayed in the -wal file, and
with the keyring beside the database they could be opened."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from openprofiles.app import build_services
from openprofiles.context import Principal, RequestContext
from openprofiles.domains import handlers as domains
from openprofiles.profiles import handlers as profiles
from openprofiles.settings import Settings
from openprofiles.store.schema import domain, profile


def _files(settings: Settings) -> dict[str, bytes]:
    path = settings.sqlite_path
    wal = Path(f"{path}-wal")
    return {
        "database": path.read_bytes(),
        "wal": wal.read_bytes() if wal.exists() else b"",
    }


def test_deleted_profile_and_domain_key_leave_neither_file(sqlite_settings: Settings) -> None:
    services = build_services(sqlite_settings)
    try:
        database = services.database
        checkpointer = database.checkpointer
        assert checkpointer is not None
        ctx = RequestContext(services=services, principal=Principal("test", "admin"))
        domains.create_domain(ctx, {"DomainName": "erased", "DefaultExpirationDays": 5})
        created = profiles.create_profile(
            ctx,
            {
                "DomainName": "erased",
                "FirstName": "Zorblax",
                "EmailAddress": "zorblax@example.org",
                "AdditionalInformation": "to be forgotten " * 20,
            },
        )
        with database.read() as conn:
            sealed = conn.execute(select(profile.c.sealed)).scalar_one()
            wrapped_key = conn.execute(
                select(domain.c.wrapped_key).where(domain.c.name == "erased")
            ).scalar_one()
        # Checkpointed into the database file, and still in the log's frames too: the test is
        # only meaningful if both files held them.
        assert checkpointer.wait_for(
            lambda: (
                wrapped_key in _files(sqlite_settings)["database"]
                and sealed in _files(sqlite_settings)["database"]
            ),
            timeout=30,
        )
        before = _files(sqlite_settings)
        for secret in (sealed, wrapped_key):
            assert secret in before["database"] and secret in before["wal"]

        # The deletes ask for the log to be emptied themselves (Tx.erased).
        profiles.delete_profile(ctx, {"DomainName": "erased", "ProfileId": created["ProfileId"]})
        domains.delete_domain(ctx, {"DomainName": "erased"})

        def gone() -> bool:
            files = _files(sqlite_settings)
            return files["wal"] == b"" and not any(
                secret in content for secret in (sealed, wrapped_key) for content in files.values()
            )

        assert checkpointer.wait_for(gone, timeout=30)

        # While the server still runs (its connections open): nothing left in either file.
        after = _files(sqlite_settings)
        assert after["wal"] == b""
        for name, secret in (("sealed profile", sealed), ("wrapped data key", wrapped_key)):
            for file, content in after.items():
                assert secret not in content, f"the {name} is still in the {file} file"
        # The database is whole: it opens, and the domain is gone.
        with database.read() as conn:
            assert conn.execute(select(domain.c.name)).all() == []
    finally:
        services.database.dispose()
