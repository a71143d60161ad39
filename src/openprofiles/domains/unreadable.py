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

Gone for good (`assess`), and nothing else, since a drop cannot be undone:

- A KMS key that DescribeKey answers does not exist, asked in the key's region by a client that
  another call shows to reach KMS in the key's account (KmsKeyProvider.confirm_deleted); for a
  domain named by an alias that is gone, the key the alias named, which the operator gives
  (`--key-lost KEY_ARN`: KMS does not say which key a gone alias named). DescribeKey answers
  NotFound for a key that never existed as for a deleted one, so the key given must be the one
  the server saw the alias name (KMS's KeyId) when it wrapped or unwrapped the domain's data
  key: `record_aliased_keys` keeps it in the domain's row (since 0032) with the digest of that
  data key. With none recorded for the data key the domain holds (a key that has not worked
  since this release), nothing proves which key the alias named, and nothing is dropped.
- A local key (or the version of it, or that version's material, the data key was wrapped
  under) absent from a keyring proven to be the database's (`keyring_problem`: something
  the database holds, sealed under the keyring's default key or wrapped under one of its keys,
  opens; another data dir's keyring, or a new one, would make every local key look lost), on the
  operator's word that no copy holding it is left: `--key-lost KEY` naming that key. No keyring
  can prove a key lost: a copy of keyring.json older than the key (a second server's not copied
  again after `keys create`, a staging clone, a restored backup) holds the default key and every
  key before, and lacks the key the server's own keyring still holds. There is no command that
  deletes a local key, so the database cannot record one deliberately deleted either. What the
  database does record (`record_local_key`, table local_key_record since 0031) is every key
  `keys create` made and the versions `keys rotate` gave it: a keyring lacking one is shown to
  be older than the database (`keyring_behind`), and the refusal says to copy the current
  keyring.json first, the drop only if every copy holding the key is lost: the record cannot
  tell an older copy from the loss of every newer one, and a key made since 0031 and lost for
  good must not make its domains impossible to drop. Databases from before 0031, and keys made
  before it, have no record: the same --key-lost is all there is for them. A drop on --key-lost
  brings the record down to what the keyring holds once no domain left needs more
  (`_settle_record`): the operator has said no copy holding more is left, and a record that
  still claimed one would blame every later missing key on an older keyring. (A key a domain
  names by alias/NAME cannot be told from the record once gone from the keyring: its record
  stays.)

A key that is disabled, pending deletion, or that the operator's shell cannot use (no AWS
credentials, another region or account, access denied) is not gone: the refusal says how to
make it usable.

The drop finds the domain's rows by reflecting the database, not from store.schema: the
database may be at an older revision than this code declares (tables of its own, columns that
since moved). Every table with a `domain_name` column holds a domain's rows; so do the kept
contact records waiting for it or held for it, which go as DeleteDomain deletes them
(contacts.kept.delete_domains_records). The key is assessed first, outside any lock (KMS may
take its timeouts and retries); then, under the migrations' own lock and transaction
(store.migrate.migrating), the domain's key is checked to be the one assessed and the rows are
deleted, whole or not at all, never beside a server's upgrade.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from openprofiles.crypto.arns import alias_name, is_aws_kms_arn, parse_local_key_arn
from openprofiles.crypto.errors import DecryptionError, KeyProblem, KeyUnusable

# (Defined beside the key provider, whose message for a lost alias names it too.)
from openprofiles.crypto.providers import LOST_KEY_DROP_COMMAND as LOST_KEY_DROP_COMMAND
from openprofiles.store.types import UtcDateTime

if TYPE_CHECKING:
    from openprofiles.crypto.domain_keys import KeyManager
    from openprofiles.crypto.keyring import Keyring, LocalKey
    from openprofiles.settings import Settings
    from openprofiles.store.database import Database

# The columns of `domain` every revision has (0001 on).
_domain = sa.table(
    "domain",
    sa.column("name"),
    sa.column("key_id"),
    sa.column("wrapped_key"),
    # Typed: SQLite keeps the time as text.
    sa.column("created_at", UtcDateTime),
)

