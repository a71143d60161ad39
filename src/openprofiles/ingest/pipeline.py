"""The one ingestion pipeline (spec §1.6–1.9): every record, whatever its way in
(PutProfileObject, the bulk CLI, contact records, queues), goes through `ingest_object`.

map (object type) → resolve the profile (PROFILE keys, then SECONDARY keys; a key matching more
than one profile is ambiguous and skipped) → create an inferred profile when allowed → store the
object under its UNIQUE value (replacing the previous one wholesale, moving it if it now
resolves to another profile) → accumulate standard objects (`_profile` fields with manual
protection and SourcePriority; `_asset`/`_case`/`_order`, ...) → persist keys (LOOKUP_ONLY never,
NEW_ONLY only on a profile this ingestion created) → evict / expire.

A record is applied completely or not at all: the work runs in a savepoint, and a record that
cannot be applied raises `IngestRejected` with a reason and a category the dead-letter queue
keeps. Concurrent ingestions of one new customer never create two profiles: on PostgreSQL every
key used for lookup is locked (transaction-scoped advisory locks, taken in one global order
before looking up); SQLite has a single writer, which serialises them already.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, select, text

from openprofiles.context import Tx
from openprofiles.ingest.mapping import ComputedKey, MappedObject, MappingError, map_object
from openprofiles.object_types.models import ObjectType
from openprofiles.object_types.service import (
    PROFILE_OBJECT_QUOTA,
    find_object_type,
    get_object_type,
    note_implicit_type_used,
)
from openprofiles.object_types.standard_objects import ROOT_IDENTIFIERS
from openprofiles.objects import service as objects
from openprofiles.profiles.models import PROFILE_FIELDS, WHOLE_VALUE_FIELDS, ProfileRecord
from openprofiles.profiles.service import (
    create_profile,
    get_profile,
    index_profile_keys,
    resolve_profile_id,
    save_profile,
)
from openprofiles.store.schema import domain, profile, profile_key

CATEGORIES = ("no_profile", "missing_key", "ambiguous", "invalid_value", "transient")


class IngestRejected(Exception):
    """The record cannot be applied; it belongs in the dead-letter queue with this reason."""

    def __init__(self, reason: str, category: str) -> None:
        if category not in CATEGORIES:
            raise ValueError(f"unknown rejection category {category!r}")
        super().__init__(reason)
        self.reason = reason
        self.category = category


@dataclass(frozen=True)
class IngestResult:
    profile_id: str
    profile_object_unique_key: str
    created_profile: bool


def ingest_object(
    tx: Tx,
    *,
    domain_name: str,
    object_type_name: str,
    source: Mapping[str, Any],
    raw: str,
    object_type: ObjectType | None = None,
) -> IngestResult:
    """Apply one record of `object_type_name` (its parsed `source` and submitted text `raw`).

    `object_type` may be given by callers that resolved it already (bulk loads resolve it once
    per batch). Raises NotFound for an unknown domain or object type (a request error, not a
    record error) and IngestRejected when the record itself cannot be applied.
    """
    if object_type is None or object_type.name != object_type_name:
        object_type = get_object_type(tx, domain_name=domain_name, name=object_type_name)
    cipher = tx.cipher(domain_name)
    try:
        mapped = map_object(object_type, source, phone_region=tx.settings.default_phone_region)
    except MappingError as exc:
        raise IngestRejected(exc.message, "invalid_value") from exc
    unique = mapped.unique_key
    if unique is None:
        raise IngestRejected(
            f"Missing unique key: every field of the UNIQUE key of object type "
            f"{object_type_name} must have a value.",
            "missing_key",
        )
    profile_keys = [k for k in mapped.keys if "PROFILE" in k.identifiers]
    if not profile_keys:
        raise IngestRejected(
            f"Missing profile key: none of the PROFILE keys of object type {object_type_name} "
            "has a value.",
            "missing_key",
        )
    digests = {(k.name, k.normalised): cipher.digest(k.name, k.normalised) for k in mapped.keys}
    unique_digest = digests[(unique.name, unique.normalised)]
    _lock(
        tx,
        domain_name,
        [
            ("object", object_type_name, unique_digest),
            *(("key", k.name, digests[(k.name, k.normalised)]) for k in mapped.keys),
        ],
    )
    with tx.conn.begin_nested():
        result = _apply(tx, object_type, mapped, digests, unique_digest, raw)
        if object_type.implicit:
            note_implicit_type_used(tx, domain_name=domain_name, name=object_type_name)
    return result


# ---------------------------------------------------------------------------- the rules


def _apply(
    tx: Tx,
    object_type: ObjectType,
    mapped: MappedObject,
    digests: Mapping[tuple[str, str], bytes],
    unique_digest: bytes,
    raw: str,
) -> IngestResult:
    domain_name = object_type.domain_name

    def digest_of(key: ComputedKey) -> bytes:
        return digests[(key.name, key.normalised)]

    # Standard-object identifiers must each find at most one record (spec §1.5): checked
    # before anything is written.
    standard = _resolve_standard_objects(tx, object_type, mapped, digest_of)

    target_id = _resolve_profile(tx, domain_name, mapped, digest_of)
    created = target_id is None
    if target_id is None:
        if not object_type.allow_profile_creation:
            raise IngestRejected(
                f"No profile matched the object's profile keys, and object type "
                f"{object_type.name} does not allow profile creation (AllowProfileCreation).",
                "no_profile",
            )
        record = _create_inferred_profile(tx, object_type, mapped)
        target_id = record.profile_id
    else:
        record = get_profile(tx, domain_name=domain_name, profile_id=target_id)
        if apply_profile_fields(
            record,
            mapped.targets.get("_profile", {}),
            object_type_name=object_type.name,
            source_priority=object_type.source_priority,
        ):
            save_profile(tx, domain_name=domain_name, record=record)

    expires_at = _expires_at(tx, object_type)
    existing = objects.find_object(
        tx, domain_name=domain_name, object_type_name=object_type.name, unique_digest=unique_digest
    )
    if existing is None or existing.profile_id != target_id:
        _make_room(tx, object_type, target_id)
    objects.write_object(
        tx,
        domain_name=domain_name,
        object_type_name=object_type.name,
        unique_digest=unique_digest,
        profile_id=target_id,
        object_json=raw,
        expires_at=expires_at,
        source_last_updated=mapped.source_last_updated,
        key_digests=[(k.name, digest_of(k)) for k in mapped.keys],
    )
    for root, (record_digest, keys) in standard.items():
        objects.merge_standard_object(
            tx,
            domain_name=domain_name,
            root=root,
            unique_digest=record_digest,
            profile_id=target_id,
            values=dict(mapped.targets[root]),
            expires_at=expires_at,
            key_digests=[(k.name, digest_of(k)) for k in keys],
        )

    # Key persistence (spec §1.5 flowchart): LOOKUP_ONLY never; NEW_ONLY only when this
    # ingestion created the profile; everything else always.
    persisted = [
        (k.name, k.normalised, k.value)
        for k in mapped.keys
        if "LOOKUP_ONLY" not in k.identifiers and ("NEW_ONLY" not in k.identifiers or created)
    ]
    index_profile_keys(
        tx, domain_name=domain_name, profile_id=target_id, keys=persisted, origin=object_type.name
    )
    return IngestResult(
        profile_id=target_id,
        profile_object_unique_key=unique_digest.hex(),
        created_profile=created,
    )


def _resolve_profile(tx: Tx, domain_name: str, mapped: MappedObject, digest_of: Any) -> str | None:
    """Primary PROFILE keys first, then SECONDARY ones; the first key that finds exactly one
    profile wins; a key finding several is ambiguous and skipped (spec §1.6)."""
    profile_keys = [k for k in mapped.keys if "PROFILE" in k.identifiers]
    primary = [k for k in profile_keys if "SECONDARY" not in k.identifiers]
    secondary = [k for k in profile_keys if "SECONDARY" in k.identifiers]
    seen: set[tuple[str, bytes]] = set()
    for key in (*primary, *secondary):
        pair = (key.name, digest_of(key))
        if pair in seen:
            continue
        seen.add(pair)
        found = lookup_profiles(tx, domain_name=domain_name, key_name=pair[0], digest=pair[1])
        if len(found) == 1:
            return found.pop()
    return None


# Built once: building the expression costs more than running it (benchmarks/ingest.py).
_LOOKUP = (
    select(profile_key.c.profile_id, profile.c.merged_into)
    .join(
        profile,
        and_(
            profile.c.domain_name == profile_key.c.domain_name,
            profile.c.profile_id == profile_key.c.profile_id,
        ),
    )
    .where(
        profile_key.c.domain_name == bindparam("d"),
        profile_key.c.key_name == bindparam("k"),
        profile_key.c.digest == bindparam("g"),
    )
)
_DEFAULT_EXPIRATION = select(domain.c.config).where(domain.c.name == bindparam("d"))


def lookup_profiles(tx: Tx, *, domain_name: str, key_name: str, digest: bytes) -> set[str]:
    """The live profiles (merges followed) a key value is indexed for."""
    rows = tx.conn.execute(_LOOKUP, {"d": domain_name, "k": key_name, "g": digest})
    found: set[str] = set()
    for row in rows:
        if row.merged_into is None:
            found.add(row.profile_id)
        elif (
            live := resolve_profile_id(tx, domain_name=domain_name, profile_id=row.profile_id)
        ) is not None:
            found.add(live)
    return found


def _create_inferred_profile(
    tx: Tx, object_type: ObjectType, mapped: MappedObject
) -> ProfileRecord:
    """A new profile (spec §1.7): the first EMAIL_ADDRESS / PHONE_NUMBER typed fields fill
    EmailAddress / PhoneNumber (only now, at creation), then the mapping's targets apply."""
    seed = ProfileRecord(profile_id="", fields={}, version=0, created_at=tx.now, updated_at=tx.now)
    inferred: dict[str, Any] = {}
    if mapped.inferred_email:
        inferred["EmailAddress"] = mapped.inferred_email
    if mapped.inferred_phone:
        inferred["PhoneNumber"] = mapped.inferred_phone
    for values in (inferred, mapped.targets.get("_profile", {})):
        apply_profile_fields(
            seed,
            values,
            object_type_name=object_type.name,
            source_priority=object_type.source_priority,
        )
    return create_profile(
        tx,
        domain_name=object_type.domain_name,
        fields=seed.fields,
        manual=False,
        field_sources=seed.field_sources,
    )


