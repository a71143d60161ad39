"""Rules for domains: create, read, update, delete, list, statistics and the domain's cipher.

Obtaining a domain key (which may call KMS) happens before the write transaction, in the
handler, through `crypto.KeyManager.new_domain_key`; this module only stores the result. An
existing domain's data key is unwrapped outside write transactions too (`domain_cipher`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection
from functools import partial
from typing import Any, cast

from sqlalchemy import and_, bindparam, delete, func, insert, select, update

from openprofiles.blocking import loop_request
from openprofiles.context import Tx
from openprofiles.crypto.domain_keys import DomainCipher, KeyManager
from openprofiles.crypto.errors import KeyUnusable
from openprofiles.domains.models import CONFIG_MEMBERS, DomainRecord, DomainStats
from openprofiles.errors import AccessDenied, BadRequest, InternalServer, NotFound, ServiceError
from openprofiles.store.conflicts import ConcurrentChange, RestartOutside, prepared, restartable
from openprofiles.store.prepared import PreparedRead
from openprofiles.store.schema import domain, profile, profile_key

# Tables whose rows belong to a domain, children before parents, for DeleteDomain. Feature
# packages that add domain tables register them with `register_domain_table`.
_DOMAIN_TABLES: list[Any] = [profile_key, profile]


# Run first by DeleteDomain, with (tx, domain name): for rows that belong to the domain only
# through another domain table, found by it before its rows go.
_DOMAIN_DELETERS: list[Callable[[Tx, str], None]] = []


def register_domain_table(table: Any) -> None:
    """Have DeleteDomain remove `table`'s rows (it must have a `domain_name` column)."""
    if table not in _DOMAIN_TABLES:
        _DOMAIN_TABLES.insert(0, table)


def register_domain_deleter(deleter: Callable[[Tx, str], None]) -> None:
    """Have DeleteDomain call `deleter(tx, domain_name)` before it removes the domain's tables."""
    if deleter not in _DOMAIN_DELETERS:
        _DOMAIN_DELETERS.append(deleter)


