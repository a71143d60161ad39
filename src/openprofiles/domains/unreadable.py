"""Domains whose key cannot be used: naming every one when an upgrade needs their keys, and
dropping one whose key is gone for good, every row of its data, so that the upgrade can go on
without it.

The migrations that seal or read stored data with the domains' keys (0018, 0020, 0022) stop
when a domain's key cannot be used, and change nothing. An operator whose key is gone for good
(a KMS key deleted, a local key lost) could then only delete the domain with the release before,
as the new one does not start until its upgrade succeeds. `drop_unreadable` deletes the domain
at whatever schema revision the database is at (`openprofiles domains drop-unreadable`), and
`refusal` is the message those migrations stop with: it names every domain whose key cannot be
used, not only the first one met (so the operator does not find them one start at a time), and
for each the way forward: the drop command when its key is gone for good, else what makes the
key usable again.

Gone for good (`assess`), and nothing else, since a drop cannot be undone: a local key (or the
version of it the data key needs) absent from a keyring proven to be the database's
(`keyring_problem`: something the database holds, sealed under the keyring's default key or
wrapped under one of its keys, opens; another data dir's keyring, or a new one, would make every
local key look lost); or a KMS key KMS answers does not exist, asked in the key's region by a
client that another call proves to work (KmsKeyProvider.confirm_deleted). A key that is
disabled, pending deletion, or that the operator's shell cannot use (no AWS credentials, another
region, access denied) is not gone: the refusal says how to make it usable.

The drop finds the domain's rows by reflecting the database, not from store.schema: the
database may be at an older revision than this code declares (tables of its own, columns that
since moved). Every table with a `domain_name` column holds a domain's rows. The key is assessed
first, outside any lock (KMS may take its timeouts and retries); then, under the migrations' own
lock and transaction (store.migrate.migrating), the domain's key is checked to be the one
assessed and the rows are deleted, whole or not at all, never beside a server's upgrade.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from openprofiles.crypto.arns import is_aws_kms_arn
from openprofiles.crypto.errors import DecryptionError, KeyProblem, KeyUnusable

if TYPE_CHECKING:
    from openprofiles.crypto.domain_keys import KeyManager
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


@dataclass(frozen=True)
class Verdict:
    """Whether a domain's key that cannot be used is gone for good (`gone`): what is wrong with
    it (`problem`) and, when not gone, how to make it usable again (`way`)."""

    gone: bool
    problem: str
    way: str = ""

    @property
    def reason(self) -> str:
        return f"{self.problem} {self.way}".strip()


# What makes a key usable again, by what is wrong with it, said after the provider's message
# (which says what is wrong). Where the command runs matters for the last ones: the operator's
# shell may lack the AWS set-up the server has.
_RECOVERY = {
    KeyProblem.DISABLED: "It is only disabled, so nothing is dropped for it: enable it ({how}).",
    KeyProblem.INVALID_STATE: (
        "It is not deleted yet, so nothing is dropped for it: cancel its deletion (aws kms "
        "cancel-key-deletion, then aws kms enable-key)."
    ),
    KeyProblem.ACCESS_DENIED: (
        "That is no proof the key is gone: run with the AWS credentials, region and KMS "
        "endpoint the server runs with (OPENPROFILES_AWS_REGION, OPENPROFILES_KMS_ENDPOINT_URL, "
        "AWS_PROFILE or AWS_ACCESS_KEY_ID), allowed to use the key."
    ),
    KeyProblem.CREDENTIALS: (
        "That is no proof the key is gone: run with the AWS credentials, region and KMS "
        "endpoint the server runs with (OPENPROFILES_AWS_REGION, OPENPROFILES_KMS_ENDPOINT_URL, "
        "AWS_PROFILE or AWS_ACCESS_KEY_ID)."
    ),
}
_NOT_GONE = (
    "The key is not gone: it exists but does not unwrap this domain's data key (or cannot be "
    "used for it), so the domain is not dropped for it."
)


def assess(
    keys: KeyManager,
    domain: Unusable,
    wrapped: bytes,
    *,
    keyring_problem: str | None,
    kms_witnesses: list[str],
) -> Verdict:
    """Whether the key of `domain` (which failed with `domain.error`) is gone for good.
    `keyring_problem` is `keyring_problem`'s answer; `kms_witnesses`, other domains' KMS keys
    (a KMS answer proves something only from a client that reaches the database's KMS)."""
    from openprofiles.crypto.domain_keys import encryption_context
    from openprofiles.crypto.providers import KmsKeyProvider

    error = domain.error
    if error.transient:
        return Verdict(False, error.message, "That may pass: start again once it can be used.")
    kms = is_aws_kms_arn(domain.key_id)
    if error.problem is KeyProblem.NOT_FOUND and not kms:
        if keyring_problem is not None:
            return Verdict(
                False,
                error.message,
                f"But {keyring_problem}: a local key missing from it may be "
                "only in the keyring of the data dir the server runs with, so no domain is "
                "dropped for it. Give the --data-dir of the server that uses this database.",
            )
        if keys.resolver.keyring.lookup(domain.key_id) is not None:
            # The key is there, but not the version (or the material) its data key was wrapped
            # under: the key was rotated with another copy of keyring.json, which holds it.
            return Verdict(
                False,
                error.message,
                "The keyring holds this key, but not the version its data key was wrapped "
                "under: the copy of keyring.json of the server that rotated the key holds it. "
                "Put that copy back; a domain is not dropped for a key its keyring still holds.",
            )
        return Verdict(True, error.message)
    if error.problem is KeyProblem.NOT_FOUND:
        provider = keys.resolver.resolve(domain.key_id)
        assert isinstance(provider, KmsKeyProvider)  # is_aws_kms_arn
        try:
            provider.confirm_deleted(
                domain.key_id,
                wrapped,
                encryption_context(domain.domain_name),
                [k for k in kms_witnesses if k != domain.key_id],
            )
        except KeyUnusable as exc:
            error = exc
        else:
            return Verdict(True, domain.error.message)
    recovery = _RECOVERY.get(error.problem)
    if recovery is None:
        return Verdict(False, error.message, _NOT_GONE)
    how = "in KMS: aws kms enable-key" if kms else f"`openprofiles keys enable {domain.key_id}`"
    return Verdict(False, error.message, recovery.format(how=how))


def keyring_problem(conn: Connection, keys: KeyManager) -> str | None:
    """None when the keyring is proven to be the one the database's data was sealed under, else
    why it is not: another data dir's keyring, or one made anew, would make every local key look
    lost. Proof: one row of each kind the server seals under its default key (API credentials'
    secrets, web users' names, records kept for an instance not associated yet) opens, at least
    one being there; or, with none there, a domain's data key unwraps under a local key of the
    keyring. Any such row that does not open disproves it. No KMS call."""
    from openprofiles.auth.credentials import secret_opens
    from openprofiles.contacts.service import UNROUTED_TABLE
    from openprofiles.crypto.keyring import DEFAULT_ALIAS
    from openprofiles.users.service import USER_TABLE

    keyring = keys.resolver.keyring
    if not keyring.path.exists():
        return f"the keyring {keyring.path} does not exist"
    tables = sa.inspect(conn)
    # (table, record id column, sealed column, what the record is bound to, id -> record id)
    sealed: list[tuple[str, str, str, str, bool]] = [
        ("credential", "access_key_id", "secret_sealed", "the stored API credentials", False),
        (USER_TABLE, "username_digest", "username_sealed", "the web users' names", True),
        (UNROUTED_TABLE, "message_id", "sealed", "the records kept for no domain", False),
    ]
    opened = 0
    for table, id_column, sealed_column, what, hexed in sealed:
        if not tables.has_table(table) or sealed_column not in {
            c["name"] for c in tables.get_columns(table)
        }:
            continue  # a revision before the table, or before it was sealed
        row: Any = conn.execute(
            sa.select(sa.column(id_column), sa.column(sealed_column))
            .select_from(sa.table(table))
            .limit(1)
        ).first()
        if row is None:
            continue
        if keyring.find_by_alias(DEFAULT_ALIAS) is None:
            # Looked up, not made (system_cipher would make one): a check changes nothing.
            return f"the keyring {keyring.path} has no default key, under which {what} are sealed"
        record_id = row[0].hex() if hexed else row[0]
        try:
            if table == "credential":
                opens = secret_opens(keys, access_key_id=record_id, secret_sealed=bytes(row[1]))
            else:
                keys.system_cipher().open_record(table, record_id, bytes(row[1]))
                opens = True
        except DecryptionError:
            opens = False
        except KeyUnusable as exc:  # the default key disabled
            return f"{what} cannot be opened to prove the keyring {keyring.path} is the " + (
                f"database's ({exc.message.rstrip('.')})"
            )
        if not opens:
            return (
                f"the keyring {keyring.path} is not the one this database's data was sealed "
                f"under: its default key does not open {what}"
            )
        opened += 1
    if opened or _a_local_key_unwraps(conn, keys):
        return None
    return (
        f"nothing in the database proves the keyring {keyring.path} is the one its data was "
        "sealed under (no API credential, web user's name or kept record sealed under its "
        "default key, and no domain's data key that a key of the keyring unwraps)"
    )


def _a_local_key_unwraps(conn: Connection, keys: KeyManager) -> bool:
    """Whether a domain's data key unwraps under a local key of the keyring: the keyring holds
    key material of this database's."""
    for row in conn.execute(sa.select(_domain.c.name, _domain.c.key_id, _domain.c.wrapped_key)):
        if is_aws_kms_arn(row.key_id):
            continue  # KMS keys are not the keyring's
        try:
            keys.cipher_for(row.name, row.key_id, bytes(row.wrapped_key))
        except KeyUnusable:
            continue
        return True
    return False


def _kms_witnesses(conn: Connection) -> list[str]:
    return [
        str(k)
        for k in conn.execute(sa.select(_domain.c.key_id).distinct()).scalars()
        if is_aws_kms_arn(str(k))
    ]


def refusal(
    conn: Connection, keys: KeyManager, *, needs: str, domain_name: str, error: KeyUnusable
) -> KeyUnusable:
    """The error a migration stops with when the key of `domain_name` failed with `error`;
    `needs` says what the upgrade does with it ("seals the flow data of domain d1 with its
    key"). The other domains' keys are tried too, so that every domain the operator must act on
    is named at once, each with its way forward: the drop only for a key gone for good."""
    start = f"Upgrading the database {needs}, which cannot be used"
    if error.transient:
        # It may pass: neither dropping nor a list of domains that may all work in a minute.
        return KeyUnusable(
            f"{start} now: {error.message} Nothing was changed; start again once it can be.",
            error.problem,
        )
    row: Any = conn.execute(
        sa.select(_domain.c.key_id, _domain.c.wrapped_key).where(_domain.c.name == domain_name)
    ).one()
    failed = [
        (Unusable(domain_name, row.key_id, error), bytes(row.wrapped_key)),
        *(
            (u, _wrapped_key(conn, u.domain_name))
            for u in unusable_domains(conn, keys)
            if u.domain_name != domain_name and not u.error.transient
        ),
    ]
    problem = keyring_problem(conn, keys)
    witnesses = _kms_witnesses(conn)
    verdicts = [
        (u, assess(keys, u, wrapped, keyring_problem=problem, kms_witnesses=witnesses))
        for u, wrapped in failed
    ]
    gone = [u.domain_name for u, v in verdicts if v.gone]
    ways = " ".join(_way(u.domain_name, v, said=error.message) for u, v in verdicts)
    many = f" The domains whose key cannot be used ({len(verdicts)}), each with its way forward"
    message = (
        f"{start}: {error.message} Nothing was changed."
        + (f"{many}: {ways}" if len(verdicts) > 1 else f" {ways}")
        + " Then start again."
    )
    if gone:
        message += (
            " Run a drop command with the --data-dir and --database-url this server runs with. "
            "Dropping a domain deletes every row of its data and cannot be undone; without its "
            "key, none of it can be read anyway."
        )
    return KeyUnusable(message, error.problem)


def _way(domain_name: str, verdict: Verdict, *, said: str) -> str:
    """A domain's way forward in `refusal`'s message, which already `said` one problem."""
    problem = "" if verdict.problem == said else verdict.problem
    if verdict.gone:
        why = f" ({problem.rstrip('.')})" if problem else ""
        command = DROP_COMMAND.format(name=domain_name)
        return f"{domain_name}: its key is gone for good{why}; drop the domain with `{command}`."
    return f"{domain_name}: " + " ".join(part for part in (problem, verdict.way) if part)


def _wrapped_key(conn: Connection, domain_name: str) -> bytes:
    return bytes(
        conn.execute(
            sa.select(_domain.c.wrapped_key).where(_domain.c.name == domain_name)
        ).scalar_one()
    )


def drop_unreadable(settings: Settings, domain_name: str, *, confirm: bool) -> Dropped:
    """Delete the domain `domain_name` and every row of its data, provided its key is gone for
    good (`assess`); with `confirm` False, only say what would be deleted. DropRefused says why
    not, when not."""
    from openprofiles.crypto.domain_keys import KeyManager
    from openprofiles.crypto.keyring import Keyring
    from openprofiles.crypto.providers import ProviderResolver
    from openprofiles.store.database import Database
    from openprofiles.store.migrate import migrating

    if settings.sqlite_file is not None and not settings.sqlite_file.exists():
        raise DropRefused(
            f"There is no database in the data dir {settings.data_dir}; give the --data-dir (or "
            "--database-url) the server uses."
        )
    database = Database.from_settings(settings)
    try:
        keyring = Keyring(settings.keyring_path)
        keys = KeyManager(ProviderResolver(settings, keyring), cache_seconds=0)
        # Assessed in a read transaction of its own and KMS outside any: a server's writes never
        # wait on KMS's timeouts and retries for this.
        with database.read() as conn:
            row = _domain_row(conn, domain_name)
            problem = keyring_problem(conn, keys)
            witnesses = _kms_witnesses(conn)
        key_id, wrapped = row.key_id, bytes(row.wrapped_key)
        try:
            keys.cipher_for(domain_name, key_id, wrapped)
        except KeyUnusable as exc:
            if exc.transient:
                raise DropRefused(
                    f"The key {key_id} of domain {domain_name} cannot be used now, but that may "
                    f"pass: {exc.message} Nothing was deleted: start again once it can be used."
                ) from None
            verdict = assess(
                keys,
                Unusable(domain_name, key_id, exc),
                wrapped,
                keyring_problem=problem,
                kms_witnesses=witnesses,
            )
        else:
            raise DropRefused(
                f"The key {key_id} of domain {domain_name} can be used: its data can be read, "
                "so it is not dropped. Delete it with DeleteDomain once the server runs."
            )
        if not verdict.gone:
            raise DropRefused(
                f"The key {key_id} of domain {domain_name} cannot be used, but it is not gone "
                f"for good: {verdict.reason} Nothing was deleted."
            )
        with migrating(database) as conn:
            now = _domain_row(conn, domain_name)
            if now.key_id != key_id or bytes(now.wrapped_key) != wrapped:
                raise DropRefused(
                    f"The key of domain {domain_name} changed while it was being checked; "
                    "nothing was deleted. Run the command again."
                )
            dropped = _drop(conn, domain_name, key_id, verdict.reason, confirm=confirm)
        if dropped.deleted:
            # On SQLite the write-ahead log still holds the pages from before the delete.
            database.request_truncate()
    finally:
        database.dispose()
    return dropped


def _domain_row(conn: Connection, domain_name: str) -> Any:
    row = (
        conn.execute(
            sa.select(_domain.c.key_id, _domain.c.wrapped_key).where(_domain.c.name == domain_name)
        ).first()
        if sa.inspect(conn).has_table("domain")
        else None
    )
    if row is None:
        raise DropRefused(
            f"There is no domain {domain_name} in this database; nothing was deleted."
        )
    return row


def _drop(
    conn: Connection, domain_name: str, key_id: str, problem: str, *, confirm: bool
) -> Dropped:
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
    return Dropped(domain_name, key_id, problem, rows, deleted=confirm)
