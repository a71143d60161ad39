"""Rules for stored profile objects: write, read, list, delete, evict, expire.

One row per (domain, object type, UNIQUE key digest) holds the sealed object; its key digests
sit in `profile_object_key` for ObjectFilter and standard-object lookups. Expired objects are
invisible to every read here and removed by `purge_expired_in`, which the server runs periodically
(spec §1.9). Writing goes through openprofiles.ingest.pipeline, which owns the ingestion rules.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement

from openprofiles.context import Tx
from openprofiles.crypto.domain_keys import DomainCipher
from openprofiles.domains.service import register_domain_table
from openprofiles.errors import NotFound
from openprofiles.normalize import ContentType, normalize
from openprofiles.object_types.service import key_content_type, on_object_type_deleted
from openprofiles.object_types.standard_objects import STANDARD_OBJECT_KEYS
from openprofiles.objects.models import ProfileObject
from openprofiles.profiles.service import (
    find_profile,
    keys_deleted,
    lock_live_profile,
    merged_away,
    resolve_locked,
    resolve_profile_id,
    save_profile,
)
from openprofiles.store.in_lists import in_chunks
from openprofiles.store.many import ManyWriter
from openprofiles.store.prepared import PreparedRead
from openprofiles.store.schema import profile_key, profile_object, profile_object_key

OBJECT_TABLE = "profile_object"

register_domain_table(profile_object)
register_domain_table(profile_object_key)


def _on_object_type_deleted(tx: Tx, domain_name: str, object_type_name: str) -> None:
    delete_objects_of_type(tx, domain_name=domain_name, object_type_name=object_type_name)


if _on_object_type_deleted not in on_object_type_deleted:
    on_object_type_deleted.append(_on_object_type_deleted)


@dataclass(frozen=True)
class DeletedObject:
    """An object a deletion removed, as the objects-deleted hooks are given it."""

    domain_name: str
    object_type_name: str
    # The profile it was on when it was deleted.
    profile_id: str
    unique_digest: bytes
    # The (key name, digest) pairs it carried: its `profile_object_key` rows.
    keys: tuple[tuple[str, bytes], ...]


# Called by every deletion of objects (DeleteProfileObject, expiry, eviction and
# DeleteProfileObjectType all go through `_delete_rows`) with (tx, the deleted objects), once
# their rows are gone: for what another package keeps about an object (a contact record's
# `_ctrContactId` and the delivery it was stored from: contacts.erasure).
_OBJECTS_DELETED: list[Callable[[Tx, Sequence[DeletedObject]], None]] = []


def register_objects_deleted(hook: Callable[[Tx, Sequence[DeletedObject]], None]) -> None:
    """Have every deletion of objects call `hook(tx, deleted)` in its transaction."""
    if hook not in _OBJECTS_DELETED:
        _OBJECTS_DELETED.append(hook)


def record_id(object_type_name: str, unique_digest: bytes) -> str:
    """The sealing identity of an object row (not its profile: an object may move)."""
    return f"{object_type_name}/{unique_digest.hex()}"


def _visible(now: Any) -> ColumnElement[bool]:
    return or_(profile_object.c.expires_at.is_(None), profile_object.c.expires_at > now)


def _pk(domain_name: Any, object_type_name: Any, unique_digest: Any) -> ColumnElement[bool]:
    return and_(
        profile_object.c.domain_name == domain_name,
        profile_object.c.object_type_name == object_type_name,
        profile_object.c.unique_digest == unique_digest,
    )


# The statements every ingestion runs, built once: building a SQLAlchemy expression costs more
# than executing it on SQLite (benchmarks/ingest.py).
_PK_PARAMS = _pk(bindparam("d"), bindparam("t"), bindparam("u"))
_FIND = PreparedRead(select(profile_object).where(_PK_PARAMS, _visible(bindparam("now"))))
_STORED = PreparedRead(
    select(
        profile_object.c.unique_digest, profile_object.c.profile_id, profile_object.c.expires_at
    ).where(
        profile_object.c.domain_name == bindparam("d"),
        profile_object.c.object_type_name == bindparam("t"),
        profile_object.c.unique_digest.in_(bindparam("us", expanding=True)),
    )
)
_INSERT = insert(profile_object)
_INSERT_KEYS = insert(profile_object_key)
_REPLACE = (
    update(profile_object)
    .where(_PK_PARAMS)
    .values(
        profile_id=bindparam("p"),
        sealed=bindparam("s"),
        size=bindparam("n"),
        updated_at=bindparam("ua"),
        expires_at=bindparam("ea"),
        source_last_updated=bindparam("sl"),
        contact_start=bindparam("cs"),
        # Kept unless the row starts a new life (an expired row replaced): with created_at, the
        # object's place in ListProfileObjects (`list_profile_objects_as_stored`), which a
        # write of the object again must not move.
        write_order=func.coalesce(
            bindparam("wo", type_=profile_object.c.write_order.type), profile_object.c.write_order
        ),
        created_at=func.coalesce(
            bindparam("ca", type_=profile_object.c.created_at.type), profile_object.c.created_at
        ),
    )
)
_DELETE_KEYS = delete(profile_object_key).where(
    profile_object_key.c.domain_name == bindparam("d"),
    profile_object_key.c.object_type_name == bindparam("t"),
    profile_object_key.c.unique_digest == bindparam("u"),
)
# The batched writes of the pipeline (write_objects), without per-row SQLAlchemy work.
_INSERT_MANY = ManyWriter(_INSERT)
_INSERT_KEYS_MANY = ManyWriter(_INSERT_KEYS)
_REPLACE_MANY = ManyWriter(_REPLACE)
_DELETE_KEYS_MANY = ManyWriter(_DELETE_KEYS)
# No expiry condition: an upper bound is all the check needs, counted from
# ix_profile_object_profile alone. (Before migration 0034 that index lacked expires_at, and
# checking it read every object's table row: 10 random row reads per ingested object in
# benchmarks/ingest.py.)
_COUNT_BOUND_BY_PROFILE = PreparedRead(
    select(profile_object.c.profile_id, func.count())
    .where(
        profile_object.c.domain_name == bindparam("d"),
        profile_object.c.profile_id.in_(bindparam("ps", expanding=True)),
    )
    .group_by(profile_object.c.profile_id)
)
_COUNT_BY_TYPE = PreparedRead(
    select(profile_object.c.object_type_name, func.count())
    .where(
        profile_object.c.domain_name == bindparam("d"),
        profile_object.c.profile_id == bindparam("p"),
        _visible(bindparam("now")),
    )
    .group_by(profile_object.c.object_type_name)
)


def open_object(cipher: DomainCipher, row: Any) -> str:
    payload = cipher.open_record(
        OBJECT_TABLE, record_id(row.object_type_name, bytes(row.unique_digest)), bytes(row.sealed)
    )
    return str(payload["object"])


def _to_record(cipher: DomainCipher, row: Any) -> ProfileObject:
    return ProfileObject(
        object_type_name=row.object_type_name,
        unique_key=bytes(row.unique_digest).hex(),
        profile_id=row.profile_id,
        object_json=open_object(cipher, row),
        created_at=row.created_at,
        updated_at=row.updated_at,
        expires_at=row.expires_at,
        contact_start=row.contact_start,
        write_order=row.write_order,
    )


def find_object(
    tx: Tx, *, domain_name: str, object_type_name: str, unique_digest: bytes
) -> ProfileObject | None:
    """The live (unexpired) object with this UNIQUE digest, or None."""
    row = _FIND.first(
        tx.conn, {"d": domain_name, "t": object_type_name, "u": unique_digest, "now": tx.now}
    )
    return _to_record(tx.cipher(domain_name), row) if row else None


@dataclass(frozen=True)
class ObjectWrite:
    """One object to store: inserted, or replacing the row with the same UNIQUE digest."""

    unique_digest: bytes
    profile_id: str
    object_json: str
    expires_at: datetime | None
    source_last_updated: datetime | None
    key_digests: tuple[tuple[str, bytes], ...]
    # The InitiationTimestamp of a contact record (contacts.records.contact_start).
    contact_start: datetime | None = None


def stored_objects(
    tx: Tx, *, domain_name: str, object_type_name: str, unique_digests: Iterable[bytes]
) -> dict[bytes, tuple[str, datetime | None]]:
    """UNIQUE digest -> (profile id, expires_at) of the stored rows among `unique_digests`,
    expired ones included (they are replaced in place, not inserted again)."""
    out: dict[bytes, tuple[str, datetime | None]] = {}
    wanted = sorted(set(unique_digests))
    for chunk in in_chunks(wanted):
        rows = _STORED.rows(tx.conn, {"d": domain_name, "t": object_type_name, "us": chunk})
        out.update({bytes(r.unique_digest): (r.profile_id, r.expires_at) for r in rows})
    return out


def object_count_bounds(tx: Tx, *, domain_name: str, profile_ids: Iterable[str]) -> dict[str, int]:
    """Stored objects (all types) per profile, expired ones not purged yet included: an upper
    bound of the live count, for telling quickly that a profile is far from the per-profile
    quota (spec §1.9). Near it, count exactly (`count_objects_by_type`)."""
    out: dict[str, int] = {}
    wanted = sorted(set(profile_ids))
    for chunk in in_chunks(wanted):
        rows = _COUNT_BOUND_BY_PROFILE.tuples(tx.conn, {"d": domain_name, "ps": chunk})
        out.update({r[0]: int(r[1]) for r in rows})
    return out


def write_objects(
    tx: Tx,
    *,
    domain_name: str,
    object_type_name: str,
    writes: Sequence[ObjectWrite],
    stored: Mapping[bytes, tuple[str, datetime | None]],
) -> None:
    """Insert the objects, or replace the stored rows (`stored`, from `stored_objects`) with the
    same UNIQUE digest wholesale (spec §1.5), moving them to their new profile; one executemany
    per statement. An expired row not purged yet is replaced as a new object. `writes` are in
    the order they were made: each new row's write_order follows the transaction's previous
    ones; a replaced row keeps its created_at and write_order, where it was first stored."""
    if not writes:
        return
    cipher = tx.cipher(domain_name)
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    keys: list[dict[str, Any]] = []
    for w in writes:
        sealed = cipher.seal_record(
            OBJECT_TABLE, record_id(object_type_name, w.unique_digest), {"object": w.object_json}
        )
        tx.objects_written += 1
        row = {
            "profile_id": w.profile_id,
            "sealed": sealed,
            "size": len(w.object_json),
            "updated_at": tx.now,
            "expires_at": w.expires_at,
            "source_last_updated": w.source_last_updated,
            "contact_start": w.contact_start,
            "write_order": tx.objects_written,
        }
        previous = stored.get(w.unique_digest)
        if previous is None:
            inserts.append(
                {
                    "domain_name": domain_name,
                    "object_type_name": object_type_name,
                    "unique_digest": w.unique_digest,
                    "created_at": tx.now,
                    **row,
                }
            )
        else:
            expired = previous[1] is not None and previous[1] <= tx.now
            updates.append(
                {
                    "d": domain_name,
                    "t": object_type_name,
                    "u": w.unique_digest,
                    "p": row["profile_id"],
                    "s": sealed,
                    "n": row["size"],
                    "ua": tx.now,
                    "ea": w.expires_at,
                    "sl": w.source_last_updated,
                    "cs": w.contact_start,
                    # An expired row not purged yet: the object starts a new life. Otherwise
                    # it keeps its place in the order objects were first stored in.
                    "wo": row["write_order"] if expired else None,
                    "ca": tx.now if expired else None,
                }
            )
        keys.extend(
            {
                "domain_name": domain_name,
                "object_type_name": object_type_name,
                "unique_digest": w.unique_digest,
                "key_name": name,
                "digest": digest,
            }
            for name, digest in dict.fromkeys(w.key_digests)
        )
    if inserts:
        _INSERT_MANY.execute(tx.conn, inserts)
    if updates:
        _REPLACE_MANY.execute(tx.conn, updates)
        _DELETE_KEYS_MANY.execute(
            tx.conn, [{"d": u["d"], "t": u["t"], "u": u["u"]} for u in updates]
        )
    if keys:
        _INSERT_KEYS_MANY.execute(tx.conn, keys)


def write_object(
    tx: Tx,
    *,
    domain_name: str,
    object_type_name: str,
    unique_digest: bytes,
    profile_id: str,
    object_json: str,
    expires_at: datetime | None,
    source_last_updated: datetime | None,
    key_digests: Iterable[tuple[str, bytes]],
    contact_start: datetime | None = None,
) -> bool:
    """Insert the object, or replace the one with the same UNIQUE digest wholesale (spec §1.5),
    moving it to `profile_id` if it now resolves elsewhere. Returns True when it is new."""
    stored = stored_objects(
        tx,
        domain_name=domain_name,
        object_type_name=object_type_name,
        unique_digests=[unique_digest],
    )
    write_objects(
        tx,
        domain_name=domain_name,
        object_type_name=object_type_name,
        writes=[
            ObjectWrite(
                unique_digest=unique_digest,
                profile_id=profile_id,
                object_json=object_json,
                expires_at=expires_at,
                source_last_updated=source_last_updated,
                key_digests=tuple(key_digests),
                contact_start=contact_start,
            )
        ],
        stored=stored,
    )
    previous = stored.get(unique_digest)
    return previous is None or (previous[1] is not None and previous[1] <= tx.now)


# The system id of each standard object (no mapping may target it, spec §1.3) and its key.
SYSTEM_ID_FIELDS: Mapping[str, str] = {"_asset": "AssetId", "_case": "CaseId", "_order": "OrderId"}
SYSTEM_ID_KEYS: Mapping[str, str] = {"_asset": "_assetId", "_case": "_caseId", "_order": "_orderId"}


def merge_standard_object(
    tx: Tx,
    *,
    domain_name: str,
    root: str,
    unique_digest: bytes,
    profile_id: str,
    values: dict[str, Any],
    expires_at: datetime | None,
    key_digests: Iterable[tuple[str, bytes]],
    system_id: str | None = None,
) -> None:
    """Accumulate `values` into a standard object (`_asset`, ...): each ingestion updates only
    the fields it carries (spec §1.8). The ingested keys are added, never dropped; the standard
    keys (STANDARD_OBJECT_KEYS) follow the fields they come from. `system_id` becomes the
    object's AssetId/CaseId/OrderId unless it has one (it is set once, like a ProfileId)."""
    current = find_object(
        tx, domain_name=domain_name, object_type_name=root, unique_digest=unique_digest
    )
    fields: dict[str, Any] = json.loads(current.object_json) if current else {}
    content_types: dict[str, ContentType] = {}
    before = _standard_key_digests(tx, domain_name, root, fields, content_types)
    known: set[tuple[str, bytes]] = set()
    if current is not None:
        known = {
            (r.key_name, bytes(r.digest))
            for r in tx.conn.execute(
                select(profile_object_key.c.key_name, profile_object_key.c.digest).where(
                    profile_object_key.c.domain_name == domain_name,
                    profile_object_key.c.object_type_name == root,
                    profile_object_key.c.unique_digest == unique_digest,
                )
            )
        }
    id_field = SYSTEM_ID_FIELDS.get(root)
    if system_id and id_field and not fields.get(id_field):
        fields = {id_field: system_id, **fields}
    _deep_merge(fields, values)
    after = _standard_key_digests(tx, domain_name, root, fields, content_types)
    write_object(
        tx,
        domain_name=domain_name,
        object_type_name=root,
        unique_digest=unique_digest,
        profile_id=profile_id,
        object_json=json.dumps(fields, separators=(",", ":"), ensure_ascii=False),
        expires_at=expires_at,
        source_last_updated=None,
        # A standard key whose field changed no longer finds the object (a renamed asset is
        # not found by its old name).
        key_digests=[*(known - before), *after, *key_digests],
    )