DROP_COMMAND = "openprofiles domains drop-unreadable {name} --confirm"
# `domain` from 0032 on: the key a KMS alias named, for the data key of that digest.
_aliased_domain = sa.table(
    "domain",
    sa.column("name"),
    sa.column("key_id"),
    sa.column("wrapped_key"),
    sa.column("aliased_key_arn"),
    sa.column("aliased_key_digest"),
)
# The local keys `keys create` made and the versions `keys rotate` gave them (0031).
_record = sa.table(
    "local_key_record", sa.column("key_id"), sa.column("versions"), sa.column("recorded_at")
)


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
    # When the domain was made (None where it was not read): a key its alias names that is
    # older cannot have replaced the one its data key was wrapped under (`assess`).
    created_at: datetime | None = None


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
        sa.select(
            _domain.c.name, _domain.c.key_id, _domain.c.wrapped_key, _domain.c.created_at
        ).order_by(_domain.c.name)
    ).all()
    for row in rows:
        try:
            keys.cipher_for(row.name, row.key_id, bytes(row.wrapped_key))
        except KeyUnusable as exc:
            yield Unusable(row.name, row.key_id, exc, _aware(row.created_at))


@dataclass(frozen=True)
class Verdict:
    """Whether a domain's key that cannot be used is gone for good (`gone`): what is wrong with
    it (`problem`) and, when not gone, how to make it usable again (`way`)."""

    gone: bool
    problem: str
    way: str = ""
    # `way` names the drop with --key-lost, for the operator who knows no copy of the key is left.
    offers_drop: bool = False

    @property
    def reason(self) -> str:
        return f"{self.problem} {self.way}".strip()


@dataclass(frozen=True)
class Evidence:
    """What `assess` judges a key by, gathered once per database read: `keyring_problem`'s and
    `keyring_behind`'s answers, the other domains' KMS keys (a KMS answer proves something only
    from a client that reaches the database's KMS), and the key the operator says is lost
    (--key-lost), if any."""

    keyring_problem: str | None
    keyring_behind: str | None
    kms_witnesses: list[str]
    key_lost: str | None = None
    # Domain -> the KMS key its alias ARN named for the data key it holds (`aliased_keys`).
    aliased_keys: dict[str, str] = field(default_factory=dict)


def evidence(conn: Connection, keys: KeyManager, *, key_lost: str | None = None) -> Evidence:
    """The Evidence this database and keyring give (no KMS call), with the operator's
    --key-lost."""
    keyring = keys.resolver.keyring
    return Evidence(
        keyring_problem(conn, keys),
        keyring_behind(conn, keyring),
        _kms_witnesses(conn),
        key_lost,
        aliased_keys(conn),
    )


_ALIASED = ("aliased_key_arn", "aliased_key_digest")


def aliased_keys(conn: Connection) -> dict[str, str]:
    """Domain -> the KMS key its alias ARN named when it last unwrapped the data key the domain
    holds now (`record_aliased_keys`); a record made for another data key (before a change of
    the domain's key) names nothing. Empty before 0032."""
    columns = {c["name"] for c in sa.inspect(conn).get_columns("domain")}
    if not set(_ALIASED) <= columns:
        return {}
    t = _aliased_domain
    rows = conn.execute(
        sa.select(t.c.name, t.c.wrapped_key, t.c.aliased_key_arn, t.c.aliased_key_digest).where(
            t.c.aliased_key_arn.is_not(None)
        )
    )
    return {
        row.name: str(row.aliased_key_arn)
        for row in rows
        if row.aliased_key_digest is not None
        and bytes(row.aliased_key_digest) == _digest(bytes(row.wrapped_key))
    }


def _digest(wrapped: bytes) -> bytes:
    return hashlib.sha256(wrapped).digest()


