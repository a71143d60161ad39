"""Domains whose key cannot be used: naming every one when an upgrade needs their keys, and
dropping one, every row of its data, so that the upgrade can go on without it.

The migrations that seal or read stored data with the domains' keys (0018, 0020, 0022) stop
when a domain's key cannot be used, and change nothing. An operator whose key is gone for good
(a KMS key deleted, a local key lost) could then only delete the domain with the release before,
as the new one does not start until its upgrade succeeds. `drop_unreadable` deletes the domain
at whatever schema revision the database is at (`openprofiles domains drop-unreadable`), and
`refusal` is the message those migrations stop with: it names every domain whose key cannot be
used, not only the first one met (so the operator does not find them one start at a time), and
both ways forward for each, with the exact command.

The drop finds the domain's rows by reflecting the database, not from store.schema: the
database may be at an older revision than this code declares (tables of its own, columns that
since moved). Every table with a `domain_name` column holds a domain's rows. It runs under the
migrations' own lock and transaction (store.migrate.migrating), so it is whole or not at all,
and never runs beside a server's upgrade.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from openprofiles.crypto.errors import KeyUnusable

if TYPE_CHECKING:
    from openprofiles.crypto.domain_keys import KeyManager
    from openprofiles.crypto.keyring import Keyring
    from openprofiles.settings import Settings

# The columns of `domain` every revision has (0001 on).
_domain = sa.table("domain", sa.column("name"), sa.column("key_id"), sa.column("wrapped_key"))

DROP_COMMAND = "openprofiles domains drop-unreadable {name} --confirm"


class DropRefused(Exception):
    """The domain is not dropped: `.message` says why and what to do instead."""

    # Domain names, key identifiers, paths and what to do: the logs may show it.
    message_has_no_personal_data = True

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Unusable:
    """A domain whose key cannot be used now, and why."""

    domain_name: str
    key_id: str
    error: KeyUnusable


@dataclass(frozen=True)
class Dropped:
    """What `drop_unreadable` found: the domain's rows per table (deleted when `deleted`)."""

    domain_name: str
    key_id: str
    problem: str
    rows: dict[str, int]
    deleted: bool


def unusable_domains(conn: Connection, keys: KeyManager) -> Iterator[Unusable]:
    """Every domain whose data key its key cannot unwrap now, in name order."""
    rows = conn.execute(
        sa.select(_domain.c.name, _domain.c.key_id, _domain.c.wrapped_key).order_by(_domain.c.name)
    ).all()
    for row in rows:
        try:
            keys.cipher_for(row.name, row.key_id, bytes(row.wrapped_key))
        except KeyUnusable as exc:
            yield Unusable(row.name, row.key_id, exc)


def refusal(
    conn: Connection, keys: KeyManager, *, needs: str, domain_name: str, error: KeyUnusable
) -> KeyUnusable:
    """The error a migration stops with when the key of `domain_name` failed with `error`;
    `needs` says what the upgrade does with it ("seals the flow data of domain d1 with its
    key"). The other domains' keys are tried too, so that every domain the operator must act on
    is named at once."""
    start = f"Upgrading the database {needs}, which cannot be used"
    if error.transient:
        # It may pass: neither dropping nor a list of domains that may all work in a minute.
        return KeyUnusable(
            f"{start} now: {error.message} Nothing was changed; start again once it can be.",
            error.problem,
        )
    others = [
        u
        for u in unusable_domains(conn, keys)
        if u.domain_name != domain_name and not u.error.transient
    ]
    names = [domain_name, *(u.domain_name for u in others)]
    listed = ""
    if others:
        listed = " Other domains whose key cannot be used either: " + "; ".join(
            f"{u.domain_name} ({u.error.message.rstrip('.')})" for u in others
        )
        listed += "."
    commands = ", ".join(f"`{DROP_COMMAND.format(name=name)}`" for name in names)
    if others:
        ways = (
            f" For each of these {len(names)} domains, either make its key usable again, or, if "
            f"the key is gone for good, drop the domain: {commands}"
        )
    else:
        ways = (
            " Either make the key usable again and start again, or, if the key is gone for "
            f"good, drop the domain with {commands}"
        )
    return KeyUnusable(
        f"{start}: {error.message} Nothing was changed.{listed}{ways} (given the --data-dir "
        "and --database-url this server runs with), then start again. Dropping a domain deletes "
        "every row of its data and cannot be undone; without its key, none of it can be read "
        "anyway.",
        error.problem,
    )