def _standard_key_digests(
    tx: Tx,
    domain_name: str,
    root: str,
    fields: Mapping[str, Any],
    content_types: dict[str, ContentType],
) -> set[tuple[str, bytes]]:
    """The standard keys' digests of a standard object's fields, normalised as
    ListProfileObjects normalises an ObjectFilter on that key (`content_types` caches the
    domain's answer for the call)."""
    out: set[tuple[str, bytes]] = set()
    for key_name, field in STANDARD_OBJECT_KEYS.get(root, {}).items():
        value = fields.get(field)
        if not isinstance(value, str) or not value:
            continue
        if key_name not in content_types:
            content_types[key_name] = (
                key_content_type(tx, domain_name=domain_name, key_name=key_name)
                or ContentType.STRING
            )
        normalised = normalize(
            content_types[key_name], value, phone_region=tx.settings.default_phone_region
        )
        if normalised:
            out.add((key_name, tx.cipher(domain_name).digest(key_name, normalised)))
    return out


def _deep_merge(into: dict[str, Any], values: dict[str, Any]) -> None:
    for name, value in values.items():
        if isinstance(value, dict) and isinstance(into.get(name), dict):
            _deep_merge(into[name], value)
        elif value not in ("", None, {}, []):
            into[name] = value


# An object key row joined to the object that carries it (the object decides liveness).
_KEYS_WITH_THEIR_OBJECT = profile_object_key.join(
    profile_object,
    and_(
        profile_object.c.domain_name == profile_object_key.c.domain_name,
        profile_object.c.object_type_name == profile_object_key.c.object_type_name,
        profile_object.c.unique_digest == profile_object_key.c.unique_digest,
    ),
)


