"""Rules for profiles: create, update, delete, fetch, search, and profile keys.

A profile is stored as one sealed blob (its standard fields) plus rows in `profile_key`: for every
key value, a keyed digest of the normalised value (what search looks up) and the value sealed
(what an agent may see). A profile merged into another keeps a row whose `merged_into` points
at the survivor, so old ids keep resolving.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from openprofiles.context import Tx
from openprofiles.crypto.domain_keys import DomainCipher
from openprofiles.errors import BadRequest, NotFound
from openprofiles.normalize import ContentType, normalize
from openprofiles.profiles.keys import (
    DERIVED_KEYS,
    PREDEFINED_CONTENT_TYPES,
    derived_key_values,
)
from openprofiles.profiles.models import (
    ADDRESS_FIELDS,
    PROFILE_FIELDS,
    WHOLE_VALUE_FIELDS,
    KeyMatch,
    ProfileRecord,
)
from openprofiles.store.schema import profile, profile_key

PROFILE_TABLE = "profile"
KEY_TABLE = "profile_key"
DERIVED_ORIGIN = "profile"
EXPLICIT_ORIGIN = "explicit"


@dataclass(frozen=True)
class SearchCriterion:
    key_name: str
    values: tuple[str, ...]


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
    )


def resolve_profile_id(tx: Tx, *, domain_name: str, profile_id: str) -> str | None:
    """The id of the live profile `profile_id` names, following merges; None if none."""
    seen: set[str] = set()
    current = profile_id
    while current not in seen:
        seen.add(current)
        row = tx.conn.execute(
            select(profile.c.merged_into).where(
                profile.c.domain_name == domain_name, profile.c.profile_id == current
            )
        ).first()
        if row is None:
            return None
        if row.merged_into is None:
            return current
        current = row.merged_into
    return None


def find_profile(tx: Tx, *, domain_name: str, profile_id: str) -> ProfileRecord | None:
    cipher = tx.cipher(domain_name)
    live_id = resolve_profile_id(tx, domain_name=domain_name, profile_id=profile_id)
    if live_id is None:
        return None
    row = tx.conn.execute(
        select(profile).where(profile.c.domain_name == domain_name, profile.c.profile_id == live_id)
    ).one()
    return _open(cipher, row)


def get_profile(tx: Tx, *, domain_name: str, profile_id: str) -> ProfileRecord:
    found = find_profile(tx, domain_name=domain_name, profile_id=profile_id)
    if found is None:
        raise NotFound(f"The profile {profile_id} does not exist in domain {domain_name}.")
    return found


def get_profiles(
    tx: Tx, *, domain_name: str, profile_ids: Sequence[str]
) -> dict[str, ProfileRecord]:
    """Live profiles by requested id (merged-away ids map to their survivor); missing ids absent."""
    cipher = tx.cipher(domain_name)
    rows = {
        row.profile_id: row
        for row in tx.conn.execute(
            select(profile).where(
                profile.c.domain_name == domain_name, profile.c.profile_id.in_(set(profile_ids))
            )
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
        select(profile_key.c.key_name, profile_key.c.digest, profile_key.c.value_sealed)
        .where(profile_key.c.domain_name == domain_name, profile_key.c.profile_id == profile_id)
        .order_by(profile_key.c.key_name)
    )
    out: dict[str, list[str]] = {}
    for row in rows:
        value = cipher.open_record(
            KEY_TABLE, _key_record_id(profile_id, row.key_name, row.digest), bytes(row.value_sealed)
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
    clean = _without_empty(fields)
    record = ProfileRecord(
        profile_id=profile_id or new_profile_id(),
        fields=clean,
        version=1,
        created_at=tx.now,
        updated_at=tx.now,
        manual_fields=set(_field_paths(clean)) if manual else set(),
        field_sources=dict(field_sources or {}),
    )
    tx.conn.execute(
        insert(profile).values(
            domain_name=domain_name,
            profile_id=record.profile_id,
            sealed=cipher.seal_record(PROFILE_TABLE, record.profile_id, record.sealed_payload()),
            version=record.version,
            merged_into=None,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )
    )
    _replace_derived_keys(tx, cipher, domain_name, record)
    return record


def update_profile(
    tx: Tx, *, domain_name: str, profile_id: str, changes: dict[str, Any], manual: bool = True
) -> ProfileRecord:
    """Apply UpdateProfile semantics: an omitted member is kept, "" removes the value."""
    record = get_profile(tx, domain_name=domain_name, profile_id=profile_id)
    fields = record.fields
    for name, value in changes.items():
        if name not in PROFILE_FIELDS or value is None:
            continue
        if name in ADDRESS_FIELDS or name == "Attributes":
            merged = {**fields.get(name, {}), **value}
            merged = {k: v for k, v in merged.items() if v != ""}
            _set_or_clear(fields, name, merged)
        elif name in WHOLE_VALUE_FIELDS:
            _set_or_clear(fields, name, value)
        else:
            _set_or_clear(fields, name, value)
        if manual:
            record.manual_fields.update(_field_paths({name: value}))
    return save_profile(tx, domain_name=domain_name, record=record)


def save_profile(tx: Tx, *, domain_name: str, record: ProfileRecord) -> ProfileRecord:
    """Write back a changed profile and recompute its derived keys."""
    cipher = tx.cipher(domain_name)
    record.version += 1
    record.updated_at = tx.now
    tx.conn.execute(
        update(profile)
        .where(profile.c.domain_name == domain_name, profile.c.profile_id == record.profile_id)
        .values(
            sealed=cipher.seal_record(PROFILE_TABLE, record.profile_id, record.sealed_payload()),
            version=record.version,
            updated_at=record.updated_at,
        )
    )
    _replace_derived_keys(tx, cipher, domain_name, record)
    return record


def delete_profile(tx: Tx, *, domain_name: str, profile_id: str) -> None:
    tx.cipher(domain_name)  # NotFound for an unknown domain before anything else
    live_id = resolve_profile_id(tx, domain_name=domain_name, profile_id=profile_id)
    if live_id is None:
        raise NotFound(f"The profile {profile_id} does not exist in domain {domain_name}.")
    tx.conn.execute(
        delete(profile_key).where(
            profile_key.c.domain_name == domain_name, profile_key.c.profile_id == live_id
        )
    )
    tx.conn.execute(
        delete(profile).where(
            profile.c.domain_name == domain_name,
            or_(profile.c.profile_id == live_id, profile.c.merged_into == live_id),
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
    """Index `values` under `key_name` for the profile; returns the live profile id."""
    if key_name in DERIVED_KEYS:
        raise BadRequest(
            f"The key {key_name} is derived from the profile's standard fields; "
            "update the profile instead of adding the key."
        )
    record = get_profile(tx, domain_name=domain_name, profile_id=profile_id)
    cipher = tx.cipher(domain_name)
    content_type = key_content_type(tx, domain_name=domain_name, key_name=key_name)
    rows = []
    for value in dict.fromkeys(values):
        normal = normalize(content_type, value, phone_region=tx.settings.default_phone_region)
        if not normal:
            raise BadRequest(f"The value given for key {key_name} is empty once normalised.")
        rows.append(
            _key_row(cipher, domain_name, record.profile_id, key_name, normal, value, origin)
        )
    _insert_keys(tx, rows)
    return record.profile_id


def index_profile_keys(
    tx: Tx,
    *,
    domain_name: str,
    profile_id: str,
    keys: Iterable[tuple[str, str, str]],
    origin: str,
) -> None:
    """Index (key name, normalised value, raw value) triples for a profile; values already
    indexed for it are kept. Ingestion's variant of AddProfileKey: the values were normalised
    by the object type's ContentTypes, and derived key names are allowed (origin is the type)."""
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
    if key_name in DERIVED_KEYS:
        raise BadRequest(
            f"The key {key_name} is derived from the profile's standard fields; "
            "update the profile to change it."
        )
    record = get_profile(tx, domain_name=domain_name, profile_id=profile_id)
    cipher = tx.cipher(domain_name)
    content_type = key_content_type(tx, domain_name=domain_name, key_name=key_name)
    digests = [
        cipher.digest(
            key_name, normalize(content_type, v, phone_region=tx.settings.default_phone_region)
        )
        for v in values
    ]
    result = tx.conn.execute(
        delete(profile_key).where(
            profile_key.c.domain_name == domain_name,
            profile_key.c.profile_id == record.profile_id,
            profile_key.c.key_name == key_name,
            profile_key.c.digest.in_(digests),
        )
    )
    if result.rowcount == 0:
        raise NotFound(f"The profile {profile_id} has no such value for key {key_name}.")