def record_aliased_keys(database: Database, keys: KeyManager) -> None:
    """Record in the domains' rows the KMS keys their alias ARNs named, as `keys` learnt them
    wrapping or unwrapping their data keys since they were last recorded (KeyManager
    .aliased_keys_to_record): one UPDATE per domain per process, and one per change of its key;
    none at all, not even a connection, when nothing was learnt. Each only where the row still
    holds the alias and the data key it was learnt for. The server runs it in the background
    (app.background_tasks) and after its upgrade, never in a request."""
    learnt = keys.aliased_keys_to_record()
    if not learnt:
        return
    with database.write() as conn:
        if not set(_ALIASED) <= {c["name"] for c in sa.inspect(conn).get_columns("domain")}:
            return  # before 0032
        done = []
        for one in learnt:
            t = _aliased_domain
            updated = conn.execute(
                sa.update(t)
                .where(
                    t.c.name == one.domain_name,
                    t.c.key_id == one.key_id,
                    t.c.wrapped_key == one.wrapped,
                )
                .values(aliased_key_arn=one.key_arn, aliased_key_digest=_digest(one.wrapped))
            ).rowcount
            done.append((one, bool(updated)))
    for one, recorded in done:
        keys.aliased_key_offered(one, recorded=recorded)


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
    # A KMS key (or the one a gone alias named) not proven deleted, or a --key-lost that names
    # another key: the provider's message says why and what to give.
    KeyProblem.NOT_FOUND: "Nothing is dropped for it.",
    KeyProblem.INVALID_IDENTIFIER: "Nothing is dropped for it.",
}
_NOT_GONE = (
    "The key is not gone: it exists but does not unwrap this domain's data key (or cannot be "
    "used for it), so the domain is not dropped for it."
)


def assess(keys: KeyManager, domain: Unusable, wrapped: bytes, proof: Evidence) -> Verdict:
    """Whether the key of `domain` (which failed with `domain.error`) is gone for good."""
    from openprofiles.crypto.domain_keys import encryption_context
    from openprofiles.crypto.providers import KmsKeyProvider

    error = domain.error
    if error.transient:
        return Verdict(False, error.message, "That may pass: start again once it can be used.")
    kms = is_aws_kms_arn(domain.key_id)
    if error.problem is KeyProblem.NOT_FOUND and not kms:
        return _assess_local(keys, domain, proof)
    if error.problem is KeyProblem.INVALID_CIPHERTEXT and _alias_given_anew(keys, domain):
        # A local alias whose key does not open the data key, and that key was made after the
        # domain: the key that had the alias went missing from keyring.json and `keys create`
        # gave the alias to a new one (as the message for the missing alias once advised). The
        # key the data key needs is missing as surely as when the alias is: judged the same
        # way, not "it exists". A key older than the domain is the one that wrapped its data
        # key: the wrapped key is damaged, refused below as under a key's ARN.
        return _assess_local(keys, domain, proof, replaced=True)
    # KMS answers a Decrypt under a deleted key NotFound (KeyId given) or AccessDenied (as for a
    # key these credentials may not use): DescribeKey tells them apart.
    if kms and error.problem in (KeyProblem.NOT_FOUND, KeyProblem.ACCESS_DENIED):
        provider = keys.resolver.resolve(domain.key_id)
        assert isinstance(provider, KmsKeyProvider)  # is_aws_kms_arn
        try:
            provider.confirm_deleted(
                domain.key_id,
                wrapped,
                encryption_context(domain.domain_name),
                [k for k in proof.kms_witnesses if k != domain.key_id],
                named_key=proof.key_lost,
                aliased_key=proof.aliased_keys.get(domain.domain_name),
            )
        except KeyUnusable as exc:
            if not (
                error.problem is KeyProblem.ACCESS_DENIED
                and exc.problem is KeyProblem.INVALID_CIPHERTEXT
            ):
                # (The key described as enabled after AccessDenied: the denial's own advice.)
                error = exc
        else:
            return Verdict(True, domain.error.message)
    recovery = _RECOVERY.get(error.problem)
    if recovery is None:
        return Verdict(False, error.message, _NOT_GONE)
    how = "in KMS: aws kms enable-key" if kms else f"`openprofiles keys enable {domain.key_id}`"
    return Verdict(False, error.message, recovery.format(how=how))


def _alias_given_anew(keys: KeyManager, domain: Unusable) -> bool:
    """Whether the domain names its key by a local alias that the keyring gives to a key made
    after the domain (so not the key its data key was wrapped under). Unknown when the domain
    was made is taken as no: the drop then refuses, as for a damaged wrapped key."""
    if alias_name(domain.key_id) is None or domain.created_at is None:
        return False
    now = keys.resolver.keyring.lookup(domain.key_id)
    return now is not None and _aware(now.created_at) > domain.created_at