def find_objects_by_keys(
    tx: Tx, *, domain_name: str, object_type_name: str, key_digests: Sequence[tuple[str, bytes]]
) -> set[bytes]:
    """UNIQUE digests of the live objects of a type that carry any of the given keys."""
    if not key_digests:
        return set()
    query = (
        select(profile_object_key.c.unique_digest)
        .select_from(_KEYS_WITH_THEIR_OBJECT)
        .where(
            profile_object_key.c.domain_name == domain_name,
            profile_object_key.c.object_type_name == object_type_name,
            or_(
                *(
                    and_(profile_object_key.c.key_name == n, profile_object_key.c.digest == d)
                    for n, d in key_digests
                )
            ),
            _visible(tx.now),
        )
        .distinct()
    )
    return {bytes(r.unique_digest) for r in tx.conn.execute(query)}


def standard_object_key_owners(object_pairs: Sequence[tuple[int, str]]) -> Select[Any]:
    """(profile_id, key_name, digest) of the keys of the domain's live standard objects that
    SearchProfiles (openprofiles.profiles.service) looks for: for each (i, standard object) of
    `object_pairs`, the searched key and digest bound as k{i} and d{i}; `domain_name` and `now`
    are bound too."""
    return (
        select(
            profile_object.c.profile_id, profile_object_key.c.key_name, profile_object_key.c.digest
        )
        .select_from(_KEYS_WITH_THEIR_OBJECT)
        .where(
            profile_object_key.c.domain_name == bindparam("domain_name"),
            or_(
                *(
                    and_(
                        profile_object_key.c.object_type_name == root,
                        profile_object_key.c.key_name == bindparam(f"k{i}"),
                        profile_object_key.c.digest == bindparam(f"d{i}"),
                    )
                    for i, root in object_pairs
                )
            ),
            _visible(bindparam("now")),
        )
    )