def apply_profile_fields(
    record: ProfileRecord,
    values: Mapping[str, Any],
    *,
    object_type_name: str,
    source_priority: int | None,
) -> bool:
    """Accumulate an object's `_profile` values into the profile (spec §1.8). Returns whether
    anything changed.

    Empty values never clear. A field a person set (manual) is kept unless the type has a
    SourcePriority; a field set by a type with a SourcePriority is overwritten only by a type
    with an equal or lower number (lower wins; no priority is the lowest).
    """
    changed = False
    for name, value in values.items():
        if name not in PROFILE_FIELDS or value in ("", None, {}):
            continue
        if isinstance(value, Mapping) and name not in WHOLE_VALUE_FIELDS:
            parts = [(f"{name}.{part}", part, v) for part, v in value.items()]
        else:
            parts = [(name, None, value)]
        for path, part, item in parts:
            if item in ("", None) or not _may_write(record, path, source_priority):
                continue
            if part is None:
                old = record.fields.get(name)
                record.fields[name] = item
            else:
                container = record.fields.setdefault(name, {})
                old = container.get(part)
                container[part] = item
            source = {"type": object_type_name, "priority": source_priority}
            if old != item or record.field_sources.get(path) != source:
                changed = True
            record.field_sources[path] = source
            record.manual_fields.discard(path)
    return changed