def _record(row: Any) -> DomainRecord:
    return DomainRecord(
        name=row.name,
        key_id=row.key_id,
        wrapped_key=bytes(row.wrapped_key),
        config=dict(row.config),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


# Built once: every API request looks its domain up, and building a statement costs more than
# running it on SQLite.
_FIND_DOMAIN = PreparedRead(select(domain).where(domain.c.name == bindparam("name")))


def find_domain(tx: Tx, *, domain_name: str) -> DomainRecord | None:
    if domain_name in tx.domain_cache:
        cached: DomainRecord | None = tx.domain_cache[domain_name]
        return cached
    row = _FIND_DOMAIN.first(tx.conn, {"name": domain_name})
    record = _record(row) if row else None
    tx.domain_cache[domain_name] = record
    return record


def get_domain(tx: Tx, *, domain_name: str) -> DomainRecord:
    record = find_domain(tx, domain_name=domain_name)
    if record is None:
        raise NotFound(f"The domain {domain_name} does not exist.")
    return record


def domain_cipher(tx: Tx, *, domain_name: str) -> DomainCipher:
    """The domain's cipher. A key that cannot unwrap its data key (disabled, scheduled for
    deletion, access revoked) is AccessDeniedException with the key's message (spec §6.2: at
    data time), not an internal error that says nothing; a KMS that cannot be reached now is
    an InternalServerException saying so (clients retry those)."""
    record = get_domain(tx, domain_name=domain_name)
    keys = tx.services.keys
    cipher = keys.cached_cipher(record.name, record.key_id, record.wrapped_key)
    if cipher is not None:
        return cipher
    prepared_key = ("data key", record.name, record.key_id, record.wrapped_key)
    outcome = prepared(prepared_key)
    if outcome is None and tx.writing and loop_request() is None and restartable():
        # Not with the transaction's locks held: a KMS call takes as long as KMS does (a minute
        # of retries when it is down), and on SQLite every write of every process would queue
        # behind it. `retrying` rolls back, unwraps, and runs the transaction again. (On the
        # event loop `cipher_for` moves the request to a thread first, where this applies.)
        raise RestartOutside(
            "unwrapping a data key", prepared_key, partial(_unwrap_or_error, keys, record)
        )
    if outcome is None:
        outcome = _unwrap_or_error(keys, record)
    if isinstance(outcome, ServiceError):
        # Raised in the transaction, where the caller may handle it (the Kinesis connector
        # holds that domain's records and applies the others').
        raise outcome.with_traceback(None)
    return cast(DomainCipher, outcome)


def _unwrap_or_error(keys: KeyManager, record: DomainRecord) -> DomainCipher | ServiceError:
    try:
        return keys.cipher_for(record.name, record.key_id, record.wrapped_key)
    except KeyUnusable as exc:
        kind = InternalServer if exc.transient else AccessDenied
        error: ServiceError = kind(
            f"Domain {record.name}: {exc.message}",
            caller_message=f"Domain {record.name}: {exc.caller_message}",
        )
        error.__cause__ = exc
        return error


# What an agent is told of a domain whose key cannot be used, by the API (auth.policy) and by the
# pages (ui.web). The key provider's message names the key (a KMS key's ARN holds the account
# id), the KMS endpoint and what to change: an administrator's to act on; an agent can only ask
# one.
UNREADABLE_FOR_AGENTS = (
    "This domain's customer data cannot be read at the moment: the encryption key that "
    "protects it cannot be used. Ask an administrator to make the key usable again."
)
UNREACHABLE_FOR_AGENTS = (
    "This domain's customer data cannot be read right now: the service that keeps its "
    "encryption key does not answer. Try again in a few minutes; if this goes on, ask an "
    "administrator."
)


def unreadable_domain(error: ServiceError) -> bool:
    """Whether `error` says a domain's data cannot be read because its key cannot be used
    (disabled, deleted, access revoked, KMS unreachable: `domain_cipher`)."""
    return isinstance(error.__cause__, KeyUnusable)


def told_to_agents(error: ServiceError) -> str:
    """What an agent is told of an `unreadable_domain` error: that the key cannot be used, or
    that its KMS does not answer now (an InternalServerException: it may come back by itself)."""
    return UNREACHABLE_FOR_AGENTS if isinstance(error, InternalServer) else UNREADABLE_FOR_AGENTS


def require_new_name(tx: Tx, *, domain_name: str) -> None:
    """BadRequest when a domain named `domain_name` exists. CreateDomain asks before its side
    effects (a test message to the dead-letter queue, a new data key, perhaps from KMS) as well
    as in its write transaction, which decides."""
    if find_domain(tx, domain_name=domain_name) is not None:
        raise BadRequest(
            f"A domain named {domain_name} already exists. Choose another name, or change this "
            "one with UpdateDomain."
        )


def create_domain(
    tx: Tx, *, domain_name: str, config: dict[str, Any], key_id: str, wrapped_key: bytes
) -> DomainRecord:
    require_new_name(tx, domain_name=domain_name)
    # "" is no value, as UpdateDomain reads it (it removes the member).
    stored = {k: v for k, v in config.items() if k in CONFIG_MEMBERS and v not in (None, "")}
    tx.conn.execute(
        insert(domain).values(
            name=domain_name,
            key_id=key_id,
            wrapped_key=wrapped_key,
            config=stored,
            created_at=tx.now,
            updated_at=tx.now,
        )
    )
    tx.forget_domain(domain_name)
    return get_domain(tx, domain_name=domain_name)


def update_domain(
    tx: Tx,
    *,
    domain_name: str,
    changes: dict[str, Any],
    new_key: tuple[str, bytes] | None = None,
    read_before: DomainRecord | None = None,
) -> DomainRecord:
    """Apply the given settings; an empty string clears a string setting (API semantics).

    The domain's row is locked before its settings are read (`lock_domain_row`), and what this
    transaction cached of it is forgotten: the settings are merged into the committed ones, not
    into a copy another writer changed meanwhile.

    `read_before` is the domain as the caller read it, outside this transaction, to decide on
    the changes: UpdateDomain re-wraps that domain's data key as `new_key` there (a KMS call).
    Unless the row still holds that domain (its creation time) and that wrapped data key, this
    is ConcurrentChange, and the request runs again from what is there now (store.conflicts):
    a DeleteDomain and a CreateDomain of the name meanwhile would otherwise give the new domain
    the deleted one's data key, leaving its own data unreadable for good; a re-wrap meanwhile
    (UpdateDomain, `keys rotate`) would be written over. A domain deleted meanwhile is NotFound."""
    lock_domain_row(tx, domain_name=domain_name)
    tx.forget_domain(domain_name)
    current = get_domain(tx, domain_name=domain_name)
    if read_before is not None and (
        current.created_at != read_before.created_at
        or current.key_id != read_before.key_id
        or current.wrapped_key != read_before.wrapped_key
    ):
        raise ConcurrentChange(
            f"domain {domain_name} was created again or had its data key re-wrapped meanwhile"
        )
    config = dict(current.config)
    for member, value in changes.items():
        if member not in CONFIG_MEMBERS or value is None:
            continue
        if value == "":
            config.pop(member, None)
        else:
            config[member] = value
    values: dict[str, Any] = {"config": config, "updated_at": tx.now}
    if new_key is not None:
        values["key_id"], values["wrapped_key"] = new_key
    tx.conn.execute(update(domain).where(domain.c.name == domain_name).values(**values))
    tx.forget_domain(domain_name)
    return get_domain(tx, domain_name=domain_name)


def lock_domain_row(tx: Tx, *, domain_name: str) -> None:
    """Lock the domain's row until the transaction ends (PostgreSQL; SQLite's one writer
    serialises already), before its settings are read to be written back.

    UpdateDomain read the settings unlocked, merged its changes and wrote the whole config back;
    under READ COMMITTED a second UpdateDomain that read before the first committed wrote over
    the first's settings, and one that read before a rule pass (identity.rule_activation, which
    locks the row) committed wrote back the rules' old Status. FOR NO KEY UPDATE is what the
    UPDATE itself takes, only earlier: it conflicts with the rule pass's FOR UPDATE and with
    itself, and lets rows that reference the domain be inserted meanwhile."""
    tx.conn.execute(
        select(domain.c.name).where(domain.c.name == domain_name).with_for_update(key_share=True)
    )


def delete_domain(tx: Tx, *, domain_name: str) -> None:
    """Remove the domain, every row of its data and its wrapped key."""
    tx.erased()
    from openprofiles.integrations.service import lock_domain_instances
    from openprofiles.tags.service import delete_domain_tags

    get_domain(tx, domain_name=domain_name)
    # Before anything else is locked (store.advisory): a batch of contact records of its
    # instances either commits first or, once the domain is gone, keeps them as unrouted.
    lock_domain_instances(tx, domain_name=domain_name)
    # Read again with the domain's lock held, not from this transaction's cache: on PostgreSQL
    # (READ COMMITTED) another DeleteDomain of it may have held the lock and committed while
    # this one waited, and this one would delete nothing and answer success. It is NotFound,
    # as for a domain that never existed.
    tx.forget_domain(domain_name)
    get_domain(tx, domain_name=domain_name)
    for deleter in _DOMAIN_DELETERS:
        deleter(tx, domain_name)
    for table in _DOMAIN_TABLES:
        tx.conn.execute(delete(table).where(table.c.domain_name == domain_name))
    delete_domain_tags(tx, domain_name=domain_name)
    tx.conn.execute(delete(domain).where(domain.c.name == domain_name))
    tx.forget_domain(domain_name)


def list_domains(
    tx: Tx, *, after: str | None, limit: int, only: Collection[str] | None = None
) -> tuple[list[DomainRecord], bool]:
    """Domains in name order after `after`, of `only` when given (a credential's scope,
    auth.scope); the flag says whether more follow."""
    query = select(domain).order_by(domain.c.name).limit(limit + 1)
    if only is not None:
        query = query.where(domain.c.name.in_(sorted(only)))
    if after is not None:
        query = query.where(domain.c.name > after)
    rows = [_record(r) for r in tx.conn.execute(query)]
    return rows[:limit], len(rows) > limit


# Up to this many profiles TotalSize is summed exactly; above it, the profiles' part is
# estimated from a sample, because summing every sealed blob of a million-profile domain takes
# seconds and GetDomain is an ordinary, frequent call. (The objects' part is always exact: their
# sizes are in an index.)
EXACT_SIZE_LIMIT = 10_000
SIZE_SAMPLE = 1_000


def domain_stats(tx: Tx, *, domain_name: str) -> DomainStats:
    from openprofiles.objects.service import object_usage

    live = and_(profile.c.domain_name == domain_name, profile.c.merged_into.is_(None))
    count = int(tx.conn.execute(select(func.count()).where(live)).scalar_one())
    if count <= EXACT_SIZE_LIMIT:
        size = int(
            tx.conn.execute(
                select(func.coalesce(func.sum(func.length(profile.c.sealed)), 0)).where(live)
            ).scalar_one()
        )
    else:
        size = _estimated_profiles_size(tx, domain_name, live, count)
    objects = object_usage(tx, domain_name=domain_name)
    return DomainStats(
        profile_count=count,
        # Each profile once, and once more per full hundred objects past its first hundred.
        metering_profile_count=count + objects.extra_metered_profiles,
        object_count=objects.count,
        total_size=size + objects.size,
    )


def _estimated_profiles_size(tx: Tx, domain_name: str, live: Any, count: int) -> int:
    """The sealed size of the domain's `count` live profiles, from SIZE_SAMPLE of them: the
    first ids from a point fixed for the domain, wrapping around to the first ids. Profile ids
    are random, so they are a fair sample; the point is fixed so that two GetDomain calls on
    unchanged data answer the same (a random point per call made TotalSize wander, and drop
    after objects were added). The sample changes only as profiles in it change or are added."""
    start = hashlib.sha256(f"openprofiles/size-sample/{domain_name}".encode()).hexdigest()[:32]
    lengths = select(func.length(profile.c.sealed)).order_by(profile.c.profile_id)
    sizes = list(
        tx.conn.execute(
            lengths.where(live, profile.c.profile_id >= start).limit(SIZE_SAMPLE)
        ).scalars()
    )
    if len(sizes) < SIZE_SAMPLE:
        sizes += tx.conn.execute(
            lengths.where(live, profile.c.profile_id < start).limit(SIZE_SAMPLE - len(sizes))
        ).scalars()
    return round(sum(sizes) / len(sizes) * count) if sizes else 0