def count_objects_by_type(tx: Tx, *, domain_name: str, profile_id: str) -> dict[str, int]:
    rows = _COUNT_BY_TYPE.tuples(tx.conn, {"d": domain_name, "p": profile_id, "now": tx.now})
    return {r[0]: int(r[1]) for r in rows}


# The order objects were written in: by time, then, for the rows one transaction wrote (they
# share its time), in the order it wrote them; the random UNIQUE digest only breaks the ties of
# rows written before write_order was kept (migration 0030). A row written again keeps the
# write_order it was first stored with (`write_objects`), so among the rows of one transaction
# those it wrote again come in the order they were first stored in, after or before its new ones.
_WRITTEN = (
    profile_object.c.updated_at,
    profile_object.c.write_order,
    profile_object.c.unique_digest,
)

# Where a listing newest first resumes: the last object's (updated_at, write_order, digest).
WrittenAfter = tuple[datetime, int, bytes]


def evict_oldest(tx: Tx, *, domain_name: str, profile_id: str, object_type_name: str) -> bool:
    """Delete the profile's least recently written object of the type (of those written in one
    transaction, the first written); False if it has none."""
    row = tx.conn.execute(
        select(profile_object.c.unique_digest)
        .where(
            profile_object.c.domain_name == domain_name,
            profile_object.c.profile_id == profile_id,
            profile_object.c.object_type_name == object_type_name,
            _visible(tx.now),
        )
        .order_by(*_WRITTEN)
        .limit(1)
    ).first()
    if row is None:
        return False
    # Not an erasure (`_delete_rows`' `erases`): the quota making room for a newer object, as
    # an object's replacement overwrites the older one. Emptying SQLite's log after every such
    # write would hold writers off twice a second under a steady load that fills profiles.
    _delete_rows(tx, _pk(domain_name, object_type_name, bytes(row.unique_digest)), erases=False)
    return True


def list_profile_objects(
    tx: Tx,
    *,
    domain_name: str,
    object_type_name: str,
    profile_id: str,
    key_filter: tuple[str, Sequence[bytes]] | None = None,
    limit: int,
    after: WrittenAfter | None = None,
) -> tuple[list[ProfileObject], bool]:
    """A profile's live objects of a type, newest write first (the reverse of the order
    eviction takes them in); the flag says whether more follow. An object written again moves
    to the front: ListProfileObjects pages by `list_profile_objects_as_stored` instead."""
    cipher = tx.cipher(domain_name)
    query = (
        _profile_listing(tx, domain_name, object_type_name, profile_id, key_filter)
        .order_by(*(column.desc() for column in _WRITTEN))
        .limit(limit + 1)
    )
    if after is not None:
        query = query.where(_listed_after(after, _WRITTEN))
    rows = list(tx.conn.execute(query))
    return [_to_record(cipher, r) for r in rows[:limit]], len(rows) > limit


# ListProfileObjects' order, newest first (spec §4 leaves it open): when each object was first
# stored, then, for those one transaction stored (they share its time), the order it stored them
# in; the UNIQUE digest breaks the ties of rows stored before write_order was kept (migration
# 0030). Not the time it was last written (`_WRITTEN`): a write of an object again (a changed
# version, or the same one: it renews the retention and counts as its latest write for eviction,
# spec §1.9) then moved it to the front, and a caller paging through the listing while that
# happened never saw it, as it had left the pages to come for one already read. No write changes
# this place (`write_objects` keeps created_at and write_order when it replaces a row), so each
# object that lasts through a paged listing is listed exactly once, in the version current when
# its page was read; one stored meanwhile is not listed (it is newer than the first page). An
# expired row replaced is a new object (spec §1.9) and takes a new place; it was not listed.
_FIRST_STORED = (
    profile_object.c.created_at,
    profile_object.c.write_order,
    profile_object.c.unique_digest,
)