def _aware(moment: datetime) -> datetime:
    """A stored time as an aware UTC datetime (SQLite's rows and the keyring's may be naive)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _assess_local(
    keys: KeyManager, domain: Unusable, proof: Evidence, *, replaced: bool = False
) -> Verdict:
    """A local key (or the version of it, or that version's material, the data key needs)
    missing from the keyring: gone for good only in a keyring proven the database's, on the
    operator's --key-lost naming it (the module docstring says why no keyring proves it).
    `replaced`: the domain names the key by an alias that the keyring gives to another key,
    which does not open the data key; the key the data key was wrapped under is missing."""
    error = domain.error
    if proof.keyring_problem is not None:
        return Verdict(
            False,
            error.message,
            f"But {proof.keyring_problem}: a local key missing from it may be "
            "only in the keyring of the data dir the server runs with, so no domain is "
            "dropped for it. Give the --data-dir of the server that uses this database.",
        )
    keyring = keys.resolver.keyring
    # The key now under the alias, when `replaced`, is not the domain's: nothing is held of it.
    found = None if replaced else keyring.lookup(domain.key_id)
    held = found is not None
    if proof.key_lost is not None and (
        _names_key(proof.key_lost, domain.key_id)
        # A key the domain names by alias/NAME, held without the version: its ARN or id too.
        or (found is not None and _names_key(proof.key_lost, keys.resolver.local_arn(found)))
    ):
        return Verdict(True, error.message)
    if proof.key_lost is not None:
        way = f"--key-lost {proof.key_lost} does not name this key, so nothing is dropped for it."
        return Verdict(False, error.message, way)
    command = LOST_KEY_DROP_COMMAND.format(name=domain.domain_name, key=domain.key_id)
    said: list[str] = []
    if replaced:
        # The provider's message says what happened to the alias; this, which key it names now.
        now = keyring.lookup(domain.key_id)
        if now is not None:
            said.append(
                f"The alias names the key {now.key_id} now, made "
                f"{now.created_at:%Y-%m-%d %H:%M} UTC: not the one the data key was wrapped "
                "under."
            )
    if held:
        # The key is there, but not the version (or the material) its data key was wrapped
        # under: the key was rotated with another copy of keyring.json, which holds it.
        said.append(
            "The keyring holds this key, but not the version its data key was wrapped "
            "under: the copy of keyring.json of the server that rotated the key holds it. "
            "Put that copy back; a domain is not dropped for a key its keyring still holds "
            "on the keyring's word."
        )
    if proof.keyring_behind is not None:
        said.append(
            f"The keyring {keyring.path} looks older than the database: "
            f"{proof.keyring_behind}. Copy the current keyring.json from the server that made "
            "them (every server sharing the database needs it, copied again after `keys "
            "create` or `keys rotate`); no domain is dropped for a key such a copy lacks on "
            "the copy's word."
        )
    elif not held and not replaced:
        said.append(
            "A key missing from this keyring may be only missing from this copy of keyring.json "
            "(a second server's not copied again after `keys create`, a staging clone, a "
            "restored backup), which no keyring can tell from a lost key: nothing is dropped "
            "for it on the keyring's word. Copy the current keyring.json from the server that "
            "uses the key."
        )
    lost = "that version of the key" if held else "the key"
    said.append(
        f"Only if every copy of keyring.json holding {lost} is lost (every server's data dir, "
        f"every backup), say so: `{command}`."
    )
    way = " ".join(said)
    return Verdict(False, error.message, way, offers_drop=True)


def _names_key(given: str, key_id: str) -> bool:
    """Whether the operator's `given` (an ARN, a key id or alias/NAME) names the local key
    `key_id` (as the domain stores it: an ARN or alias/NAME)."""
    if given == key_id:
        return True
    arn = parse_local_key_arn(key_id)
    given_arn = parse_local_key_arn(given)
    return arn is not None and (given_arn.key_id if given_arn else given) == arn.key_id


def keyring_behind(conn: Connection, keyring: Keyring) -> str | None:
    """Why the keyring is older than the database, when it is: it lacks a local key the database
    records (`record_local_key`), or holds fewer versions of one than recorded. None when it
    holds every recorded key, or the database records none (before 0031)."""
    if not sa.inspect(conn).has_table("local_key_record"):
        return None
    lacking: list[str] = []
    for row in conn.execute(sa.select(_record.c.key_id, _record.c.versions).order_by("key_id")):
        key = keyring.get(row.key_id)
        if key is None:
            lacking.append(f"it lacks the local key {row.key_id}")
        elif len(key.versions) < row.versions:
            lacking.append(
                f"it holds {len(key.versions)} version(s) of the local key {row.key_id}, not "
                f"the {row.versions} it had"
            )
    if not lacking:
        return None
    return (
        "; ".join(lacking) + ", as `openprofiles keys create` and `keys rotate` recorded in the "
        "database"
    )


def record_local_key(database: Database, key: LocalKey) -> None:
    """Record in the database that its keyring holds `key` with as many versions (`keys create`,
    `keys rotate`): a keyring copy without them is then shown to be older (`keyring_behind`).
    Nothing is recorded in a database from before the record (0031): a server of this release
    upgrades it."""
    from datetime import UTC, datetime

    with database.write() as conn:
        if not sa.inspect(conn).has_table("local_key_record"):
            return
        versions = len(key.versions)
        now = datetime.now(UTC)
        known = conn.execute(
            sa.select(_record.c.versions).where(_record.c.key_id == key.key_id)
        ).scalar_one_or_none()
        if known is None:
            conn.execute(
                sa.insert(_record).values(key_id=key.key_id, versions=versions, recorded_at=now)
            )
        elif known < versions:
            conn.execute(
                sa.update(_record)
                .where(_record.c.key_id == key.key_id)
                .values(versions=versions, recorded_at=now)
            )


def keyring_problem(conn: Connection, keys: KeyManager) -> str | None:
    """None when the keyring is proven to be the one the database's data was sealed under, else
    why it is not: another data dir's keyring, or one made anew, would make every local key look
    lost. Proof: one row of each kind the server seals under its default key (API credentials'
    secrets, web users' names, records kept for an instance not associated yet) opens, at least
    one being there; or, with none there, a domain's data key unwraps under a local key of the
    keyring. Any such row that does not open disproves it. No KMS call."""
    from openprofiles.auth.credentials import secret_opens
    from openprofiles.contacts.kept import UNROUTED_TABLE
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
        sa.select(_domain.c.key_id, _domain.c.wrapped_key, _domain.c.created_at).where(
            _domain.c.name == domain_name
        )
    ).one()
    failed = [
        (Unusable(domain_name, row.key_id, error, _aware(row.created_at)), bytes(row.wrapped_key)),
        *(
            (u, _wrapped_key(conn, u.domain_name))
            for u in unusable_domains(conn, keys)
            if u.domain_name != domain_name and not u.error.transient
        ),
    ]
    proof = evidence(conn, keys)
    verdicts = [(u, assess(keys, u, wrapped, proof)) for u, wrapped in failed]
    gone = [u.domain_name for u, v in verdicts if v.gone]
    ways = " ".join(_way(u.domain_name, v, said=error.message) for u, v in verdicts)
    many = f" The domains whose key cannot be used ({len(verdicts)}), each with its way forward"
    message = (
        f"{start}: {error.message} Nothing was changed."
        + (f"{many}: {ways}" if len(verdicts) > 1 else f" {ways}")
        + " Then start again."
    )
    if gone or any(v.offers_drop for _, v in verdicts):
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


def drop_unreadable(
    settings: Settings, domain_name: str, *, confirm: bool, key_lost: str | None = None
) -> Dropped:
    """Delete the domain `domain_name` and every row of its data, provided its key is gone for
    good (`assess`; `key_lost`, the operator's --key-lost); with `confirm` False, only say what
    would be deleted. DropRefused says why not, when not."""
    from openprofiles.crypto.domain_keys import KeyManager
    from openprofiles.crypto.keyring import Keyring
    from openprofiles.crypto.providers import ProviderResolver
    from openprofiles.store.database import Database
    from openprofiles.store.migrate import before_migrating, migrating

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
        # Before the upgrade this drop makes way for: read as build_services reads then, so
        # that another process's upgrade under way and this wait in turn, not for each other.
        with before_migrating(database) as conn:
            row = _domain_row(conn, domain_name)
            proof = evidence(conn, keys, key_lost=key_lost)
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
                keys, Unusable(domain_name, key_id, exc, _aware(row.created_at)), wrapped, proof
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
            if confirm and key_lost is not None and not is_aws_kms_arn(key_id):
                _settle_record(conn, keyring, key_id)
        if dropped.deleted:
            # On SQLite the write-ahead log still holds the pages from before the delete.
            database.request_truncate()
    finally:
        database.dispose()
    return dropped


def _settle_record(conn: Connection, keyring: Keyring, key_id: str) -> None:
    """After a drop on --key-lost for the local key `key_id` (the operator's word that no copy
    of keyring.json holding it, or the version its data key needed, is left): its record in
    local_key_record brought down to what the keyring holds, once no domain left needs more.
    Kept, it would say the keyring is older than the database for every key missing later
    (`keyring_behind`), sending the operator after a copy that is not there. A key the domain
    named by alias/NAME and that is gone from the keyring cannot be found in the record (it
    is by key id): its record stays."""
    from openprofiles.crypto.providers import local_wrap_version

    if not sa.inspect(conn).has_table("local_key_record"):
        return
    held = keyring.lookup(key_id)
    named = parse_local_key_arn(key_id)
    record_id = held.key_id if held is not None else named.key_id if named else None
    if record_id is None:
        return
    needed = 0  # the highest version a domain left needs (0: none is under the key)
    for row in conn.execute(sa.select(_domain.c.key_id, _domain.c.wrapped_key)):
        if is_aws_kms_arn(row.key_id):
            continue
        arn = parse_local_key_arn(row.key_id)
        found = keyring.lookup(row.key_id) if arn is None else None
        if arn is None and found is None:
            return  # an alias/NAME gone from the keyring: it may be this key's
        if (arn.key_id if arn is not None else found.key_id if found else None) == record_id:
            needed = max(needed, local_wrap_version(bytes(row.wrapped_key)))
    where = _record.c.key_id == record_id
    if held is None and needed == 0:
        conn.execute(sa.delete(_record).where(where))
    elif held is not None and needed <= len(held.versions):
        conn.execute(
            sa.update(_record)
            .where(where, _record.c.versions > len(held.versions))
            .values(versions=len(held.versions))
        )


def _domain_row(conn: Connection, domain_name: str) -> Any:
    row = (
        conn.execute(
            sa.select(_domain.c.key_id, _domain.c.wrapped_key, _domain.c.created_at).where(
                _domain.c.name == domain_name
            )
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
    # Before the domain's rows: they tell the kept records' owner.
    if kept := _drop_kept_records(conn, metadata, domain_name, confirm=confirm):
        rows["unrouted_contact_record"] = kept
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


def _drop_kept_records(
    conn: Connection, metadata: sa.MetaData, domain_name: str, *, confirm: bool
) -> int:
    """How many kept contact records go with the domain: DeleteDomain's deletion of them
    (contacts.kept.delete_domains_records), rolled back to a savepoint when `confirm` is False.
    They have no `domain_name` column: waiting for one of its contacts (`contact_awaited`) or
    held for it (`held_for`), left behind they would flow into the next domain their instance is
    associated with. At a revision before 0036 (no `held_for`), whose statements the deletion
    could not run, none is deleted."""
    kept = metadata.tables.get("unrouted_contact_record")
    if (
        kept is None
        or "held_for" not in kept.c
        or not {"contact_awaited", "instance_moved_from"} <= metadata.tables.keys()
    ):
        return 0
    from openprofiles.contacts.kept import delete_domains_records

    count = sa.select(sa.func.count()).select_from(kept)
    before = int(conn.execute(count).scalar_one())
    trial = None if confirm else conn.begin_nested()
    delete_domains_records(conn, domain_name)
    gone = before - int(conn.execute(count).scalar_one())
    if trial is not None:
        trial.rollback()
    return gone
