"""Rules for profiles: create, update, delete, fetch, search, and profile keys.

A profile is stored as one sealed blob (its standard fields) plus rows in `profile_key`: for every
key value, a keyed digest of the normalised value (what search looks up) and the value sealed
(what an agent may see). A profile merged into another keeps a row whose `merged_into` points
at the survivor (so a merge can be undone), and its keys move to the survivor.

What a merged-away id names: for the AWS operations that take a ProfileId (UpdateProfile,
DeleteProfile, AddProfileKey, DeleteProfileKey, BatchGetProfile, ListProfileObjects,
DeleteProfileObject, MergeProfiles) nothing, as on AWS, where MergeProfiles deletes the merged
profiles (spec §5.3): they answer ResourceNotFoundException naming the survivor
(`merged_away`), and BatchGetProfile an Errors entry, so no answer is about a profile other
than the one asked for. Key values follow the merge instead (spec §1.6 "After a merge"):
SearchProfiles by `_profileId` or any key of the merged profile finds the survivor, and an
ingested record carrying them lands on it. Internal readers (`find_profile`, `get_profiles`)
follow merges, as do the agent pages, so an agent's old link opens the survivor.
"""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import (
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from openprofiles.context import Tx
from openprofiles.crypto.domain_keys import DomainCipher
from openprofiles.errors import BadRequest, NotFound
from openprofiles.normalize import ContentType, normalize
from openprofiles.object_types.standard_objects import STANDARD_KEY_ROOTS
from openprofiles.profiles.keys import (
    DERIVED_KEYS,
    PREDEFINED_CONTENT_TYPES,
    derived_key_values,
)
from openprofiles.profiles.models import (
    ADDRESS_FIELDS,
    PROFILE_FIELDS,
    PROFILE_TABLE,
    WHOLE_VALUE_FIELDS,
    KeyMatch,
    ProfileRecord,
    holds_path,
)
from openprofiles.profiles.size import ProfileTooLarge, check_sealed, profile_size
from openprofiles.store.conflicts import ConcurrentChange
from openprofiles.store.in_lists import in_chunks
from openprofiles.store.many import ManyWriter
from openprofiles.store.prepared import PreparedRead
from openprofiles.store.schema import profile, profile_key

KEY_TABLE = "profile_key"
# profile_key.origin markers (store/schema/core.py says why they start with "@").
DERIVED_ORIGIN = "@profile"
EXPLICIT_ORIGIN = "@explicit"

# Called with (tx, domain name, record) after a profile is written (created, saved, or stored by
# write_profiles), in the same transaction; identity resolution registers its rule matching here.
on_profile_written: list[Callable[[Tx, str, ProfileRecord], None]] = []
# Called with (tx, domain name, profile ids) before profiles are deleted (DeleteProfile: the
# profile and every profile merged into it, however deep), in the same transaction: what other
# packages keep about a profile (match digests, merge logs with its before-image) goes with it.
# The ids are not bounded (a profile can hold any number merged into it): a hook names them in
# statements of `store.in_lists.in_chunks`.
on_profiles_deleted: list[Callable[[Tx, str, list[str]], None]] = []
# Called with (tx, domain name, records) once per write of one or more profiles (a whole batch
# of write_profiles at once), in the same transaction and before the per-profile hooks: for
# derived rows that are cheaper written in bulk (identity resolution's match features).
on_profiles_written: list[Callable[[Tx, str, Sequence[ProfileRecord]], None]] = []
# Called with (tx, domain name, key name, digests) by AddProfileKey and DeleteProfileKey before
# they lock the profile: the advisory locks on what the values name (store.advisory's step 1,
# before the profile row: step 2). contacts serialises the links of a contact with each other
# and with its deliveries, so each sees what the one before it committed.
on_keys_changing: list[Callable[[Tx, str, str, list[bytes]], None]] = []
# Called with (tx, domain name, live profile id, key name, digests) after AddProfileKey indexed
# values for a profile, in the same transaction: contacts makes an agent's latest
# `_ctrContactId` link the one that counts, then sends on the records waiting for the contact.
on_keys_added: list[Callable[[Tx, str, str, str, list[bytes]], None]] = []
# Called with (tx, domain name, {live profile id: [(key name, digest)]}) after DeleteProfileKey,
# or the deletion of objects whose key names the object itself (objects.service
# `forget_object_keys`), took values off profiles, in the same transaction (`keys_deleted`):
# identity resolution scrubs them from the merge logs that hold them (an erased value stays
# erased). The profiles are not bounded (an expiry purge's chunk): a hook names them in
# statements of `store.in_lists.in_chunks`.
on_keys_deleted: list[Callable[[Tx, str, Mapping[str, Sequence[tuple[str, bytes]]]], None]] = []


@dataclass(frozen=True)
class SearchCriterion:
    key_name: str
    values: tuple[str, ...]


# Statements on the hot path are built once: building one costs more than running it.
_MERGED_INTO = PreparedRead(
    select(profile.c.merged_into).where(
        profile.c.domain_name == bindparam("domain_name"),
        profile.c.profile_id == bindparam("profile_id"),
    )
)
_PROFILE_BY_ID = PreparedRead(
    select(profile).where(
        profile.c.domain_name == bindparam("domain_name"),
        profile.c.profile_id == bindparam("profile_id"),
    )
)
_PROFILES_BY_IDS = PreparedRead(
    select(profile).where(
        profile.c.domain_name == bindparam("domain_name"),
        profile.c.profile_id.in_(bindparam("profile_ids", expanding=True)),
    )
)
_LIVE_VERSIONS = PreparedRead(
    select(profile.c.profile_id, profile.c.version).where(
        profile.c.domain_name == bindparam("domain_name"), profile.c.merged_into.is_(None)
    )
)
_INSERT_PROFILE = insert(profile)
_INSERT_KEYS = {
    "sqlite": sqlite_insert(profile_key).on_conflict_do_nothing(),
    "postgresql": pg_insert(profile_key).on_conflict_do_nothing(),
}

# ---------------------------------------------------------------------------- reading


def _open(cipher: DomainCipher, row: Any) -> ProfileRecord:
    payload = cipher.open_record(PROFILE_TABLE, row.profile_id, bytes(row.sealed))
    return ProfileRecord(
        profile_id=row.profile_id,
        fields=payload["fields"],
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        manual_fields=set(payload.get("manual", ())),
        field_sources=dict(payload.get("sources", {})),
        sealed_size=len(row.sealed),
    )


def _seal(
    tx: Tx,
    cipher: DomainCipher,
    domain_name: str,
    record: ProfileRecord,
    *,
    new: bool,
    may_reach: int = 0,
) -> bytes:
    """The record's sealed blob; ProfileTooLarge, and nothing written, for a profile over the
    size limit (profiles.size) that is `new` or larger than both `may_reach` and its stored
    size. A profile stored over the limit (before there was one) may still be written as long
    as it does not grow: so that it can be cut down, and a deleted object type's fields
    scrubbed from it. `may_reach` is the size of a state the profile had before, which the
    undo of a merge puts back: the limit, on new writes only, must not strand a copy stored
    before there was one in the merged profile, and the undo can make a profile no larger than
    it has been (were it not bounded, each round of merge, UpdateProfile, undo could add to it)."""
    blob = cipher.seal_record(PROFILE_TABLE, record.profile_id, record.sealed_payload())
    try:
        check_sealed(record, blob)
    except ProfileTooLarge as error:
        if new or (
            error.size > may_reach
            and error.size > _stored_size(tx, cipher, domain_name, record.profile_id)
        ):
            raise
    record.sealed_size = len(blob)
    return blob


def _stored_size(tx: Tx, cipher: DomainCipher, domain_name: str, profile_id: str) -> int:
    row = _PROFILE_BY_ID.first(tx.conn, {"domain_name": domain_name, "profile_id": profile_id})
    return 0 if row is None else profile_size(_open(cipher, row))


def resolve_profile_id(tx: Tx, *, domain_name: str, profile_id: str) -> str | None:
    """The id of the live profile `profile_id` names, following merges; None if none."""
    seen: set[str] = set()
    current = profile_id
    while current not in seen:
        seen.add(current)
        row = _MERGED_INTO.first(tx.conn, {"domain_name": domain_name, "profile_id": current})
        if row is None:
            return None
        if row.merged_into is None:
            return current
        current = row.merged_into
    return None


def absorbed_profiles(
    tx: Tx, *, domain_name: str, profile_ids: Collection[str]
) -> dict[str, set[str]]:
    """Per profile, itself and every profile merged into it, directly or through a profile
    merged into it (a merged profile keeps `merged_into` pointing at the profile it was merged
    into, even after that one is merged in turn): the customers its record already holds.

    One recursive query per chunk of ids, whatever the depth: auto-merges make chains (the
    profile just written becomes the main one), and a walk of one query per level cost every
    later auto-merge of a customer one statement more than the last. UNION, not UNION ALL, so
    the walk ends even on a cycle, which merges never make."""
    ids = sorted(set(profile_ids))
    held: dict[str, set[str]] = {pid: {pid} for pid in ids}
    for seeds in in_chunks(ids):
        tree = (
            select(profile.c.profile_id.label("root"), profile.c.profile_id.label("member"))
            .where(profile.c.domain_name == domain_name, profile.c.profile_id.in_(seeds))
            .cte("absorbed", recursive=True)
        )
        tree = tree.union(
            select(tree.c.root, profile.c.profile_id).where(
                profile.c.domain_name == domain_name, profile.c.merged_into == tree.c.member
            )
        )
        for row in tx.conn.execute(select(tree.c.root, tree.c.member)):
            held[row.root].add(row.member)
    return held


def lock_profiles(
    tx: Tx, *, domain_name: str, profile_ids: Iterable[str], wait: bool = True
) -> None:
    """Hold the profiles' rows until the transaction ends, so no other writer changes them in
    between (PostgreSQL, several processes: `SELECT ... FOR UPDATE`). Call it before reading a
    profile that will be written back, merged, or have keys or objects moved to or from it; a
    read after it sees the latest committed state. Rows are locked in id order, so two writers
    of overlapping sets queue rather than deadlock (a deadlock left by another order is run
    again: store.conflicts). Not `wait`ing, a row another transaction holds fails the statement
    at once (`store.conflicts.is_lock_unavailable`): for a transaction holding locks that the
    other may be waiting for (store.advisory). On SQLite the one writer already serialises
    every write."""
    if tx.services.database.is_sqlite:
        return
    ids = sorted(set(profile_ids))
    for chunk in in_chunks(ids):
        tx.conn.execute(
            select(profile.c.profile_id)
            .where(profile.c.domain_name == domain_name, profile.c.profile_id.in_(chunk))
            .order_by(profile.c.profile_id)
            .with_for_update(nowait=not wait)
        )


def lock_live_profile(tx: Tx, *, domain_name: str, profile_id: str) -> str | None:
    """The id of the live profile `profile_id` names (merges followed), its row locked as by
    `lock_profiles`; None when there is none. A profile merged away between finding and locking
    it leads on to the survivor, which is locked then (`resolve_locked`)."""

    def live() -> tuple[str | None, set[str]]:
        found = resolve_profile_id(tx, domain_name=domain_name, profile_id=profile_id)
        return found, set() if found is None else {found}

    return resolve_locked(tx, domain_name, live)


T = TypeVar("T")
# Rounds of resolving and locking before giving up (`ConcurrentChange`: the request runs again):
# each round finds profiles that changed while the one before waited for its locks.
LOCK_ROUNDS = 4


def resolve_locked(
    tx: Tx,
    domain_name: str,
    resolve: Callable[[], tuple[T, set[str]]],
    *,
    locked: Collection[str] = (),
    wait: bool = True,
) -> T:
    """`resolve()`'s outcome, given with the live profiles it found, whose rows it locks first
    (PostgreSQL; `lock_profiles`) so the caller reads and writes them back with nothing
    changing them in between (ingestion's key lookups, a type deletion's scrub, an
    auto-merge's group). `locked`: profiles the transaction holds already; `wait`: as for
    `lock_profiles`.

    A profile may change while its lock is awaited: merged away (its keys now lead to the
    survivor), deleted (they lead nowhere), or changed so that `resolve` no longer finds it.
    So `resolve` runs again after each lock, until it finds only profiles locked before it ran:
    it read their latest state then, and no other writer changes them before the commit.
    SQLite's single writer needs neither the lock nor the second look."""
    outcome, found = resolve()
    if tx.services.database.is_sqlite:
        return outcome
    held = set(locked)
    rounds = 0
    while not found <= held:
        if rounds == LOCK_ROUNDS:
            raise ConcurrentChange("the profiles looked up kept changing while they were locked")
        rounds += 1
        lock_profiles(tx, domain_name=domain_name, profile_ids=found - held, wait=wait)
        held |= found
        outcome, found = resolve()
    return outcome


def find_profile(tx: Tx, *, domain_name: str, profile_id: str) -> ProfileRecord | None:
    cipher = tx.cipher(domain_name)
    live_id = resolve_profile_id(tx, domain_name=domain_name, profile_id=profile_id)
    if live_id is None:
        return None
    return _read_live(tx, cipher, domain_name, live_id)


# How many merges committed between a profile id's resolution and its read `_read_live` follows.
_MERGES_FOLLOWED = 8


def _read_live(
    tx: Tx, cipher: DomainCipher, domain_name: str, live_id: str
) -> ProfileRecord | None:
    row = _PROFILE_BY_ID.first(tx.conn, {"domain_name": domain_name, "profile_id": live_id})
    # A merge committed since it was resolved (PostgreSQL, unlocked reads): the merged-away row
    # holds no fields (identity.service), the profile it merged into does. Followed a few
    # times at most: each step is a merge committed meanwhile.
    for _ in range(_MERGES_FOLLOWED):
        if row is None or row.merged_into is None:
            break
        row = _PROFILE_BY_ID.first(
            tx.conn, {"domain_name": domain_name, "profile_id": row.merged_into}
        )
    # None when another process deleted it since it was resolved (PostgreSQL, unlocked reads).
    return None if row is None or row.merged_into is not None else _open(cipher, row)


def get_profile(tx: Tx, *, domain_name: str, profile_id: str) -> ProfileRecord:
    found = find_profile(tx, domain_name=domain_name, profile_id=profile_id)
    if found is None:
        raise _no_such_profile(domain_name, profile_id)
    return found


def get_locked_profile(tx: Tx, *, domain_name: str, profile_id: str) -> ProfileRecord:
    """`get_profile` for a read that is written back: the profile's row is locked first
    (`lock_live_profile`), so no concurrent writer's change is lost in between. NotFound for a
    merged-away id, as `_locked_live_id`."""
    live_id = _locked_live_id(tx, domain_name=domain_name, profile_id=profile_id)
    found = _read_live(tx, tx.cipher(domain_name), domain_name, live_id)
    if found is None:
        raise _no_such_profile(domain_name, profile_id)
    return found


def _locked_live_id(tx: Tx, *, domain_name: str, profile_id: str) -> str:
    """`profile_id`, its row locked as by `get_locked_profile`, without reading it. A
    merged-away id is NotFound (`merged_away`), also when the merge commits while the lock is
    awaited: the write would otherwise land on the survivor, another profile than the caller's."""
    tx.cipher(domain_name)  # NotFound for an unknown domain first
    live_id = lock_live_profile(tx, domain_name=domain_name, profile_id=profile_id)
    if live_id is None:
        raise _no_such_profile(domain_name, profile_id)
    if live_id != profile_id:
        raise merged_away(domain_name, profile_id, live_id)
    return live_id


def _no_such_profile(domain_name: str, profile_id: str) -> NotFound:
    return NotFound(f"The profile {profile_id} does not exist in domain {domain_name}.")


def merged_away(domain_name: str, profile_id: str, survivor: str) -> NotFound:
    """What an AWS operation naming a merged-away profile by its id answers (module docstring)."""
    return NotFound(
        f"The profile {profile_id} no longer exists in domain {domain_name}: it was merged "
        f"into {survivor}."
    )


def get_profiles(
    tx: Tx, *, domain_name: str, profile_ids: Sequence[str]
) -> dict[str, ProfileRecord]:
    """Live profiles by requested id (merged-away ids map to their survivor); missing ids absent."""
    cipher = tx.cipher(domain_name)
    rows = {
        row.profile_id: row
        for row in _PROFILES_BY_IDS.rows(
            tx.conn, {"domain_name": domain_name, "profile_ids": sorted(set(profile_ids))}
        )
    }
    out: dict[str, ProfileRecord] = {}
    for pid in profile_ids:
        row = rows.get(pid)
        if row is None:
            continue
        if row.merged_into is None:
            out[pid] = _open(cipher, row)
        elif (survivor := find_profile(tx, domain_name=domain_name, profile_id=pid)) is not None:
            out[pid] = survivor
    return out


def profile_keys(tx: Tx, *, domain_name: str, profile_id: str) -> dict[str, list[str]]:
    """Every key value stored for a profile, by key name (for the agent's profile page)."""
    cipher = tx.cipher(domain_name)
    rows = tx.conn.execute(
        select(profile_key.c.key_name, profile_key.c.digest, profile_key.c.value_sealed).where(
            profile_key.c.domain_name == domain_name, profile_key.c.profile_id == profile_id
        )
    )
    out: dict[str, list[str]] = {}
    seen: set[tuple[str, bytes]] = set()
    # Sorted here rather than by ORDER BY key_name, which lets SQLite walk the primary key
    # (domain_name, key_name, ...) across the whole domain instead of the per-profile index.
    for row in sorted(rows, key=lambda r: (r.key_name, bytes(r.digest))):
        if (row.key_name, bytes(row.digest)) in seen:
            continue  # the same value backed by another source (one row per origin)
        seen.add((row.key_name, bytes(row.digest)))
        value = cipher.open_record(
            KEY_TABLE, key_record_id(profile_id, row.key_name, row.digest), bytes(row.value_sealed)
        )["value"]
        out.setdefault(row.key_name, []).append(value)
    return out


# ---------------------------------------------------------------------------- writing


def new_profile_id() -> str:
    return uuid.uuid4().hex


def create_profile(
    tx: Tx,
    *,
    domain_name: str,
    fields: dict[str, Any],
    manual: bool = True,
    profile_id: str | None = None,
    field_sources: dict[str, dict[str, Any]] | None = None,
) -> ProfileRecord:
    """Store a new profile. `manual` marks its fields as set by a person (CreateProfile);
    `field_sources` records which object type wrote which field (ingestion)."""
    cipher = tx.cipher(domain_name)
    record = new_profile_record(
        tx, fields=fields, manual=manual, profile_id=profile_id, field_sources=field_sources
    )
    _INSERT_PROFILE_MANY.execute(
        tx.conn,
        [
            dict(
                domain_name=domain_name,
                profile_id=record.profile_id,
                sealed=_seal(tx, cipher, domain_name, record, new=True),
                version=record.version,
                merged_into=None,
                created_at=record.created_at,
                updated_at=record.updated_at,
            )
        ],
    )
    _replace_derived_keys(tx, cipher, domain_name, record, fresh=True)
    _written(tx, domain_name, [record])
    return record


def new_profile_record(
    tx: Tx,
    *,
    fields: dict[str, Any],
    manual: bool,
    profile_id: str | None = None,
    field_sources: dict[str, dict[str, Any]] | None = None,
) -> ProfileRecord:
    """The record `create_profile` stores, built without storing it (batched ingestion
    stores many with `write_profiles`)."""
    clean = _without_empty(fields)
    return ProfileRecord(
        profile_id=profile_id or new_profile_id(),
        fields=clean,
        version=1,
        created_at=tx.now,
        updated_at=tx.now,
        manual_fields=set(_field_paths(clean)) if manual else set(),
        field_sources=dict(field_sources or {}),
    )


def update_profile(
    tx: Tx, *, domain_name: str, profile_id: str, changes: dict[str, Any], manual: bool = True
) -> ProfileRecord:
    """Apply UpdateProfile semantics (`updated_fields`) to the profile and save it."""
    record = get_locked_profile(tx, domain_name=domain_name, profile_id=profile_id)
    before = record.fields
    record.fields = updated_fields(before, changes)
    if manual:
        record.manual_fields.update(_manual_paths(before, record.fields, changes))
    if _removes_values(before, record.fields):
        # The old sealed blob and the derived key rows of the old values are overwritten and
        # deleted: on SQLite the log's frames of them go too (as DeleteProfileKey's).
        tx.erased()
    return save_profile(tx, domain_name=domain_name, record=record)


def _manual_paths(
    before: dict[str, Any], after: dict[str, Any], changes: dict[str, Any]
) -> Iterable[str]:
    """The field paths UpdateProfile `changes` mark as set by a person: those given a value,
    and those cleared ("") that held one. A cleared field stays protected from ingestion filling
    it again (spec §1.8 says a person's values are kept, and says nothing of clearing one; a
    person who removed a wrong value would see ingestion put it back), and counts to the
    profile's size (profiles.size), so that it is bounded. A path named with "" that held no
    value leaves no trace: else each UpdateProfile could add names without limit."""
    for name, value in changes.items():
        if name in PROFILE_FIELDS and value is not None:
            for path in _field_paths({name: value}):
                if holds_path(after, path) or holds_path(before, path):
                    yield path


def _removes_values(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """Whether going from `before` to `after` removes or replaces a value (not only adds)."""
    for name, value in before.items():
        now = after.get(name)
        if isinstance(value, dict) and isinstance(now, dict) and name not in WHOLE_VALUE_FIELDS:
            if any(now.get(part) != old for part, old in value.items()):
                return True
        elif now != value:
            return True
    return False


def updated_fields(fields: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A profile's fields after UpdateProfile `changes`, as a new dict: an omitted member is
    kept, "" removes the value, an address or the attributes change part by part. The agent
    pages' edit form asks it too, whether a save would leave the profile no field at all."""
    out = dict(fields)
    for name, value in changes.items():
        if name not in PROFILE_FIELDS or value is None:
            continue
        if name in ADDRESS_FIELDS or name == "Attributes":
            merged = {**out.get(name, {}), **value}
            value = {k: v for k, v in merged.items() if v != ""}
        elif name == "EngagementPreferences" and isinstance(value, dict):
            # Each list is replaced only when given (an empty one removes it): the API names
            # Phone and Email as members of the structure, and an UpdateProfile that gives one
            # says nothing of the other.
            merged = {**out.get(name, {}), **value}
            value = {k: v for k, v in merged.items() if v not in (None, [], "")}
        _set_or_clear(out, name, value)
    return out


def save_profile(
    tx: Tx, *, domain_name: str, record: ProfileRecord, may_reach: int = 0
) -> ProfileRecord:
    """Write back a changed profile and recompute its derived keys. The caller read it with
    its row locked (`get_locked_profile`, `lock_profiles`), or a concurrent change is lost.
    `may_reach`: the size of a state the profile had before (the undo of a merge), which it
    may be written up to although over the size limit (`_seal`)."""
    cipher = tx.cipher(domain_name)
    record.version += 1
    record.updated_at = tx.now
    tx.conn.execute(
        update(profile)
        .where(profile.c.domain_name == domain_name, profile.c.profile_id == record.profile_id)
        .values(
            sealed=_seal(tx, cipher, domain_name, record, new=False, may_reach=may_reach),
            version=record.version,
            updated_at=record.updated_at,
        )
    )
    _replace_derived_keys(tx, cipher, domain_name, record)
    _written(tx, domain_name, [record])
    return record


# ---------------------------------------------------------------------------- batched writing

# Ingestion writes many profiles per transaction (openprofiles.ingest.pipeline): the same rows
# create_profile / save_profile / index_profile_keys write, in one executemany per statement.
_UPDATE_PROFILE = (
    update(profile)
    .where(profile.c.domain_name == bindparam("d"), profile.c.profile_id == bindparam("p"))
    .values(sealed=bindparam("s"), version=bindparam("v"), updated_at=bindparam("u"))
)
_DELETE_DERIVED_KEY = delete(profile_key).where(
    profile_key.c.domain_name == bindparam("d"),
    profile_key.c.key_name == bindparam("k"),
    profile_key.c.digest == bindparam("g"),
    profile_key.c.profile_id == bindparam("p"),
    profile_key.c.origin == DERIVED_ORIGIN,
)

# The batched writes of write_profiles and insert_key_rows, without per-row SQLAlchemy work.
_INSERT_PROFILE_MANY = ManyWriter(_INSERT_PROFILE)
_UPDATE_PROFILE_MANY = ManyWriter(_UPDATE_PROFILE)
_DELETE_DERIVED_KEY_MANY = ManyWriter(_DELETE_DERIVED_KEY)
_INSERT_KEYS_MANY = {name: ManyWriter(statement) for name, statement in _INSERT_KEYS.items()}

DerivedKeys = dict[tuple[str, bytes], str]


def derived_keys(tx: Tx, *, domain_name: str, values: Iterable[tuple[str, str]]) -> DerivedKeys:
    """(key name, digest) -> raw value of derived keys, given `derived_key_values` output."""
    cipher = tx.cipher(domain_name)
    region = tx.settings.default_phone_region
    out: DerivedKeys = {}
    for key_name, value in values:
        normal = normalize(PREDEFINED_CONTENT_TYPES[key_name], value, phone_region=region)
        if normal:
            out[(key_name, cipher.digest(key_name, normal))] = value
    return out


def write_profiles(
    tx: Tx,
    *,
    domain_name: str,
    created: Sequence[ProfileRecord],
    updated: Sequence[tuple[ProfileRecord, DerivedKeys, DerivedKeys]],
) -> None:
    """Store new profiles and changed ones ((record, derived keys before, after)) as
    create_profile / save_profile would, the record's version and updated_at already set.
    Derived keys that did not change are left as they are rather than rewritten."""
    if not (created or updated):
        return
    cipher = tx.cipher(domain_name)
    if created:
        _INSERT_PROFILE_MANY.execute(
            tx.conn,
            [
                dict(
                    domain_name=domain_name,
                    profile_id=r.profile_id,
                    sealed=_seal(tx, cipher, domain_name, r, new=True),
                    version=r.version,
                    merged_into=None,
                    created_at=r.created_at,
                    updated_at=r.updated_at,
                )
                for r in created
            ],
        )
    if updated:
        _UPDATE_PROFILE_MANY.execute(
            tx.conn,
            [
                {
                    "d": domain_name,
                    "p": r.profile_id,
                    "s": _seal(tx, cipher, domain_name, r, new=False),
                    "v": r.version,
                    "u": r.updated_at,
                }
                for r, _, _ in updated
            ],
        )
    removed = [
        {"d": domain_name, "k": k, "g": g, "p": r.profile_id}
        for r, before, after in updated
        for (k, g), value in before.items()
        if after.get((k, g)) != value
    ]
    if removed:
        _DELETE_DERIVED_KEY_MANY.execute(tx.conn, removed)
    added = [
        (r.profile_id, k, g, value)
        for r, before, after in (
            *(
                (r, {}, derived_keys(tx, domain_name=domain_name, values=_derived_of(r)))
                for r in created
            ),
            *updated,
        )
        for (k, g), value in after.items()
        if before.get((k, g)) != value
    ]
    insert_key_rows(
        tx,
        domain_name=domain_name,
        rows=[(pid, k, g, value, DERIVED_ORIGIN) for pid, k, g, value in added],
    )
    _written(tx, domain_name, [*created, *(r for r, _, _ in updated)])


def _derived_of(record: ProfileRecord) -> Iterable[tuple[str, str]]:
    return derived_key_values(record.profile_id, record.fields)


def insert_key_rows(
    tx: Tx, *, domain_name: str, rows: Iterable[tuple[str, str, bytes, str, str]]
) -> None:
    """Index (profile id, key name, digest, raw value, origin) rows; a value the same origin
    already indexed for the profile keeps its row (other origins have rows of their own)."""
    cipher = tx.cipher(domain_name)
    _insert_keys(
        tx,
        [
            sealed_key_row(cipher, domain_name, pid, key_name, digest, value, origin)
            for pid, key_name, digest, value, origin in rows
        ],
    )


def delete_profile(tx: Tx, *, domain_name: str, profile_id: str) -> None:
    tx.erased()
    tx.cipher(domain_name)  # NotFound for an unknown domain first

    # Every profile merged into it goes too, however deep (A merged into C, then C into D):
    # each is a customer record the deleted one holds. Its row and theirs are locked before
    # anything is deleted: a concurrent writer of the profile (an ingestion that found it by a
    # key) either finishes before, and its objects and keys go with the profile, or waits and
    # then finds it gone. They are locked in one statement, in id order (store.advisory's lock
    # order), as an undo of a merge into the profile locks that merge's profiles: the two
    # queue, where locking the live row before the others deadlocked with such an undo (each
    # holding a row the other waited for). resolve_locked looks again after the lock, and locks
    # what changed meanwhile (a merge into it that committed first).
    def absorbed() -> tuple[tuple[str | None, list[str]], set[str]]:
        live = resolve_profile_id(tx, domain_name=domain_name, profile_id=profile_id)
        if live != profile_id:
            return (live, []), set()
        held = absorbed_profiles(tx, domain_name=domain_name, profile_ids=[profile_id])[profile_id]
        return (live, [profile_id, *sorted(held - {profile_id})]), held

    live_id, deleted = resolve_locked(tx, domain_name, absorbed)
    if live_id is None:
        raise _no_such_profile(domain_name, profile_id)
    if live_id != profile_id:
        # Reads follow a merge to the survivor; a delete must not: the id names a duplicate
        # that the merge already removed, and the survivor is another customer record.
        raise NotFound(
            f"The profile {profile_id} no longer exists in domain {domain_name}: it was merged "
            f"into {live_id}."
        )
    for hook in on_profiles_deleted:
        hook(tx, domain_name, deleted)
    # Their objects go with their rows (ON DELETE CASCADE).
    for ids in in_chunks(deleted):
        tx.conn.execute(
            delete(profile_key).where(
                profile_key.c.domain_name == domain_name, profile_key.c.profile_id.in_(ids)
            )
        )
        tx.conn.execute(
            delete(profile).where(
                profile.c.domain_name == domain_name, profile.c.profile_id.in_(ids)
            )
        )


def add_profile_key(
    tx: Tx,
    *,
    domain_name: str,
    profile_id: str,
    key_name: str,
    values: Sequence[str],
    origin: str = EXPLICIT_ORIGIN,
) -> str:
    """Index `values` under `key_name` for the profile; returns the live profile id.

    The predefined keys the profile's own fields give (`_phone`, `_email`, `_account`,
    `_fullName`, `_profileId`: profiles.keys) may be added too, as the model's KeyName lists
    them: a second phone number or email of the customer is the usual case. The values are
    normalised by the key's content type, as search does, and their rows are the caller's
    (`origin`), so the recomputation of the derived rows on the profile's next write keeps them,
    DeleteProfileKey removes them and a merge carries them."""
    if not values:
        raise BadRequest("Values must list at least one value to add.")
    cipher = tx.cipher(domain_name)
    # Shared with PutProfileObjectType and DeleteProfileObjectType, which re-digest the key's
    # rows when its ContentType changes: a value is written under the ContentType it ends up
    # with, never under one that changed while this ran (object_types.service). Not for a
    # predefined key, whose ContentType never changes: the agent pages' contact link adds
    # `_ctrContactId` holding profile rows, and waiting then for this lock could close a
    # cycle with a re-digest that waits for those rows.
    if key_name not in PREDEFINED_CONTENT_TYPES:
        hold_key_content_types(tx, domain_name=domain_name)
    content_type = key_content_type(tx, domain_name=domain_name, key_name=key_name)
    digests: dict[str, bytes] = {}
    for value in dict.fromkeys(values):
        normal = normalize(content_type, value, phone_region=tx.settings.default_phone_region)
        if not normal:
            raise BadRequest(f"The value given for key {key_name} is empty once normalised.")
        digests[value] = cipher.digest(key_name, normal)
    for lock in on_keys_changing:
        lock(tx, domain_name, key_name, list(digests.values()))
    # Locked, so a merge cannot move the profile's keys in between and leave this one behind;
    # a profile merged away meanwhile is NotFound.
    live_id = _locked_live_id(tx, domain_name=domain_name, profile_id=profile_id)
    if key_name == "_profileId":
        _refuse_other_profiles_ids(tx, domain_name, live_id, values)
    rows = [
        sealed_key_row(cipher, domain_name, live_id, key_name, digest, value, origin)
        for value, digest in digests.items()
    ]
    _insert_keys(tx, rows)
    for hook in on_keys_added:
        hook(tx, domain_name, live_id, key_name, [row["digest"] for row in rows])
    return live_id


def _refuse_other_profiles_ids(
    tx: Tx, domain_name: str, live_id: str, values: Sequence[str]
) -> None:
    """An added `_profileId` value is another id the profile is found by, as the id of a
    profile merged into it is: SearchProfiles finds it, and so does an object type's
    `_profileId` key when a record is ingested (a former id from the system the customer came
    from, say). AWS lists the key name as usable without saying more; the id of another profile
    of the domain (live, or merged into another) is refused: the key would name two customers.
    """
    for ids in in_chunks(sorted(set(values))):
        for row in tx.conn.execute(
            select(profile.c.profile_id).where(
                profile.c.domain_name == domain_name, profile.c.profile_id.in_(ids)
            )
        ):
            owner = resolve_profile_id(tx, domain_name=domain_name, profile_id=row.profile_id)
            if owner != live_id:
                raise BadRequest(
                    f"The value {row.profile_id} of key _profileId is the id of another profile "
                    f"of domain {domain_name}; a profile id names one profile."
                )


def index_profile_keys(
    tx: Tx,
    *,
    domain_name: str,
    profile_id: str,
    keys: Iterable[tuple[str, str, str]],
    origin: str,
) -> None:
    """Index (key name, normalised value, raw value) triples for a profile; values `origin`
    already indexed for it are kept. Ingestion's variant of AddProfileKey: the values were
    normalised by the object type's ContentTypes, and derived key names are allowed (origin is
    the type)."""
    cipher = tx.cipher(domain_name)
    rows = {}
    for key_name, normal, value in keys:
        if normal:
            row = _key_row(cipher, domain_name, profile_id, key_name, normal, value, origin)
            rows[(key_name, row["digest"])] = row
    _insert_keys(tx, list(rows.values()))


def delete_profile_key(
    tx: Tx, *, domain_name: str, profile_id: str, key_name: str, values: Sequence[str]
) -> None:
    """Remove the values from the profile's index, every source's row of them (AddProfileKey,
    object types, a merge): the caller asks for the value to be gone. Except a value of a
    derived key that the profile's own fields or id give: it would come back with the
    profile's next write, so the call is refused, naming it, and changes nothing."""
    tx.erased()
    if not values:
        raise BadRequest("Values must list at least one value to delete.")
    cipher = tx.cipher(domain_name)
    if key_name not in PREDEFINED_CONTENT_TYPES:
        hold_key_content_types(tx, domain_name=domain_name)  # as in add_profile_key
    content_type = key_content_type(tx, domain_name=domain_name, key_name=key_name)
    region = tx.settings.default_phone_region
    digests = {
        key_digest(cipher, key_name, content_type, v, phone_region=region): v for v in values
    }
    for lock in on_keys_changing:
        lock(tx, domain_name, key_name, list(digests))
    # Locked, as in add_profile_key.
    live_id = _locked_live_id(tx, domain_name=domain_name, profile_id=profile_id)
    rows = and_(
        profile_key.c.domain_name == domain_name,
        profile_key.c.profile_id == live_id,
        profile_key.c.key_name == key_name,
        profile_key.c.digest.in_(list(digests)),
    )
    if key_name in DERIVED_KEYS:
        own = tx.conn.execute(
            select(profile_key.c.digest).where(rows, profile_key.c.origin == DERIVED_ORIGIN)
        ).first()
        if own is not None:
            raise BadRequest(
                f"The value {digests[bytes(own.digest)]} of key {key_name} comes from the "
                "profile's own standard fields or id; update the profile to change it."
            )
    result = tx.conn.execute(delete(profile_key).where(rows))
    if result.rowcount == 0:
        raise NotFound(f"The profile {profile_id} has no such value for key {key_name}.")
    keys_deleted(tx, domain_name=domain_name, deleted={live_id: [(key_name, d) for d in digests]})


def keys_deleted(
    tx: Tx, *, domain_name: str, deleted: Mapping[str, Sequence[tuple[str, bytes]]]
) -> None:
    """Tell the `on_keys_deleted` hooks that values were taken off live profiles (`deleted`:
    per profile id, the (key name, digest) pairs): by DeleteProfileKey, or with erased objects
    (objects.service `forget_object_keys`), so that an erased value leaves what other packages
    keep of it (identity's merge logs) whichever way it went."""
    if deleted:
        for hook in on_keys_deleted:
            hook(tx, domain_name, deleted)


# ---------------------------------------------------------------------------- search


# Values of one search, over all its keys. The model sets no bound; the query has a term per
# value (SQLite refuses an expression of about a thousand), and AWS's own client library sends
# one value at a time (spec §4).
MAX_SEARCH_VALUES = 100


def _check_search_values(criteria: Sequence[SearchCriterion]) -> None:
    for criterion in criteria:
        if not criterion.values:
            # No condition would be no filter: every profile of the domain.
            raise BadRequest(f"Values of key {criterion.key_name} must list at least one value.")
    total = sum(len(c.values) for c in criteria)
    if total > MAX_SEARCH_VALUES:
        raise BadRequest(
            f"A search may list at most {MAX_SEARCH_VALUES} values over all its keys; this one "
            f"lists {total}."
        )


def search_profiles(
    tx: Tx,
    *,
    domain_name: str,
    criteria: Sequence[SearchCriterion],
    logical_operator: str = "OR",
    limit: int = 20,
    after: str | None = None,
) -> tuple[list[tuple[ProfileRecord, list[KeyMatch]]], str | None]:
    """Profiles matching the criteria in profile-id order, with what found each of them.

    A key of a standard object (`_assetName`, `_caseId`, ...: STANDARD_KEY_ROOTS) finds the
    profile that owns a live object carrying it (spec §1.11). Returns the page and the last
    profile id of the page when more follow (the cursor).
    """
    cipher = tx.cipher(domain_name)
    region = tx.settings.default_phone_region
    _check_search_values(criteria)
    # One (criterion index, value) pair per searched value; the query reports, per profile,
    # which pairs matched it (FoundByItems).
    pairs: list[tuple[int, str]] = []
    params: dict[str, Any] = {"domain_name": domain_name, "limit": limit + 1, "after": after}
    for index, criterion in enumerate(criteria):
        content_type = key_content_type(tx, domain_name=domain_name, key_name=criterion.key_name)
        for value in criterion.values:
            params[f"k{len(pairs)}"] = criterion.key_name
            params[f"d{len(pairs)}"] = key_digest(
                cipher, criterion.key_name, content_type, value, phone_region=region
            )
            pairs.append((index, value))
    object_pairs = tuple(
        (i, STANDARD_KEY_ROOTS[criteria[index].key_name])
        for i, (index, _) in enumerate(pairs)
        if criteria[index].key_name in STANDARD_KEY_ROOTS
    )
    if object_pairs:
        params["now"] = tx.now
    match_all = logical_operator == "AND"
    query = _search_statement(
        tuple(index for index, _ in pairs), match_all, after is not None, object_pairs
    )
    rows = query.rows(tx.conn, params)
    more = len(rows) > limit
    rows = rows[:limit]
    records = get_profiles(tx, domain_name=domain_name, profile_ids=[r.profile_id for r in rows])
    # With AND, FoundByItems is the whole request, every value of every key, as the model's
    # Profile.FoundByItems says ("all of the key-value(s) pairs that were specified in the
    # request"); with OR, each key with the values that found the profile.
    requested = [KeyMatch(c.key_name, c.values) for c in criteria]
    page = []
    for row in rows:
        found: dict[int, list[str]] = {}
        for i, (index, value) in enumerate(pairs):
            if row[i + 1]:
                found.setdefault(index, []).append(value)
        matches = (
            requested
            if match_all
            else [KeyMatch(criteria[i].key_name, tuple(v)) for i, v in sorted(found.items())]
        )
        if row.profile_id in records:
            page.append((records[row.profile_id], matches))
    return page, (rows[-1].profile_id if more and rows else None)


@functools.lru_cache(maxsize=256)
def _search_statement(
    pair_criteria: tuple[int, ...],
    match_all: bool,
    paged: bool,
    object_pairs: tuple[tuple[int, str], ...] = (),
) -> PreparedRead:
    """The search query for a shape of search (which criterion each value belongs to, and which
    values are keys of a standard object: (value index, standard object)), built once per
    shape; values, digests, domain, cursor, limit and the time are bound parameters."""
    conditions = [_pair_condition(profile_key, i) for i in range(len(pair_criteria))]
    rows: Any = profile_key
    if object_pairs:
        from openprofiles.objects.service import standard_object_key_owners

        # The profile's own keys, and the keys of the standard objects it owns.
        rows = union_all(
            select(profile_key.c.profile_id, profile_key.c.key_name, profile_key.c.digest).where(
                profile_key.c.domain_name == bindparam("domain_name"), or_(*conditions)
            ),
            standard_object_key_owners(object_pairs),
        ).subquery()
        conditions = [_pair_condition(rows, i) for i in range(len(pair_criteria))]
    flags = [func.max(case((cond, 1), else_=0)) for cond in conditions]
    query = (
        select(rows.c.profile_id, *flags)
        .group_by(rows.c.profile_id)
        .order_by(rows.c.profile_id)
        .limit(bindparam("limit"))
    )
    if not object_pairs:
        # (The union's branches select the domain's matching rows already.)
        query = query.where(profile_key.c.domain_name == bindparam("domain_name"), or_(*conditions))
    if paged:
        query = query.where(rows.c.profile_id > bindparam("after"))
    if match_all:
        # Every criterion must have matched with at least one of its values.
        for criterion in sorted(set(pair_criteria)):
            query = query.having(
                or_(*(flags[i] == 1 for i, c in enumerate(pair_criteria) if c == criterion))
            )
    return PreparedRead(query)


def _pair_condition(rows: Any, i: int) -> Any:
    """The searched value `i` (bound as k{i}, d{i}) on key rows (key_name, digest)."""
    return and_(rows.c.key_name == bindparam(f"k{i}"), rows.c.digest == bindparam(f"d{i}"))


def key_digest(
    cipher: DomainCipher, key_name: str, content_type: ContentType, value: str, *, phone_region: str
) -> bytes:
    """The blind-index digest a value of `key_name` is stored and looked up under: of its
    normal form by `content_type` (spec §1.4). A value with no normal form under it (a phone
    key's text without a digit, a value of spaces) is taken as written: AddProfileKey and
    ingestion store no such value, but a value stored while the key had another ContentType
    may be one, and must stay findable and erasable once its rows are re-digested under the new
    one (profiles.key_reindex)."""
    normal = normalize(content_type, value, phone_region=phone_region)
    return cipher.digest(key_name, normal or value)


def hold_key_content_types(tx: Tx, *, domain_name: str) -> None:
    """Keep the ContentTypes of the domain's keys from changing until the transaction ends
    (object_types.service.hold_key_content_types)."""
    from openprofiles.object_types.service import hold_key_content_types as hold

    hold(tx, domain_name=domain_name)


def key_content_type(tx: Tx, *, domain_name: str, key_name: str) -> ContentType:
    """How values of `key_name` are normalised: predefined keys have fixed types; other keys
    take the ContentType the domain's object types give them, else are compared as written."""
    from openprofiles.object_types.service import key_content_type as object_type_content_type

    predefined = PREDEFINED_CONTENT_TYPES.get(key_name)
    if predefined is not None:
        return predefined
    declared = object_type_content_type(tx, domain_name=domain_name, key_name=key_name)
    return declared or ContentType.STRING


# ---------------------------------------------------------------------------- internals


def _set_or_clear(fields: dict[str, Any], name: str, value: Any) -> None:
    if value in ("", {}, None):
        fields.pop(name, None)
    else:
        fields[name] = value


def _without_empty(fields: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if name not in PROFILE_FIELDS or value in (None, "", {}):
            continue
        if isinstance(value, dict) and name != "EngagementPreferences":
            value = {k: v for k, v in value.items() if v not in (None, "")}
            if not value:
                continue
        out[name] = value
    return out


def _field_paths(fields: dict[str, Any]) -> Iterable[str]:
    for name, value in fields.items():
        if isinstance(value, dict) and name not in WHOLE_VALUE_FIELDS:
            yield from (f"{name}.{part}" for part in value)
        else:
            yield name


@contextlib.contextmanager
def hooks_after(tx: Tx) -> Iterator[None]:
    """Hold the profile-written hooks back until the block has done all its writes.

    A hook may act on other data of the profile: identity resolution's auto-merge moves a
    profile's objects and keys to the profile it merges into. Run in the middle of a write that
    stores objects after its profile (ingestion), or that merges profiles (MergeProfiles), it
    would move what is there so far and leave the rest on a merged-away profile, or merge the
    profiles being merged a second time. The block's profiles are announced once, each in its
    last state, when the block ends without an error. Nested blocks announce with the outer one.
    """
    if tx.held_profile_writes is not None:
        yield
        return
    tx.held_profile_writes = []
    try:
        yield
        held = tx.held_profile_writes
    finally:
        tx.held_profile_writes = None
    latest: dict[tuple[str, str], ProfileRecord] = {}
    for domain_name, record in held:
        latest.pop((domain_name, record.profile_id), None)
        latest[(domain_name, record.profile_id)] = record
    for domain_name in dict.fromkeys(d for d, _ in latest):
        _written(tx, domain_name, [r for (d, _), r in latest.items() if d == domain_name])


def _written(tx: Tx, domain_name: str, records: Sequence[ProfileRecord]) -> None:
    if tx.held_profile_writes is not None:
        tx.held_profile_writes.extend((domain_name, r) for r in records)
        return
    for batch_hook in on_profiles_written:
        batch_hook(tx, domain_name, records)
    for record in records:
        for hook in on_profile_written:
            hook(tx, domain_name, record)


def key_record_id(profile_id: str, key_name: str, digest: bytes) -> str:
    return f"{profile_id}/{key_name}/{digest.hex()}"


def _key_row(
    cipher: DomainCipher,
    domain_name: str,
    profile_id: str,
    key_name: str,
    normal: str,
    value: str,
    origin: str,
) -> dict[str, Any]:
    return sealed_key_row(
        cipher, domain_name, profile_id, key_name, cipher.digest(key_name, normal), value, origin
    )


def sealed_key_row(
    cipher: DomainCipher,
    domain_name: str,
    profile_id: str,
    key_name: str,
    digest: bytes,
    value: str,
    origin: str,
) -> dict[str, Any]:
    """A profile_key row; the value is sealed bound to its profile, so a key that moves to
    another profile (a merge, an undo) is sealed again through this."""
    return {
        "domain_name": domain_name,
        "key_name": key_name,
        "digest": digest,
        "profile_id": profile_id,
        "origin": origin,
        "value_sealed": cipher.seal_record(
            KEY_TABLE, key_record_id(profile_id, key_name, digest), {"value": value}
        ),
    }


def _insert_keys(tx: Tx, rows: list[dict[str, Any]]) -> None:
    """Insert key rows, keeping the existing row where the same origin already indexed the
    same value for the profile."""
    if not rows:
        return
    _INSERT_KEYS_MANY[tx.conn.dialect.name].execute(tx.conn, rows)


def _replace_derived_keys(
    tx: Tx, cipher: DomainCipher, domain_name: str, record: ProfileRecord, *, fresh: bool = False
) -> None:
    """Index the profile's derived keys; `fresh` says it has none yet (a new profile)."""
    if not fresh:
        tx.conn.execute(
            delete(profile_key).where(
                profile_key.c.domain_name == domain_name,
                profile_key.c.profile_id == record.profile_id,
                profile_key.c.origin == DERIVED_ORIGIN,
            )
        )
    region = tx.settings.default_phone_region
    rows = {}
    for key_name, value in derived_key_values(record.profile_id, record.fields):
        normal = normalize(PREDEFINED_CONTENT_TYPES[key_name], value, phone_region=region)
        if normal:
            row = _key_row(
                cipher, domain_name, record.profile_id, key_name, normal, value, DERIVED_ORIGIN
            )
            rows[(key_name, row["digest"])] = row
    _insert_keys(tx, list(rows.values()))


def live_versions(tx: Tx, *, domain_name: str) -> dict[str, int]:
    """The version of every live profile (not merged away) of the domain: what a whole-domain
    job compares with what it computed before, to find the profiles written since."""
    return dict(_LIVE_VERSIONS.tuples(tx.conn, {"domain_name": domain_name}))  # type: ignore[arg-type]