# Where a listing in `_FIRST_STORED` order resumes: the last object's (created_at, write_order,
# digest).
StoredAfter = tuple[datetime, int, bytes]


def list_profile_objects_as_stored(
    tx: Tx,
    *,
    domain_name: str,
    object_type_name: str,
    profile_id: str,
    key_filter: tuple[str, Sequence[bytes]] | None = None,
    limit: int,
    after: StoredAfter | None = None,
) -> tuple[list[ProfileObject], bool]:
    """A profile's live objects of a type in ListProfileObjects' order, newest first stored
    first (`_FIRST_STORED`); the flag says whether more follow.

    ix_profile_object_profile finds the profile's objects of the type (at most its
    MaxProfileObjectCount) but holds no created_at: their places are sorted, and only the
    page's rows are read whole (their keys, not every sealed object, go through the sort)."""
    cipher = tx.cipher(domain_name)
    place = _profile_listing(tx, domain_name, object_type_name, profile_id, key_filter)
    if after is not None:
        place = place.where(_listed_after(after, _FIRST_STORED))
    # The page's places, then its rows by primary key, in one statement (one snapshot on
    # PostgreSQL too). Joined as a table rather than `IN (...)`: its LIMIT keeps PostgreSQL from
    # flattening it, so it is planned on its own, estimated at a page of rows, and those are
    # looked up by primary key (unless the domain holds so few objects of the type that reading
    # them all is cheaper).
    page = (
        place.with_only_columns(profile_object.c.unique_digest)
        .order_by(*(column.desc() for column in _FIRST_STORED))
        .limit(limit + 1)
        .subquery("page")
    )
    query = (
        select(profile_object)
        .join(
            page,
            and_(
                profile_object.c.domain_name == domain_name,
                profile_object.c.object_type_name == object_type_name,
                profile_object.c.unique_digest == page.c.unique_digest,
            ),
        )
        .order_by(*(column.desc() for column in _FIRST_STORED))
    )
    rows = list(tx.conn.execute(query))
    return [_to_record(cipher, r) for r in rows[:limit]], len(rows) > limit


def _listed_after(after: tuple[datetime, int, bytes], columns: tuple[Any, Any, Any]) -> Any:
    """The rows after `after` in a newest-first listing ordered by `columns` (a time, a
    transaction's write order, the UNIQUE digest), each descending. Each column is compared on
    its own (not as a row value), so each value is bound with its column's type (UtcDateTime)."""
    (time, order, digest), (by_time, by_order, by_digest) = after, columns
    return or_(
        by_time < time,
        and_(by_time == time, or_(by_order < order, and_(by_order == order, by_digest < digest))),
    )


# Where a listing of contact records resumes: the last one's (contact start, UNIQUE digest).
ContactAfter = tuple[datetime | None, bytes]


def list_profile_contacts(
    tx: Tx,
    *,
    domain_name: str,
    object_type_name: str,
    profile_id: str,
    key_filter: tuple[str, Sequence[bytes]] | None = None,
    limit: int,
    after: ContactAfter | None = None,
) -> tuple[list[ProfileObject], bool]:
    """A profile's live objects of a contact-record type, newest contact first: by contact start
    descending, then UNIQUE digest descending (a fixed order, so pages neither repeat nor skip a
    record); those without a start after all the others, by UNIQUE digest descending. The flag
    says whether more follow. Only the page's objects are opened.

    Two queries rather than one ordering with NULLS LAST, which SQLite lacks. Each reads the
    profile's objects of the type from ix_profile_object_profile and sorts them: at most
    MaxProfileObjectCount rows, where an index in contact order cost every ingested record
    more (migration 0024).
    """
    cipher = tx.cipher(domain_name)
    base = _profile_listing(tx, domain_name, object_type_name, profile_id, key_filter)
    start, digest = profile_object.c.contact_start, profile_object.c.unique_digest
    rows: list[Any] = []
    if after is None or after[0] is not None:
        dated = (
            base.where(start.is_not(None)).order_by(start.desc(), digest.desc()).limit(limit + 1)
        )
        if after is not None:
            dated = dated.where(or_(start < after[0], and_(start == after[0], digest < after[1])))
        rows = list(tx.conn.execute(dated))
    if len(rows) <= limit:
        undated = base.where(start.is_(None)).order_by(digest.desc()).limit(limit + 1 - len(rows))
        if after is not None and after[0] is None:
            undated = undated.where(digest < after[1])
        rows.extend(tx.conn.execute(undated))
    return [_to_record(cipher, r) for r in rows[:limit]], len(rows) > limit


def _profile_listing(
    tx: Tx,
    domain_name: str,
    object_type_name: str,
    profile_id: str,
    key_filter: tuple[str, Sequence[bytes]] | None,
) -> Select[Any]:
    """The profile's live objects of the type (carrying one of the key's digests, given a
    filter), unordered; NotFound when the profile does not exist."""
    live_id = resolve_profile_id(tx, domain_name=domain_name, profile_id=profile_id)
    if live_id is None:
        raise NotFound(f"The profile {profile_id} does not exist in domain {domain_name}.")
    if live_id != profile_id:
        # Its objects are the survivor's now; a merged-away id names no profile
        # (profiles.service docstring). The agent pages pass the survivor's id.
        raise merged_away(domain_name, profile_id, live_id)
    query = select(profile_object).where(
        profile_object.c.domain_name == domain_name,
        profile_object.c.profile_id == live_id,
        profile_object.c.object_type_name == object_type_name,
        _visible(tx.now),
    )
    if key_filter is not None:
        key_name, digests = key_filter
        query = query.where(
            select(profile_object_key.c.digest)
            .where(
                profile_object_key.c.domain_name == profile_object.c.domain_name,
                profile_object_key.c.object_type_name == profile_object.c.object_type_name,
                profile_object_key.c.unique_digest == profile_object.c.unique_digest,
                profile_object_key.c.key_name == key_name,
                profile_object_key.c.digest.in_(list(digests)),
            )
            .exists()
        )
    return query