def _may_write(record: ProfileRecord, path: str, priority: int | None) -> bool:
    if path in record.manual_fields:
        return priority is not None
    current = record.field_sources.get(path)
    if current is None or current.get("priority") is None:
        return True
    return priority is not None and priority <= int(current["priority"])


def _resolve_standard_objects(
    tx: Tx, object_type: ObjectType, mapped: MappedObject, digest_of: Any
) -> dict[str, tuple[bytes, list[ComputedKey]]]:
    """For every standard object the record writes: the record it updates (by its identifier
    keys) or a new one's digest. An identifier matching several records rejects the object."""
    out: dict[str, tuple[bytes, list[ComputedKey]]] = {}
    for root, identifier in ROOT_IDENTIFIERS.items():
        keys = sorted((k for k in mapped.keys if identifier in k.identifiers), key=lambda k: k.name)
        writes = root in mapped.targets
        if not keys:
            if writes:
                raise IngestRejected(
                    f"Missing key: object type {object_type.name} writes {root} but none of "
                    f"its {identifier} keys has a value.",
                    "missing_key",
                )
            continue
        found = objects.find_objects_by_keys(
            tx,
            domain_name=object_type.domain_name,
            object_type_name=root,
            key_digests=[(k.name, digest_of(k)) for k in keys],
        )
        if len(found) > 1:
            raise IngestRejected(
                f"The {identifier} keys of the object match {len(found)} {root} records; "
                "the object is ambiguous.",
                "ambiguous",
            )
        if writes:
            out[root] = (found.pop() if found else digest_of(keys[0]), keys)
    return out