def drop_unreadable(settings: Settings, domain_name: str, *, confirm: bool) -> Dropped:
    """Delete the domain `domain_name` and every row of its data, provided its key cannot be
    used (and not only for now); with `confirm` False, only say what would be deleted.
    DropRefused says why not, when not."""
    from openprofiles.crypto.domain_keys import KeyManager
    from openprofiles.crypto.keyring import Keyring
    from openprofiles.crypto.providers import ProviderResolver
    from openprofiles.store.database import Database
    from openprofiles.store.migrate import migrating

    if settings.is_sqlite and not _sqlite_file_exists(settings):
        raise DropRefused(
            f"There is no database in the data dir {settings.data_dir}; give the --data-dir (or "
            "--database-url) the server uses."
        )
    database = Database.from_settings(settings)
    try:
        keyring = Keyring(settings.keyring_path)
        keys = KeyManager(ProviderResolver(settings, keyring), cache_seconds=0)
        with migrating(database) as conn:
            dropped = _drop(conn, settings, keyring, keys, domain_name, confirm=confirm)
        if dropped.deleted:
            # On SQLite the write-ahead log still holds the pages from before the delete.
            database.request_truncate()
    finally:
        database.dispose()
    return dropped


def _sqlite_file_exists(settings: Settings) -> bool:
    from pathlib import Path

    from sqlalchemy import make_url

    path = make_url(settings.effective_database_url).database
    return bool(path) and (path == ":memory:" or Path(str(path)).exists())


def _drop(
    conn: Connection,
    settings: Settings,
    keyring: Keyring,
    keys: KeyManager,
    domain_name: str,
    *,
    confirm: bool,
) -> Dropped:
    inspector = sa.inspect(conn)
    row = (
        conn.execute(
            sa.select(_domain.c.key_id, _domain.c.wrapped_key).where(_domain.c.name == domain_name)
        ).first()
        if inspector.has_table("domain")
        else None
    )
    if row is None:
        raise DropRefused(
            f"There is no domain {domain_name} in this database; nothing was deleted."
        )
    _require_the_databases_keyring(conn, inspector, settings, keyring, keys)
    try:
        keys.cipher_for(domain_name, row.key_id, bytes(row.wrapped_key))
    except KeyUnusable as exc:
        if exc.transient:
            raise DropRefused(
                f"The key {row.key_id} of domain {domain_name} cannot be used now, but that may "
                f"pass: {exc.message} Nothing was deleted: start again once it can be used."
            ) from None
        problem = exc.message
    else:
        raise DropRefused(
            f"The key {row.key_id} of domain {domain_name} can be used: its data can be read, "
            "so it is not dropped. Delete it with DeleteDomain once the server runs."
        )
    metadata = sa.MetaData()
    metadata.reflect(conn)
    # Children before their parents: with foreign keys enforced, no delete waits on a cascade.
    tables = [t for t in reversed(metadata.sorted_tables) if "domain_name" in t.c]
    rows: dict[str, int] = {}
    for table in tables:
        where = table.c.domain_name == domain_name
        if confirm:
            count = conn.execute(sa.delete(table).where(where)).rowcount
        else:
            count = conn.execute(
                sa.select(sa.func.count()).select_from(table).where(where)
            ).scalar_one()
        if count:
            rows[table.name] = int(count)
    if confirm:
        conn.execute(sa.delete(_domain).where(_domain.c.name == domain_name))
    return Dropped(domain_name, row.key_id, problem, rows, deleted=confirm)


def _require_the_databases_keyring(
    conn: Connection,
    inspector: sa.Inspector,
    settings: Settings,
    keyring: Keyring,
    keys: KeyManager,
) -> None:
    """DropRefused unless the keyring is the one this database's data was sealed under: with
    another data dir's keyring (or none), every local key would look lost, and a domain whose
    key is fine would be dropped. The proof is the start-up check's (app._check_keyring_opens):
    a stored API secret opens under the system cipher of the keyring's default key."""
    from openprofiles.auth.credentials import secret_opens
    from openprofiles.crypto.keyring import DEFAULT_ALIAS

    wrong = (
        "Nothing was deleted: with the keyring of another data dir, every local key looks lost. "
        "Give the --data-dir of the server that uses this database."
    )
    if not settings.keyring_path.exists():
        raise DropRefused(f"The keyring {settings.keyring_path} does not exist. {wrong}")
    credential = sa.table("credential", sa.column("access_key_id"), sa.column("secret_sealed"))
    secret = (
        conn.execute(sa.select(credential).limit(1)).first()
        if inspector.has_table("credential")
        else None
    )
    if secret is None:
        return
    try:
        opens = keyring.find_by_alias(DEFAULT_ALIAS) is not None and secret_opens(
            keys, access_key_id=secret.access_key_id, secret_sealed=bytes(secret.secret_sealed)
        )
    except KeyUnusable as exc:  # the default key disabled
        raise DropRefused(f"{exc.message} Nothing was deleted.") from None
    if not opens:
        raise DropRefused(
            f"The keyring {settings.keyring_path} is not the one this database's data was sealed "
            f"under (its default key does not open the stored API credentials). {wrong}"
        )