def delete_profile_object(
    tx: Tx, *, domain_name: str, object_type_name: str, profile_id: str, unique_key: str
) -> None:
    tx.cipher(domain_name)  # NotFound for an unknown domain first
    missing = NotFound(
        f"The profile object {unique_key} of type {object_type_name} does not exist "
        f"on profile {profile_id}."
    )
    try:
        unique_digest = bytes.fromhex(unique_key)
    except ValueError:
        raise missing from None
    # Locked (PostgreSQL) so a merge moving the profile's objects cannot commit in between and
    # leave the object on the survivor, stripped of its keys, while this answers success. A
    # merged-away id names no profile (profiles.service docstring), also when the merge
    # committed while the lock was awaited.
    live_id = lock_live_profile(tx, domain_name=domain_name, profile_id=profile_id)
    if live_id is not None and live_id != profile_id:
        raise merged_away(domain_name, profile_id, live_id)
    condition = and_(
        _pk(domain_name, object_type_name, unique_digest),
        profile_object.c.profile_id == live_id,
        _visible(tx.now),
    )
    if live_id is None or tx.conn.execute(select(func.count()).where(condition)).scalar() == 0:
        raise missing
    _delete_rows(tx, condition)


# Expired objects deleted per transaction by the periodic purge (`purge_expired_in`):
# `_delete_rows` holds what it deletes in memory (keys included), a purge after a long stop can
# find a great many, and each chunk's transaction holds SQLite's one writer (PostgreSQL: the
# chunk's row locks) only for that chunk.
PURGE_CHUNK = 500

# The order the purge goes through expired objects: ix_profile_object_expires's columns, the
# expiry then the primary key, so each object has one place in it and a chunk starts right
# after the last one purged (a keyset cursor), whatever number of objects share an expiry.
_EXPIRY_ORDER = (
    profile_object.c.expires_at,
    profile_object.c.domain_name,
    profile_object.c.object_type_name,
    profile_object.c.unique_digest,
)


@dataclass(frozen=True)
class ExpiryPlace:
    """An object's place in `_EXPIRY_ORDER`: a purge's chunk starts after the last one's."""

    expires_at: datetime
    domain_name: str
    object_type_name: str
    unique_digest: bytes

    @classmethod
    def of(cls, row: Any) -> ExpiryPlace:
        return cls(row.expires_at, row.domain_name, row.object_type_name, bytes(row.unique_digest))

    def value(self) -> ColumnElement[Any]:
        """The place as a row value, to compare with `tuple_(*_EXPIRY_ORDER)`."""
        values = (self.expires_at, self.domain_name, self.object_type_name, self.unique_digest)
        return tuple_(
            *(literal(v, column.type) for column, v in zip(_EXPIRY_ORDER, values, strict=True))
        )


def purge_expired_chunk(
    tx: Tx, now: datetime, after: ExpiryPlace | None = None, *, limit: int | None = None
) -> tuple[int, ExpiryPlace | None]:
    """Remove the next `limit` (default PURGE_CHUNK) objects (all domains) whose retention ended
    at or before `now`, those after `after` in `_EXPIRY_ORDER`: how many went, and where the
    next chunk starts (None: no expired object is left after these).

    The chunk is read from ix_profile_object_expires starting after `after`, so no chunk reads
    the entries of the rows purged before it (on PostgreSQL those stay in the index until a
    vacuum), however many share an expiry. The cursor, not how many went, ends the purge: a
    chunk another server's purge took first deletes none."""
    limit = PURGE_CHUNK if limit is None else limit
    place = tuple_(*_EXPIRY_ORDER)
    query = (
        select(*_EXPIRY_ORDER)
        .where(profile_object.c.expires_at <= now)
        .order_by(*_EXPIRY_ORDER)
        .limit(limit)
    )
    if after is not None:
        query = query.where(place > after.value())
    rows = tx.conn.execute(query).all()
    if not rows:
        return 0, None
    first, last = ExpiryPlace.of(rows[0]), ExpiryPlace.of(rows[-1])
    # Deleted by their primary keys within their range in that order. The range ends at `last`,
    # expired by `now`: it is also the check that each is still expired (on PostgreSQL a write
    # since may have renewed one). Both, for each planner: SQLite may scan the index over the
    # range, bounded on both sides (not with `expires_at <= now` beside it, which it would take
    # for the end of the scan, reading every expired object after the chunk); PostgreSQL
    # estimates a row comparison by its first column, the whole table when all share one
    # expiry, and looks the keys up instead.
    by_type: dict[tuple[str, str], list[bytes]] = {}
    for row in rows:
        by_type.setdefault((row.domain_name, row.object_type_name), []).append(
            bytes(row.unique_digest)
        )
    keys = or_(
        *(
            and_(
                profile_object.c.domain_name == domain_name,
                profile_object.c.object_type_name == type_name,
                profile_object.c.unique_digest.in_(digests),
            )
            for (domain_name, type_name), digests in by_type.items()
        )
    )
    purged = _delete_rows(tx, and_(place >= first.value(), place <= last.value(), keys))
    return purged, (last if len(rows) == limit else None)


def purge_expired_in(
    transaction: Callable[[], AbstractContextManager[Tx]],
    now: datetime | None = None,
    *,
    limit: int | None = None,
) -> int:
    """Remove every object whose retention ended at or before `now` (default: the first
    transaction's clock), a chunk (`purge_expired_chunk`) in each transaction `transaction()`
    opens; how many went. The server's purge opens a write for each (objects.expiry): other
    writes go in between, and what committed stays purged if a later chunk fails."""
    purged = 0
    after: ExpiryPlace | None = None
    while True:
        with transaction() as tx:
            now = tx.now if now is None else now
            count, after = purge_expired_chunk(tx, now, after, limit=limit)
        purged += count
        if after is None:
            return purged