def _make_room(tx: Tx, object_type: ObjectType, profile_id: str) -> None:
    """Eviction when the profile is full (spec §1.9): the oldest object of the type furthest
    over its MaxProfileObjectCount, else the oldest object of the incoming type."""
    domain_name = object_type.domain_name
    counts = objects.count_objects_by_type(tx, domain_name=domain_name, profile_id=profile_id)
    if sum(counts.values()) < PROFILE_OBJECT_QUOTA:
        return
    over: list[tuple[int, str]] = []
    for type_name, count in counts.items():
        limit = _type_limit(tx, domain_name, type_name, object_type)
        if limit is not None and count > limit:
            over.append((count - limit, type_name))
    victim = max(over)[1] if over else object_type.name
    if not objects.evict_oldest(
        tx, domain_name=domain_name, profile_id=profile_id, object_type_name=victim
    ):
        raise IngestRejected(
            f"The profile {profile_id} holds {PROFILE_OBJECT_QUOTA} objects, none of them of "
            f"type {object_type.name} or of a type over its MaxProfileObjectCount.",
            "invalid_value",
        )


def _type_limit(tx: Tx, domain_name: str, type_name: str, incoming: ObjectType) -> int | None:
    if type_name == incoming.name:
        return incoming.max_profile_object_count
    if type_name.startswith("_"):
        return None
    found = find_object_type(tx, domain_name=domain_name, name=type_name)
    return found.max_profile_object_count if found else None


def _expires_at(tx: Tx, object_type: ObjectType) -> datetime | None:
    """Retention is fixed at ingestion time (spec §1.9)."""
    days = object_type.expiration_days
    if days is None:
        config = tx.conn.execute(_DEFAULT_EXPIRATION, {"d": object_type.domain_name}).scalar()
        configured = (config or {}).get("DefaultExpirationDays")
        days = int(configured) if configured else None
    return tx.now + timedelta(days=days) if days else None


def _lock(tx: Tx, domain_name: str, items: Iterable[tuple[str, str, bytes]]) -> None:
    """Serialise concurrent ingestions that share a key or a UNIQUE value (PostgreSQL).

    The locks are taken in one global order (sorted lock ids), so two transactions needing
    overlapping sets cannot deadlock on them; they are released at commit.
    """
    if tx.services.database.is_sqlite:
        return
    lock_ids = sorted(
        {
            int.from_bytes(
                hashlib.sha256(
                    b"\x00".join((kind.encode(), domain_name.encode(), name.encode(), digest))
                ).digest()[:8],
                "big",
                signed=True,
            )
            for kind, name, digest in items
        }
    )
    for lock_id in lock_ids:
        tx.conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})