# ---------------------------------------------------------------------------- search


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

    Returns the page and the last profile id of the page when more follow (the cursor).
    """
    cipher = tx.cipher(domain_name)
    region = tx.settings.default_phone_region
    # One flag column per (criterion, value): it says whether that pair matched the profile.
    pairs: list[tuple[int, str, Any]] = []
    for index, criterion in enumerate(criteria):
        content_type = key_content_type(tx, domain_name=domain_name, key_name=criterion.key_name)
        for value in criterion.values:
            digest = cipher.digest(
                criterion.key_name, normalize(content_type, value, phone_region=region)
            )
            condition = and_(
                profile_key.c.key_name == criterion.key_name, profile_key.c.digest == digest
            )
            pairs.append((index, value, condition))
    flag_exprs = [func.max(case((cond, 1), else_=0)) for _, _, cond in pairs]
    query = (
        select(profile_key.c.profile_id, *flag_exprs)
        .where(profile_key.c.domain_name == domain_name, or_(*(cond for _, _, cond in pairs)))
        .group_by(profile_key.c.profile_id)
        .order_by(profile_key.c.profile_id)
        .limit(limit + 1)
    )
    if after is not None:
        query = query.where(profile_key.c.profile_id > after)
    if logical_operator == "AND":
        # Every criterion must have matched with at least one of its values.
        for index in range(len(criteria)):
            query = query.having(
                or_(*(flag_exprs[i] == 1 for i, pair in enumerate(pairs) if pair[0] == index))
            )
    rows = list(tx.conn.execute(query))
    more = len(rows) > limit
    rows = rows[:limit]
    records = get_profiles(tx, domain_name=domain_name, profile_ids=[r.profile_id for r in rows])
    page = []
    for row in rows:
        found: dict[int, list[str]] = {}
        for i, (index, value, _) in enumerate(pairs):
            if row[i + 1]:
                found.setdefault(index, []).append(value)
        matches = [KeyMatch(criteria[i].key_name, tuple(v)) for i, v in sorted(found.items())]
        if row.profile_id in records:
            page.append((records[row.profile_id], matches))
    return page, (rows[-1].profile_id if more and rows else None)


def key_content_type(tx: Tx, *, domain_name: str, key_name: str) -> ContentType:
    """How values of `key_name` are normalised: predefined keys have fixed types; other keys
    are compared as written until object types declare their ContentTypes."""
    del tx, domain_name
    return PREDEFINED_CONTENT_TYPES.get(key_name, ContentType.STRING)


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


def _key_record_id(profile_id: str, key_name: str, digest: bytes) -> str:
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
    digest = cipher.digest(key_name, normal)
    return {
        "domain_name": domain_name,
        "key_name": key_name,
        "digest": digest,
        "profile_id": profile_id,
        "origin": origin,
        "value_sealed": cipher.seal_record(
            KEY_TABLE, _key_record_id(profile_id, key_name, digest), {"value": value}
        ),
    }


def _insert_keys(tx: Tx, rows: list[dict[str, Any]]) -> None:
    """Insert key rows, keeping the existing row where the same value is already indexed."""
    if not rows:
        return
    dialect_insert = sqlite_insert if tx.services.database.is_sqlite else pg_insert
    statement = dialect_insert(profile_key).on_conflict_do_nothing()
    tx.conn.execute(statement, rows)


def _replace_derived_keys(
    tx: Tx, cipher: DomainCipher, domain_name: str, record: ProfileRecord
) -> None:
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