def purge_expired(tx: Tx, now: datetime) -> int:
    """Remove every object whose retention ended at or before `now` within the transaction
    `tx`, a chunk at a time; how many went."""
    return purge_expired_in(lambda: nullcontext(tx), now)


# MeteringProfileCount (model): "If you have more than 100 objects associated with a single
# profile, that profile counts as two profiles. If you have more than 200 objects, that profile
# counts as three, and so on."
METERED_OBJECTS_PER_PROFILE = 100


@dataclass(frozen=True)
class ObjectUsage:
    """The domain's live objects, for DomainStats."""

    count: int
    # Total submitted size.
    size: int
    # How many more profiles than it has the domain is metered for: a profile with n live
    # objects counts (n - 1) // METERED_OBJECTS_PER_PROFILE times more than once.
    extra_metered_profiles: int


def object_usage(tx: Tx, *, domain_name: str) -> ObjectUsage:
    """Count, size and extra metered profiles of the domain's live objects, in one pass over
    ix_profile_object_profile (domain, profile, ..., expires_at, size) that reads no table row:
    the objects are counted per profile in index order, and the counts summed."""
    per_profile = (
        select(func.count().label("n"), func.sum(profile_object.c.size).label("size"))
        .where(profile_object.c.domain_name == domain_name, _visible(tx.now))
        .group_by(profile_object.c.profile_id)
        .subquery()
    )
    n = per_profile.c.n
    extra = case((n > METERED_OBJECTS_PER_PROFILE, (n - 1) // METERED_OBJECTS_PER_PROFILE), else_=0)
    row = tx.conn.execute(
        select(
            func.coalesce(func.sum(n), 0),
            func.coalesce(func.sum(per_profile.c.size), 0),
            func.coalesce(func.sum(extra), 0),
        )
    ).one()
    return ObjectUsage(count=int(row[0]), size=int(row[1]), extra_metered_profiles=int(row[2]))


def delete_objects_of_type(tx: Tx, *, domain_name: str, object_type_name: str) -> int:
    """DeleteProfileObjectType's clean-up (spec §1.8): the type's objects, the keys it indexed
    on profiles, and the standard-profile fields it populated (unless a person set them since).
    Returns how many objects were deleted."""

    # Locked before they are read to be scrubbed, so a concurrent change to one is kept; looked
    # up again after each lock, as a write it waited for (a merge undone, objects moved back)
    # may have put the type's data on another profile meanwhile.
    def holding() -> tuple[set[str], set[str]]:
        found = _profiles_with_type(tx, domain_name, object_type_name)
        return found, found

    affected = resolve_locked(tx, domain_name, holding)
    deleted = 0
    # A chunk at a time, in digest order from where the last chunk ended: `_delete_rows` holds
    # what it deletes in memory (keys included), and a type may have millions of objects. The
    # cursor, not "the first rows left", ends the loop: a chunk a concurrent purge deleted
    # first comes back empty but the rest still follow, and no chunk walks past the rows this
    # transaction deleted before it (PostgreSQL still sees them until it commits).
    after: bytes | None = None
    while True:
        query = (
            select(profile_object.c.unique_digest)
            .where(
                profile_object.c.domain_name == domain_name,
                profile_object.c.object_type_name == object_type_name,
            )
            .order_by(profile_object.c.unique_digest)
            .limit(PURGE_CHUNK)
        )
        if after is not None:
            query = query.where(profile_object.c.unique_digest > after)
        digests = [bytes(d) for d in tx.conn.execute(query).scalars()]
        if not digests:
            break
        after = digests[-1]
        deleted += _delete_rows(
            tx,
            and_(
                profile_object.c.domain_name == domain_name,
                profile_object.c.object_type_name == object_type_name,
                profile_object.c.unique_digest.in_(digests),
            ),
        )
    tx.conn.execute(
        delete(profile_key).where(
            profile_key.c.domain_name == domain_name, profile_key.c.origin == object_type_name
        )
    )
    for profile_id in sorted(affected):
        record = find_profile(tx, domain_name=domain_name, profile_id=profile_id)
        if record is None:
            continue
        paths = [p for p, s in record.field_sources.items() if s.get("type") == object_type_name]
        for path in paths:
            del record.field_sources[path]
            if path not in record.manual_fields:
                _remove_path(record.fields, path)
        if paths:
            save_profile(tx, domain_name=domain_name, record=record)
    return deleted


def _profiles_with_type(tx: Tx, domain_name: str, object_type_name: str) -> set[str]:
    """The profiles holding objects of the type or keys it indexed."""
    holding = select(profile_object.c.profile_id).where(
        profile_object.c.domain_name == domain_name,
        profile_object.c.object_type_name == object_type_name,
    )
    indexed = select(profile_key.c.profile_id).where(
        profile_key.c.domain_name == domain_name, profile_key.c.origin == object_type_name
    )
    return set(tx.conn.execute(holding.union(indexed)).scalars())


def _remove_path(fields: dict[str, Any], path: str) -> None:
    name, _, part = path.partition(".")
    if not part:
        fields.pop(name, None)
        return
    inner = fields.get(name)
    if isinstance(inner, dict):
        inner.pop(part, None)
        if not inner:
            fields.pop(name, None)


def _delete_rows(tx: Tx, condition: ColumnElement[bool], *, erases: bool = True) -> int:
    """Delete the objects matching `condition` and their key rows (explicitly: no reliance on
    FK cascades), then call the objects-deleted hooks (`register_objects_deleted`) with them.
    Returns how many objects went. Every deletion of objects comes here (DeleteProfileObject,
    expiry, DeleteProfileObjectType, eviction by MaxProfileObjectCount), so this is where it
    says that it erases (`Tx.erased`: on SQLite the write-ahead log, which still holds the
    objects' page images, is emptied after the commit), unless `erases` is False (eviction).

    The profile keys the objects indexed stay: see `forget_object_keys`. The key rows are found
    from the objects, by their primary key: a DELETE correlated to `profile_object` read every
    key row of the database on SQLite."""
    found = tx.conn.execute(
        select(
            profile_object.c.domain_name,
            profile_object.c.object_type_name,
            profile_object.c.unique_digest,
        ).where(condition)
    ).all()
    if not found:
        return 0
    if erases:
        tx.erased()
    by_type: dict[tuple[str, str], list[bytes]] = {}
    for row in found:
        by_type.setdefault((row.domain_name, row.object_type_name), []).append(
            bytes(row.unique_digest)
        )
    carried: dict[tuple[str, str, bytes], list[tuple[str, bytes]]] = {}
    for (domain_name, type_name), digests in by_type.items():
        for chunk in in_chunks(digests):
            for key in tx.conn.execute(
                delete(profile_object_key)
                .where(
                    profile_object_key.c.domain_name == domain_name,
                    profile_object_key.c.object_type_name == type_name,
                    profile_object_key.c.unique_digest.in_(chunk),
                    # Still matching (PostgreSQL: an object written since the read keeps its
                    # new keys, as the DELETE below keeps it).
                    select(profile_object.c.unique_digest)
                    .where(
                        condition,
                        profile_object.c.domain_name == profile_object_key.c.domain_name,
                        profile_object.c.object_type_name == profile_object_key.c.object_type_name,
                        profile_object.c.unique_digest == profile_object_key.c.unique_digest,
                    )
                    .exists(),
                )
                .returning(
                    profile_object_key.c.unique_digest,
                    profile_object_key.c.key_name,
                    profile_object_key.c.digest,
                )
            ):
                carried.setdefault((domain_name, type_name, bytes(key.unique_digest)), []).append(
                    (key.key_name, bytes(key.digest))
                )
    gone = tx.conn.execute(
        delete(profile_object)
        .where(condition)
        .returning(
            profile_object.c.domain_name,
            profile_object.c.object_type_name,
            profile_object.c.unique_digest,
            profile_object.c.profile_id,
        )
    ).all()
    deleted = [
        DeletedObject(
            domain_name=row.domain_name,
            object_type_name=row.object_type_name,
            profile_id=row.profile_id,
            unique_digest=bytes(row.unique_digest),
            keys=tuple(
                sorted(
                    carried.get(
                        (row.domain_name, row.object_type_name, bytes(row.unique_digest)), ()
                    )
                )
            ),
        )
        for row in gone
    ]
    if deleted:
        for hook in _OBJECTS_DELETED:
            hook(tx, deleted)
    return len(deleted)


def forget_object_keys(
    tx: Tx, *, domain_name: str, object_type_name: str, keys: Iterable[tuple[str, str, bytes]]
) -> None:
    """Take the keys (profile id, key name, digest) that objects of the type indexed off those
    profiles (their rows of origin `object_type_name`), but those an object of the type on the
    same profile still carries, expired or not (the purge takes it later).

    Deleting an object (DeleteProfileObject, expiry, eviction) keeps the keys it indexed on its
    profile, as it keeps the fields it set there (spec §1.8 has DeleteProfileObjectType scrub a
    type's fields; `delete_objects_of_type` removes its keys too). That is how AWS describes
    keys: persisted at ingestion "in the index", "associated with the profile" to match later
    objects and to search (AG: how-keys-are-added-index, standard-identifiers), removed by
    DeleteProfileKey; DeleteProfileObject "removes an object associated with a profile", and
    nothing documents it taking keys along. Taking them would also split customers: a CRM
    record that expires (DefaultExpirationDays) would take its id key, and the record's next
    update would create a second profile. The exception is a key that names the deleted record
    itself rather than its customer: a contact record's `_ctrContactId` (contacts.erasure calls
    this), which must not go on finding the customer once the record is erased. The keys taken
    go through the hooks DeleteProfileKey's go through (profiles.service `keys_deleted`)."""
    wanted = sorted(set(keys))
    for chunk in in_chunks(wanted):
        names = sorted({name for _, name, _ in chunk})
        digests = sorted({digest for _, _, digest in chunk})
        still = {
            (r.profile_id, r.key_name, bytes(r.digest))
            for r in tx.conn.execute(
                select(
                    profile_object.c.profile_id,
                    profile_object_key.c.key_name,
                    profile_object_key.c.digest,
                )
                .select_from(_KEYS_WITH_THEIR_OBJECT)
                .where(
                    profile_object_key.c.domain_name == domain_name,
                    profile_object_key.c.object_type_name == object_type_name,
                    profile_object_key.c.key_name.in_(names),
                    profile_object_key.c.digest.in_(digests),
                )
            )
        }
        unbacked = [t for t in chunk if t not in still]
        if not unbacked:
            continue
        gone = tx.conn.execute(
            delete(profile_key)
            .where(
                profile_key.c.domain_name == domain_name,
                profile_key.c.key_name.in_(sorted({name for _, name, _ in unbacked})),
                profile_key.c.digest.in_(sorted({digest for _, _, digest in unbacked})),
                profile_key.c.origin == object_type_name,
                tuple_(profile_key.c.profile_id, profile_key.c.key_name, profile_key.c.digest).in_(
                    unbacked
                ),
            )
            .returning(profile_key.c.profile_id, profile_key.c.key_name, profile_key.c.digest)
        ).all()
        # Erased as DeleteProfileKey erases a value: what other packages keep of it goes too
        # (identity's merge logs list a moved `_ctrContactId`).
        taken: dict[str, list[tuple[str, bytes]]] = {}
        for row in gone:
            taken.setdefault(row.profile_id, []).append((row.key_name, bytes(row.digest)))
        keys_deleted(tx, domain_name=domain_name, deleted=taken)
