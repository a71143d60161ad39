"""Rules for merging profiles (MergeProfiles, spec §5.3) and undoing a merge.

A merge unions the standard fields into the main profile (main wins on conflict unless
FieldSourceProfileIds names a profile, whose value is taken even if empty), moves every key and
object of the merged profiles to the main profile and leaves each merged profile's row in place
with `merged_into` set and no fields (the log holds them): its key values (`_profileId` among
them) now find the main profile (spec §1.6 "After a merge"), a derived one (`_email`, from a
field) under the object type that wrote the field, so that deleting the type unfinds it
(`_derived_origin`), while operations naming it by id answer ResourceNotFound, as for a
deleted profile (profiles.service docstring). Unlike the cloud service a merge can be undone:
every merge writes a `merge_log` row holding, sealed, the before-images of every profile involved
and which keys and objects moved; `undo_merge` puts them back, except data that arrived on the
main profile after the merge, which stays there and is listed in the result (for the main
profile's fields, the rule is at `_restore_main_fields`), and data deleted since the merge, which
stays deleted and is listed too: an object or key no longer on the main profile, and a field
whose object type was deleted (DeleteProfileObjectType, spec §1.8). The values DeleteProfileKey
and DeleteProfileObjectType erase leave the merge logs as well (`forget_deleted_keys`,
`forget_deleted_type`): such a key is neither shown nor listed by an undo. A change of a key's
ContentType re-digests the logged values of the key as it does the live rows
(`redigest_logged_keys`), so that an undo and an erasure still find them. A later merge into the
same main profile that still stands keeps what it relies on (a key row it found there, the
fields it would have brought): its log is rewritten as if the undone merge had never been
(`_StandingMerge`), so that undoing it in turn leaves the main profile as before both.

Concurrent writers (PostgreSQL, several server processes): a merge and an undo lock every profile
they involve (`profiles.service.lock_profiles`, in id order) before reading them, and check after
the lock that each is still as the operation needs it (live; still merged into the main profile).
So of two crossed or overlapping merges, or two undos of one merge, the second waits for the first
and is then refused; an update, key or object written meanwhile to a profile being merged is
either in what the merge reads or, written after it, follows the merge to the main profile when
it found the profile by a key (ingestion, `profiles.service.lock_live_profile`), and is refused as
NotFound when it named the profile by id (UpdateProfile, AddProfileKey, DeleteProfileObject).
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from openprofiles.contacts.links import CONTACT_KEY, RELINKED_ORIGIN
from openprofiles.context import Tx
from openprofiles.crypto.domain_keys import DomainCipher
from openprofiles.domains.service import register_domain_table
from openprofiles.errors import BadRequest, NotFound

# matching is imported for its effect: rule-based matching registers its hook on profile writes.
from openprofiles.identity import (
    matching,  # noqa: F401
    ml_features,
    ml_groups,
    rule_store,
)
from openprofiles.identity.models import (
    DroppedField,
    KeptKey,
    KeptObject,
    MergeRecord,
    MovedKey,
    MovedObject,
    UndoResult,
)
from openprofiles.normalize import ContentType, normalize
from openprofiles.object_types.service import on_object_type_deleted
from openprofiles.profiles import key_reindex
from openprofiles.profiles import service as profiles_service
from openprofiles.profiles.keys import (
    EMAIL_FIELDS,
    NAME_FIELDS,
    PHONE_FIELDS,
    PREDEFINED_CONTENT_TYPES,
)
from openprofiles.profiles.models import (
    ADDRESS_FIELDS,
    PROFILE_FIELDS,
    WHOLE_VALUE_FIELDS,
    ProfileRecord,
    unit_members,
)
from openprofiles.profiles.service import (
    DERIVED_ORIGIN,
    EXPLICIT_ORIGIN,
    KEY_TABLE,
    PROFILE_TABLE,
    hooks_after,
    key_digest,
    key_record_id,
    lock_profiles,
    save_profile,
    sealed_key_row,
)
from openprofiles.profiles.size import MAX_PROFILE_BYTES, ProfileTooLarge, profile_size
from openprofiles.store.advisory import take_locks
from openprofiles.store.conflicts import ConcurrentChange
from openprofiles.store.in_lists import in_chunks
from openprofiles.store.schema import (
    kept_apart,
    merge_log,
    object_type,
    profile,
    profile_key,
    profile_object,
)

MERGE_TABLE = "merge_log"
# Origin of a derived key (`_profileId`, `_email`, ...) of a merged profile once it sits on the
# main profile, unless an object type wrote the field it comes from (`_derived_origin`): not the
# derived marker, or recomputing the main profile's derived keys would drop it and the
# merged-away id would stop resolving.
MERGED_ORIGIN = "@merge"
# Merge logs written before migration 0017 name origins with the old markers; from then on a
# log says `"origins": 2`, and "profile" in it is an object type of that name.
_LEGACY_ORIGINS = {"profile": DERIVED_ORIGIN, "explicit": EXPLICIT_ORIGIN, "merge": MERGED_ORIGIN}
MAX_MERGED_PROFILES = 20
# The advisory lock (store.advisory) of a domain's undone merges and kept-apart ids, which
# DeleteProfile rewrites (`forget_deleted_profiles`).
KEPT_APART_LOCK = "kept_apart"
# What a merged-away profile's row holds sealed (no fields: see `_merge_profiles`).
_EMPTY_PROFILE: dict[str, Any] = {"fields": {}, "manual": []}

register_domain_table(merge_log)
register_domain_table(kept_apart)

_INSERT_KEYS = {
    "sqlite": sqlite_insert(profile_key).on_conflict_do_nothing(),
    "postgresql": pg_insert(profile_key).on_conflict_do_nothing(),
}


# ---------------------------------------------------------------------------- merging


def merge_profiles(
    tx: Tx,
    *,
    domain_name: str,
    main_profile_id: str,
    profile_ids: Sequence[str],
    field_sources: dict[str, Any] | None = None,
) -> MergeRecord:
    """Merge `profile_ids` into `main_profile_id`; returns the merge-log record.

    The profile-written hooks (rule matching) see the main profile once the merge is done: run
    when its fields are saved, with the merged profiles still live, an auto-merge rule would
    merge the same group again, inside this merge (a second log entry, an undo that fails)."""
    with hooks_after(tx):
        return _merge_profiles(
            tx,
            domain_name=domain_name,
            main_profile_id=main_profile_id,
            profile_ids=profile_ids,
            field_sources=field_sources,
        )


def _merge_profiles(
    tx: Tx,
    *,
    domain_name: str,
    main_profile_id: str,
    profile_ids: Sequence[str],
    field_sources: dict[str, Any] | None = None,
) -> MergeRecord:
    cipher = tx.cipher(domain_name)
    merged_ids = list(dict.fromkeys(profile_ids))
    if not 1 <= len(merged_ids) <= MAX_MERGED_PROFILES:
        raise BadRequest(
            f"ProfileIdsToBeMerged must name between 1 and {MAX_MERGED_PROFILES} profiles; "
            f"{len(merged_ids)} were given."
        )
    if main_profile_id in merged_ids:
        raise BadRequest(f"The profile {main_profile_id} cannot be merged into itself.")
    # Locked before they are read: a concurrent merge of any of them (A <- B against B <- A, or
    # A <- B against C <- B) waits for this one, then finds the profile merged and is refused.
    lock_profiles(tx, domain_name=domain_name, profile_ids=[main_profile_id, *merged_ids])
    records = _live_profiles(tx, cipher, domain_name, [main_profile_id, *merged_ids])
    sources = _check_field_sources(field_sources or {}, main_profile_id, merged_ids)
    main = records[main_profile_id]
    others = [records[pid] for pid in merged_ids]
    before = {pid: _image(rec) for pid, rec in records.items()}
    main_keys_before = _key_pairs(tx, domain_name, main_profile_id)

    _merge_fields(main, others, sources, records)
    save_profile(tx, domain_name=domain_name, record=main)

    moved_keys = _move_keys(
        tx, cipher, domain_name, main_profile_id, {pid: records[pid] for pid in merged_ids}
    )
    moved_objects = _move_objects(tx, domain_name, main_profile_id, merged_ids)
    merged = 0
    for pid in merged_ids:
        merged += tx.conn.execute(
            update(profile)
            .where(
                profile.c.domain_name == domain_name,
                profile.c.profile_id == pid,
                # Never a second merge of a merged profile, whatever the locks above missed: it
                # would make a cycle (A into B, B into A) and both customers would vanish from
                # every read.
                profile.c.merged_into.is_(None),
            )
            # The row keeps no copy of the fields: they are in the log's before-image, which
            # an undo restores and an erasure scrubs (DeleteProfile, `forget_deleted_profiles`).
            .values(
                merged_into=main_profile_id,
                updated_at=tx.now,
                sealed=cipher.seal_record(PROFILE_TABLE, pid, _EMPTY_PROFILE),
            )
        ).rowcount
    if merged != len(merged_ids):
        raise ConcurrentChange("a profile being merged was merged or deleted meanwhile")
    # Their match features and rule-match digests go with them; undoing the merge writes them
    # again (the profile-written hooks, when the restored profiles are saved).
    ml_features.forget(tx, domain_name, merged_ids)
    rule_store.forget(tx, domain_name, merged_ids)

    merge_id = uuid.uuid4().hex
    payload = {
        "field_sources": sources,
        "profiles": before,
        "main_after": main.sealed_payload(),
        # Whether anything wrote the main profile after the merge (see _restore_main_fields).
        "main_version": main.version,
        "main_keys": [[name, digest.hex()] for name, digest in sorted(main_keys_before)],
        "keys": moved_keys,
        "objects": moved_objects,
        "origins": 2,  # origins named as from migration 0017 on (see _LEGACY_ORIGINS)
    }
    tx.conn.execute(
        merge_log.insert().values(
            domain_name=domain_name,
            merge_id=merge_id,
            main_profile_id=main_profile_id,
            merged_profile_ids=merged_ids,
            sealed=cipher.seal_record(MERGE_TABLE, merge_id, payload),
            created_at=tx.now,
            undone_at=None,
            undo_sealed=None,
        )
    )
    return _details(
        MergeRecord(
            merge_id=merge_id,
            domain_name=domain_name,
            main_profile_id=main_profile_id,
            merged_profile_ids=tuple(merged_ids),
            created_at=tx.now,
        ),
        payload,
        None,
    )


def _live_profiles(
    tx: Tx, cipher: DomainCipher, domain_name: str, profile_ids: list[str]
) -> dict[str, ProfileRecord]:
    rows = {
        row.profile_id: row
        for row in tx.conn.execute(
            select(profile).where(
                profile.c.domain_name == domain_name, profile.c.profile_id.in_(profile_ids)
            )
        )
    }
    out: dict[str, ProfileRecord] = {}
    for pid in profile_ids:
        row = rows.get(pid)
        if row is None:
            raise NotFound(f"The profile {pid} does not exist in domain {domain_name}.")
        if row.merged_into is not None:
            # Gone, as for every operation naming a merged-away id (profiles.service docstring).
            raise profiles_service.merged_away(domain_name, pid, row.merged_into)
        payload = cipher.open_record(PROFILE_TABLE, pid, bytes(row.sealed))
        out[pid] = ProfileRecord(
            profile_id=pid,
            fields=payload["fields"],
            version=row.version,
            created_at=row.created_at,
            updated_at=row.updated_at,
            manual_fields=set(payload.get("manual", ())),
            field_sources=dict(payload.get("sources", {})),
        )
    return out


def _check_field_sources(
    given: dict[str, Any], main_profile_id: str, merged_ids: list[str]
) -> dict[str, Any]:
    """FieldSourceProfileIds as {field: profile id, "Attributes": {key: profile id}}, checked
    to name only profiles taking part in the merge."""
    allowed = {main_profile_id, *merged_ids}
    out: dict[str, Any] = {}
    for name, value in given.items():
        if value is None:
            continue
        if name not in PROFILE_FIELDS:
            raise BadRequest(f"FieldSourceProfileIds names an unknown field {name}.")
        if name == "Attributes":
            if not isinstance(value, dict):
                raise BadRequest("FieldSourceProfileIds.Attributes must map keys to profile ids.")
            for key, pid in value.items():
                if pid not in allowed:
                    raise BadRequest(
                        f"FieldSourceProfileIds.Attributes.{key} names the profile {pid}, "
                        "which is not part of this merge."
                    )
            out[name] = dict(value)
        elif value not in allowed:
            raise BadRequest(
                f"FieldSourceProfileIds.{name} names the profile {value}, "
                "which is not part of this merge."
            )
        else:
            out[name] = value
    return out


def _merge_fields(
    main: ProfileRecord,
    others: list[ProfileRecord],
    sources: dict[str, Any],
    records: dict[str, ProfileRecord],
) -> None:
    """Union the standard fields into `main` in place (spec §5.3): a field the main profile
    lacks comes from the first merged profile that has it; on conflict the main value stays,
    unless FieldSourceProfileIds names a profile, whose value is taken even when empty.
    Attributes are merged key by key; addresses as a whole (the API names them as a whole);
    Gender with GenderString and PartyType with PartyTypeString as one (`unit_members`): the
    profile FieldSourceProfileIds.Gender names gives its gender whichever of the two holds it,
    and a main profile with either keeps its own."""
    for name in PROFILE_FIELDS:
        if name == "Attributes":
            continue
        members = unit_members(name)
        if name != members[0]:
            continue  # taken with its unit
        chosen = next((sources[m] for m in members if sources.get(m) is not None), None)
        if chosen is not None:
            for member in members:
                _take(main, records[chosen], member)
        elif not any(m in main.fields for m in members):
            donor = next((o for o in others if any(m in o.fields for m in members)), None)
            if donor is not None:
                for member in members:
                    _take(main, donor, member)
    attribute_sources: dict[str, str] = sources.get("Attributes", {})
    keys = dict.fromkeys(
        [*main.fields.get("Attributes", {}), *attribute_sources]
        + [k for o in others for k in o.fields.get("Attributes", {})]
    )
    # Every key is chosen against the main profile as it was before any key was taken (a key
    # taken changes only its own path), then all are taken in one pass: taking them one by
    # one would copy the Attributes and rescan the setters once per key, quadratic in them.
    held = main.fields.get("Attributes", {})
    takes: list[tuple[str, ProfileRecord]] = []
    for key in keys:
        chosen = attribute_sources.get(key)
        if chosen is not None:
            takes.append((key, records[chosen]))
        elif key not in held:
            donor = next((o for o in others if key in o.fields.get("Attributes", {})), None)
            if donor is not None:
                takes.append((key, donor))
    _take_parts(main, "Attributes", takes)


def _take(main: ProfileRecord, donor: ProfileRecord, name: str) -> None:
    if donor is main:
        return
    value = donor.fields.get(name)
    if value in (None, "", {}):
        main.fields.pop(name, None)
    else:
        main.fields[name] = value
    _take_paths(main, donor, lambda path: path == name or path.startswith(name + "."))


def _take_parts(main: ProfileRecord, name: str, takes: Sequence[tuple[str, ProfileRecord]]) -> None:
    """Take members of a structured field `name` (Attributes keys, address parts), each (part,
    donor) from its donor, in one pass over the field and over the setters, however many."""
    takes = [(part, donor) for part, donor in takes if donor is not main]
    if not takes:
        return
    # A copy: the field may be shared with the record it was taken from whole.
    container = dict(main.fields.get(name, {}))
    for part, donor in takes:
        value = donor.fields.get(name, {}).get(part)
        if value in (None, ""):
            container.pop(part, None)
        else:
            container[part] = value
    if container:
        main.fields[name] = container
    else:
        main.fields.pop(name, None)
    _take_exact_paths(main, [(f"{name}.{part}", donor) for part, donor in takes])


def _take_paths(main: ProfileRecord, donor: ProfileRecord, covers: Any) -> None:
    """Whether a field was set by a person, and by which object type, follows its value."""
    main.manual_fields = {p for p in main.manual_fields if not covers(p)}
    main.manual_fields |= {p for p in donor.manual_fields if covers(p)}
    main.field_sources = {p: s for p, s in main.field_sources.items() if not covers(p)}
    main.field_sources.update({p: s for p, s in donor.field_sources.items() if covers(p)})


def _take_exact_paths(main: ProfileRecord, takes: Sequence[tuple[str, ProfileRecord]]) -> None:
    """`_take_paths` for single paths, each (path, donor), by lookup rather than by a scan of
    the setters per path. New sets, as `_take_paths` makes: the old ones may be shared."""
    manual = set(main.manual_fields)
    sources = dict(main.field_sources)
    for path, donor in takes:
        manual.discard(path)
        if path in donor.manual_fields:
            manual.add(path)
        sources.pop(path, None)
        if path in donor.field_sources:
            sources[path] = donor.field_sources[path]
    main.manual_fields = manual
    main.field_sources = sources


def _take_all(target: ProfileRecord, takes: Sequence[tuple[str, ProfileRecord]]) -> None:
    """Take field paths ("FirstName", "Attributes.Tier"), each (path, donor), in order, the
    members of one structured field that follow each other in one pass (`_take_parts`)."""
    index = 0
    while index < len(takes):
        path, donor = takes[index]
        name, _, part = path.partition(".")
        if not part:
            _take(target, donor, name)
            index += 1
            continue
        end = index
        while end < len(takes) and takes[end][0].partition(".")[0] == name and "." in takes[end][0]:
            end += 1
        _take_parts(target, name, [(p.partition(".")[2], d) for p, d in takes[index:end]])
        index = end


def _image(record: ProfileRecord) -> dict[str, Any]:
    return {
        # A copy: merging changes the main record's fields in place.
        "payload": copy.deepcopy(record.sealed_payload()),
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
    }


def _origin_on_main(origin: str) -> str:
    """The origin a merged profile's key row took on the main profile, for a log written
    before a derived row's origin there was logged (`_derived_origin`; "on_main")."""
    return MERGED_ORIGIN if origin == DERIVED_ORIGIN else origin


def _main_origin(key: dict[str, Any], origin: str) -> str:
    """The origin the row of a logged moved key has on the main profile (`origin`: its logged
    origin on the merged profile, as `_log_origins` names it)."""
    on_main = key.get("on_main")
    return on_main if isinstance(on_main, str) else _origin_on_main(origin)


def _derived_origin(
    tx: Tx, cipher: DomainCipher, record: ProfileRecord, key_name: str, digest: bytes
) -> str:
    """The origin on the main profile of a merged profile's derived key row (`_email` and the
    like, given by its standard fields): the object type that wrote the field it comes from,
    so that DeleteProfileObjectType, which scrubs that field from the live profiles, removes
    the value it gave along with the type's own key rows; else `MERGED_ORIGIN`.

    A value held by a field a person set (or no type wrote), or by the profile's id, is
    `MERGED_ORIGIN`: deleting a type never erases it. A `_fullName` goes with the first of its
    parts an object type wrote, and a value two fields hold (an e-mail address in two e-mail
    fields) with the first of them (in `profiles.keys` order) when every holder is a type's:
    one row has one origin, so where two types share a value, deleting the first removes it
    although the second still gives it on the merged profile."""
    region = tx.settings.default_phone_region
    content_type = PREDEFINED_CONTENT_TYPES.get(key_name)
    if content_type is None or key_name == "_profileId":
        return MERGED_ORIGIN
    if key_name == "_fullName":
        holders = [[n for n in NAME_FIELDS if record.fields.get(n)]]
    else:
        fields = {"_phone": PHONE_FIELDS, "_email": EMAIL_FIELDS, "_account": ("AccountNumber",)}
        holders = [
            [n]
            for n in fields.get(key_name, ())
            if record.fields.get(n)
            and (normal := normalize(content_type, record.fields[n], phone_region=region))
            and cipher.digest(key_name, normal) == digest
        ]
    types: list[str] = []
    for paths in holders:
        written = [
            record.field_sources[p]["type"]
            for p in paths
            if p not in record.manual_fields
            and isinstance(record.field_sources.get(p, {}).get("type"), str)
        ]
        if not written:
            return MERGED_ORIGIN  # a holder no type deletion scrubs keeps the value
        types.append(written[0])
    return types[0] if types else MERGED_ORIGIN


def _key_pairs(tx: Tx, domain_name: str, profile_id: str) -> set[tuple[str, bytes]]:
    return {
        (r.key_name, bytes(r.digest))
        for r in tx.conn.execute(
            select(profile_key.c.key_name, profile_key.c.digest).where(
                profile_key.c.domain_name == domain_name, profile_key.c.profile_id == profile_id
            )
        )
    }


def _move_keys(
    tx: Tx,
    cipher: DomainCipher,
    domain_name: str,
    main_id: str,
    merged: dict[str, ProfileRecord],
) -> list[dict[str, Any]]:
    """Move every key row of the `merged` profiles (by id, in merge order) to the main
    profile; returns what moved, the origin its row took there ("on_main": the same, but for
    a derived row, `_derived_origin`) and whether the main profile got a new row (False: it
    had that value from the same origin already)."""
    merged_ids = list(merged)
    present = {
        (r.key_name, bytes(r.digest), r.origin)
        for r in tx.conn.execute(
            select(profile_key.c.key_name, profile_key.c.digest, profile_key.c.origin).where(
                profile_key.c.domain_name == domain_name, profile_key.c.profile_id == main_id
            )
        )
    }
    # Taken off the merged profiles in one statement, so the rows that move are exactly those
    # logged: a key written between a read and a delete would otherwise be lost.
    rows = list(
        tx.conn.execute(
            delete(profile_key)
            .where(
                profile_key.c.domain_name == domain_name, profile_key.c.profile_id.in_(merged_ids)
            )
            .returning(*profile_key.c)
        )
    )
    moved: list[dict[str, Any]] = []
    inserts: list[dict[str, Any]] = []
    # In a set order (a DELETE returns its rows in none), so the log reads the same every time.
    ordered = sorted(
        rows,
        key=lambda r: (merged_ids.index(r.profile_id), r.key_name, bytes(r.digest), r.origin),
    )
    for row in ordered:
        digest = bytes(row.digest)
        value = cipher.open_record(
            KEY_TABLE, key_record_id(row.profile_id, row.key_name, digest), bytes(row.value_sealed)
        )["value"]
        origin = row.origin
        if origin == DERIVED_ORIGIN:
            origin = _derived_origin(tx, cipher, merged[row.profile_id], row.key_name, digest)
        inserted = (row.key_name, digest, origin) not in present
        if inserted:
            present.add((row.key_name, digest, origin))
            inserts.append(
                sealed_key_row(cipher, domain_name, main_id, row.key_name, digest, value, origin)
            )
        moved.append(
            {
                "from": row.profile_id,
                "key_name": row.key_name,
                "digest": digest.hex(),
                "origin": row.origin,
                "on_main": origin,
                "value": value,
                "inserted": inserted,
            }
        )
    if inserts:
        tx.conn.execute(_INSERT_KEYS[tx.conn.dialect.name], inserts)
    return moved


def _move_objects(
    tx: Tx, domain_name: str, main_id: str, merged_ids: list[str]
) -> list[dict[str, Any]]:
    condition = and_(
        profile_object.c.domain_name == domain_name, profile_object.c.profile_id.in_(merged_ids)
    )
    rows = list(
        tx.conn.execute(
            select(
                profile_object.c.profile_id,
                profile_object.c.object_type_name,
                profile_object.c.unique_digest,
            ).where(condition)
        )
    )
    tx.conn.execute(update(profile_object).where(condition).values(profile_id=main_id))
    return [
        {
            "from": r.profile_id,
            "type": r.object_type_name,
            "unique_digest": bytes(r.unique_digest).hex(),
        }
        for r in sorted(rows, key=lambda r: (r.profile_id, r.object_type_name, r.unique_digest))
    ]


# ---------------------------------------------------------------------------- the merge log


def list_merges(
    tx: Tx, *, domain_name: str, profile_id: str | None = None, limit: int = 100
) -> list[MergeRecord]:
    """The domain's merges, newest first (optionally only those into `profile_id`)."""
    tx.cipher(domain_name)  # NotFound for an unknown domain
    query = (
        select(merge_log)
        .where(merge_log.c.domain_name == domain_name)
        .order_by(merge_log.c.created_at.desc(), merge_log.c.merge_id)
        .limit(limit)
    )
    if profile_id is not None:
        query = query.where(merge_log.c.main_profile_id == profile_id)
    return [_record(row) for row in tx.conn.execute(query)]


def get_merge(tx: Tx, *, domain_name: str, merge_id: str) -> MergeRecord:
    """One merge with what came from where (opened from the sealed log)."""
    cipher = tx.cipher(domain_name)
    row = _log_row(tx, domain_name, merge_id)
    undo = None
    if row.undo_sealed is not None:
        undo = cipher.open_record(MERGE_TABLE, f"{merge_id}/undo", bytes(row.undo_sealed))
    return _details(_record(row), _open_log(cipher, row), undo)


def _log_row(tx: Tx, domain_name: str, merge_id: str, *, for_update: bool = False) -> Any:
    query = select(merge_log).where(
        merge_log.c.domain_name == domain_name, merge_log.c.merge_id == merge_id
    )
    row = tx.conn.execute(query.with_for_update() if for_update else query).first()
    if row is None:
        raise NotFound(f"The merge {merge_id} does not exist in domain {domain_name}.")
    return row


def _open_log(cipher: DomainCipher, row: Any) -> dict[str, Any]:
    return cipher.open_record(MERGE_TABLE, row.merge_id, bytes(row.sealed))


def _record(row: Any) -> MergeRecord:
    return MergeRecord(
        merge_id=row.merge_id,
        domain_name=row.domain_name,
        main_profile_id=row.main_profile_id,
        merged_profile_ids=tuple(row.merged_profile_ids),
        created_at=row.created_at,
        undone_at=row.undone_at,
    )


def _details(
    record: MergeRecord, payload: dict[str, Any], undo: dict[str, Any] | None
) -> MergeRecord:
    flat: dict[str, str] = {}
    for name, value in payload["field_sources"].items():
        if isinstance(value, dict):
            flat.update({f"{name}.{k}": v for k, v in value.items()})
        else:
            flat[name] = value
    record.field_sources = flat
    record.fields_taken = _fields_taken(record, payload, flat)
    record.moved_keys = tuple(
        MovedKey(k["from"], k["key_name"], k["value"]) for k in payload["keys"]
    )
    record.moved_objects = tuple(
        MovedObject(o["from"], o["type"], o["unique_digest"]) for o in payload["objects"]
    )
    if undo is not None:
        record.undo = _undo_from_dict(record.merge_id, undo)
    return record


def _fields_taken(
    record: MergeRecord, payload: dict[str, Any], asked: dict[str, str]
) -> dict[str, str]:
    """Which merged profile each field of the merged result came from, as the merge takes
    fields (`_merge_fields`): a top-level field whole (an Address with all its lines, Gender
    with GenderString), an attribute by its key (`Attributes.tier`). Named: a field whose value
    after the merge is not the main profile's before it, and is a merged profile's (the first,
    in the merge's order, holding it); and the fields FieldSourceProfileIds named (`asked`),
    as named. Read from the log's images, so a merge logged before this was shown tells it
    too; a value erased from the log since (DeleteProfile of a merged profile) is not told."""
    images = payload.get("profiles", {})

    def units(fields: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in fields.items():
            if name == "Attributes" and isinstance(value, dict):
                out.update({f"Attributes.{key}": v for key, v in value.items()})
            else:
                members = unit_members(name)
                out[members[0]] = tuple(fields.get(member) for member in members)
        return out

    def before(pid: str) -> dict[str, Any]:
        image = images.get(pid) or {}
        return units(image.get("payload", {}).get("fields", {}))

    after = units(payload.get("main_after", {}).get("fields", {}))
    main_before = before(record.main_profile_id)
    merged_before = [(pid, before(pid)) for pid in record.merged_profile_ids]
    taken: dict[str, str] = {}
    for unit, value in after.items():
        if main_before.get(unit) == value:
            continue
        source = next((pid for pid, held in merged_before if held.get(unit) == value), None)
        if source is not None:
            taken[unit] = source
    for path, pid in asked.items():
        unit = path if path.startswith("Attributes.") else unit_members(path)[0]
        if pid == record.main_profile_id:
            taken.pop(unit, None)
        else:
            taken[unit] = pid
    return dict(sorted(taken.items()))


# ---------------------------------------------------------------------------- undoing


def undo_merge(tx: Tx, *, domain_name: str, merge_id: str) -> UndoResult:
    """Restore the merged profiles, their fields, keys and objects as they were before the
    merge. Data that arrived on the main profile after the merge stays there (listed in the
    result), and main-profile fields written since the merge keep their later value (the rule:
    `_restore_main_fields`)."""
    from openprofiles.identity.matching import no_auto_merge

    with no_auto_merge():
        return _undo_merge(tx, domain_name=domain_name, merge_id=merge_id)


def _undo_merge(tx: Tx, *, domain_name: str, merge_id: str) -> UndoResult:
    cipher = tx.cipher(domain_name)
    row = _log_row(tx, domain_name, merge_id)
    main_id: str = row.main_profile_id
    merged_ids: list[str] = list(row.merged_profile_ids)
    if not tx.services.database.is_sqlite:
        # The profiles first (the order every profile writer locks in), then the log row,
        # read again: a concurrent undo of this merge, or a merge or delete of these profiles,
        # has committed by then, and what is checked below is its result. Before them, the
        # ContentTypes of the keys, held as AddProfileKey holds them: the keys go back under
        # the digests the log has, which a change of a key's ContentType rewrites, with the
        # rows (`redigest_logged_keys`); rows put back after its re-digest ran would keep the
        # old ones.
        profiles_service.hold_key_content_types(tx, domain_name=domain_name)
        lock_profiles(tx, domain_name=domain_name, profile_ids=[main_id, *merged_ids])
        row = _log_row(tx, domain_name, merge_id, for_update=True)
    if row.undone_at is not None:
        raise BadRequest(f"The merge {merge_id} was already undone.")
    payload = _open_log(cipher, row)
    current = {
        r.profile_id: r
        for r in tx.conn.execute(
            select(profile).where(
                profile.c.domain_name == domain_name,
                profile.c.profile_id.in_([main_id, *merged_ids]),
            )
        )
    }
    main_row = current.get(main_id)
    if main_row is None:
        raise BadRequest(f"The main profile {main_id} was deleted since the merge.")
    if main_row.merged_into is not None:
        raise BadRequest(
            f"The main profile {main_id} was merged into {main_row.merged_into} since; "
            "undo that merge first."
        )
    for pid in merged_ids:
        if pid not in current or current[pid].merged_into != main_id:
            raise BadRequest(f"The profile {pid} is no longer merged into {main_id}.")

    # Object types deleted since the merge: what they wrote stays deleted (spec §1.8).
    origins = _log_origins(payload)
    gone = _types_deleted_since(tx, domain_name, payload, origins, row.created_at)
    # Later merges into the same main profile that still stand: what they rely on stays, and
    # their logs are rewritten as if this merge had never been (see `_StandingMerge`).
    later = _later_standing_merges(tx, cipher, domain_name, main_id, row, payload)
    dropped: list[DroppedField] = []

    # The merged profiles come back as they were, with their derived keys recomputed.
    tx.conn.execute(
        update(profile)
        .where(profile.c.domain_name == domain_name, profile.c.profile_id.in_(merged_ids))
        .values(merged_into=None)
    )
    for pid in merged_ids:
        record = _from_image(pid, payload["profiles"][pid], version=current[pid].version)
        # As it was before the merge, over the size limit if it was: a copy logged before there
        # was a limit may be, and refusing it would leave the customer's data merged.
        before_size = profile_size(record)
        dropped += _drop_deleted_sources(record, gone)
        save_profile(tx, domain_name=domain_name, record=record, may_reach=before_size)

    # Keys go back to their profiles; the rows the merge added to the main profile leave it. A
    # key whose row is no longer on the main profile was deleted since (DeleteProfileKey, or
    # with its object type): it stays deleted, as an object deleted since does.
    keys_back = 0
    restore: list[dict[str, Any]] = []
    missing_keys: set[tuple[str, str]] = set()
    # Rows this undo took off the main profile: one merged profile's row of a value another
    # merged profile of this merge also had (logged after it, as not inserted) was there.
    taken: set[tuple[str, str, str]] = set()
    for key, origin in zip(payload["keys"], origins, strict=True):
        digest = bytes.fromhex(key["digest"])
        if origin in gone:
            # Its rows went with the type; a row of that name on the main profile now was
            # indexed after the deletion, and stays (listed as kept if the main lacked it).
            missing_keys.add((key["key_name"], key["value"]))
            continue
        main_origin = _main_origin(key, origin)
        if main_origin in gone:
            # A derived row that took its field's object type as origin (`_derived_origin`)
            # went with the type, as the field did from the restored profile (listed as
            # dropped); a row of that origin now is a type of that name defined since.
            continue
        if (key["key_name"], origin) == (CONTACT_KEY, EXPLICIT_ORIGIN):
            main_origin = _contact_link_origin(tx, domain_name, main_id, digest)
        on_main = and_(
            profile_key.c.domain_name == domain_name,
            profile_key.c.profile_id == main_id,
            profile_key.c.key_name == key["key_name"],
            profile_key.c.digest == digest,
            profile_key.c.origin == main_origin,
        )
        # A row this merge added stays when a later merge still standing logged it too (it
        # relies on it: finding it there, that merge did not insert it); `_pass_key_on` makes
        # that merge's undo the one that takes it away.
        row_on_main = (key["key_name"], key["digest"], main_origin)
        if key["inserted"] and not _pass_key_on(later, *row_on_main):
            still_there = bool(tx.conn.execute(delete(profile_key).where(on_main)).rowcount)
            if still_there:
                taken.add(row_on_main)
        elif row_on_main in taken:
            still_there = True
        else:
            found = tx.conn.execute(select(profile_key.c.key_name).where(on_main)).first()
            still_there = found is not None
        if origin == DERIVED_ORIGIN:
            keys_back += 1  # recomputed from the restored profile's fields
            continue
        if not still_there:
            missing_keys.add((key["key_name"], key["value"]))
            continue
        keys_back += 1
        back_as = RELINKED_ORIGIN if main_origin == RELINKED_ORIGIN else origin
        restore.append(
            sealed_key_row(
                cipher, domain_name, key["from"], key["key_name"], digest, key["value"], back_as
            )
        )
    if restore:
        tx.conn.execute(_INSERT_KEYS[tx.conn.dialect.name], restore)

    # Objects go back if they are still on the main profile.
    objects_back = 0
    missing: list[KeptObject] = []
    moved_pairs: set[tuple[str, str]] = set()
    for obj in payload["objects"]:
        moved_pairs.add((obj["type"], obj["unique_digest"]))
        back = tx.conn.execute(
            update(profile_object)
            .where(
                profile_object.c.domain_name == domain_name,
                profile_object.c.object_type_name == obj["type"],
                profile_object.c.unique_digest == bytes.fromhex(obj["unique_digest"]),
                profile_object.c.profile_id == main_id,
            )
            .values(profile_id=obj["from"])
        )
        if back.rowcount:
            objects_back += 1
        else:
            missing.append(KeptObject(obj["type"], obj["unique_digest"]))
    kept_objects = [
        KeptObject(r.object_type_name, bytes(r.unique_digest).hex())
        for r in tx.conn.execute(
            select(profile_object.c.object_type_name, profile_object.c.unique_digest)
            .where(
                profile_object.c.domain_name == domain_name,
                profile_object.c.profile_id == main_id,
                profile_object.c.created_at > row.created_at,
            )
            .order_by(profile_object.c.object_type_name, profile_object.c.unique_digest)
        )
    ]

    main_fields = _restore_main_fields(
        tx, cipher, domain_name, main_row, payload, row.created_at, gone, later
    )
    for standing in later:
        if standing.changed:
            tx.conn.execute(
                update(merge_log)
                .where(
                    merge_log.c.domain_name == domain_name,
                    merge_log.c.merge_id == standing.row.merge_id,
                )
                .values(
                    sealed=cipher.seal_record(MERGE_TABLE, standing.row.merge_id, standing.payload)
                )
            )
    dropped += main_fields.dropped
    kept_keys = _keys_added_since(tx, cipher, domain_name, main_id, payload)

    result = UndoResult(
        merge_id=merge_id,
        main_profile_id=main_id,
        restored_profile_ids=tuple(merged_ids),
        objects_moved_back=objects_back,
        keys_moved_back=keys_back,
        kept_objects=tuple(kept_objects),
        kept_keys=tuple(kept_keys),
        kept_fields=tuple(main_fields.kept),
        missing_objects=tuple(missing),
        reverted_fields=tuple(main_fields.reverted),
        main_written_since=main_fields.written_since,
        missing_keys=tuple(KeptKey(n, v) for n, v in sorted(missing_keys)),
        dropped_fields=tuple(dropped),
    )
    tx.conn.execute(
        update(merge_log)
        .where(merge_log.c.domain_name == domain_name, merge_log.c.merge_id == merge_id)
        .values(
            undone_at=tx.now,
            undo_sealed=cipher.seal_record(MERGE_TABLE, f"{merge_id}/undo", _undo_to_dict(result)),
        )
    )
    return result


def _contact_link_origin(tx: Tx, domain_name: str, main_id: str, digest: bytes) -> str:
    """The origin of an agent's contact link (`_ctrContactId`, explicit) that a merge moved to
    the main profile, as it is there now: a link of the contact to another profile since marks
    it `RELINKED_ORIGIN` (contacts.links), the same row, which an undo gives back marked so
    that the later link still wins."""
    origins = set(
        tx.conn.execute(
            select(profile_key.c.origin).where(
                profile_key.c.domain_name == domain_name,
                profile_key.c.profile_id == main_id,
                profile_key.c.key_name == CONTACT_KEY,
                profile_key.c.digest == digest,
            )
        ).scalars()
    )
    if EXPLICIT_ORIGIN not in origins and RELINKED_ORIGIN in origins:
        return RELINKED_ORIGIN
    return EXPLICIT_ORIGIN


def _log_origins(payload: dict[str, Any]) -> list[str]:
    """The origin of each key a merge log lists, named as from migration 0017 on."""
    legacy = payload.get("origins") != 2
    return [
        _LEGACY_ORIGINS.get(k["origin"], k["origin"]) if legacy else k["origin"]
        for k in payload["keys"]
    ]


@dataclass
class _StandingMerge:
    """A merge into the main profile of a merge being undone, made after it and not undone.

    Its log was written on top of the undone merge: a key row the undone merge had added was
    found on the main profile and logged as not inserted (the undo of this merge would leave
    it), and the main profile's before-image holds the fields the undone merge gave, where
    this merge's own profiles then lost to the main profile (the main wins on conflict). An
    undo keeps what such a merge relies on, and rewrites its log as if the undone merge had
    never been (`changed`: the log is sealed again), so that undoing it later in turn takes
    away what it then brought and leaves the main profile as it was before both."""

    row: Any
    payload: dict[str, Any]
    changed: bool = False


def _later_standing_merges(
    tx: Tx,
    cipher: DomainCipher,
    domain_name: str,
    main_id: str,
    row: Any,
    payload: dict[str, Any],
) -> list[_StandingMerge]:
    """The merges into `main_id` made after the merge `row` and still standing, oldest first.

    Ordered by the main profile's version each merge left (every merge saves the main profile,
    so it grows with each; merges of one transaction share a time), logs written before the
    version was recorded first, by time. The undo holds the main profile's lock, which an undo
    of any of them takes too: none changes meanwhile."""

    def made(log_row: Any, log: dict[str, Any]) -> tuple[bool, int, datetime]:
        return ("main_version" in log, log.get("main_version", 0), log_row.created_at)

    mine = made(row, payload)
    later: list[_StandingMerge] = []
    for other in tx.conn.execute(
        select(merge_log)
        .where(
            merge_log.c.domain_name == domain_name,
            merge_log.c.main_profile_id == main_id,
            merge_log.c.undone_at.is_(None),
            merge_log.c.merge_id != row.merge_id,
        )
        .with_for_update()
    ):
        log = _open_log(cipher, other)
        if made(other, log) > mine:
            later.append(_StandingMerge(other, log))
    return sorted(later, key=lambda s: made(s.row, s.payload))


def _pass_key_on(
    later: list[_StandingMerge], key_name: str, digest_hex: str, origin_on_main: str
) -> bool:
    """Whether a later standing merge logged the main profile's key row (`key_name`, digest,
    origin on the main profile), so that it must stay; if so, the first of them that logged it
    as not inserted (all of them, when none inserted it) now owns it: its undo removes it,
    unless another merge then standing relies on it in turn."""
    logged = [
        (standing, key)
        for standing in later
        for key, origin in zip(
            standing.payload["keys"], _log_origins(standing.payload), strict=True
        )
        if key["key_name"] == key_name
        and key["digest"] == digest_hex
        and _main_origin(key, origin) == origin_on_main
    ]
    if not logged:
        return False
    if not any(key["inserted"] for _, key in logged):
        standing, key = logged[0]
        key["inserted"] = True
        standing.changed = True
    return True


def _from_image(profile_id: str, image: dict[str, Any], *, version: int) -> ProfileRecord:
    payload = image["payload"]
    return ProfileRecord(
        profile_id=profile_id,
        fields=payload["fields"],
        version=version,
        created_at=datetime.fromisoformat(image["created_at"]),
        updated_at=datetime.fromisoformat(image["updated_at"]),
        manual_fields=set(payload.get("manual", ())),
        field_sources=dict(payload.get("sources", {})),
    )


def _types_deleted_since(
    tx: Tx, domain_name: str, payload: dict[str, Any], origins: list[str], merged_at: datetime
) -> set[str]:
    """The object types that wrote a field of a logged before-image, or a logged key, and were
    deleted since the merge: they have no row now, or one created after the merge (deleted and
    defined again; what the old one wrote went with it). Markers ('@...') and standard object
    types ('_...', never deleted) are not types that can be."""
    names = {
        source.get("type")
        for image in payload["profiles"].values()
        for source in image["payload"].get("sources", {}).values()
    }
    names.update(origins)
    names = {n for n in names if isinstance(n, str) and n and n[0] not in "@_"}
    if not names:
        return set()
    existing = {
        r.name
        for r in tx.conn.execute(
            select(object_type.c.name).where(
                object_type.c.domain_name == domain_name,
                object_type.c.name.in_(names),
                object_type.c.created_at <= merged_at,
            )
        )
    }
    return names - existing


def _drop_deleted_sources(record: ProfileRecord, gone: set[str]) -> list[DroppedField]:
    """Scrub from `record` what the deleted object types `gone` wrote, as DeleteProfileObjectType
    does (objects.service.delete_objects_of_type): the source goes, and the value unless a person
    set it. Returns the paths whose value went."""
    dropped: list[DroppedField] = []
    for path, source in list(record.field_sources.items()):
        if source.get("type") not in gone:
            continue
        del record.field_sources[path]
        if path in record.manual_fields:
            continue
        name, _, part = path.partition(".")
        inner = record.fields.get(name)
        if part and isinstance(inner, dict):
            inner.pop(part, None)
            if not inner:
                record.fields.pop(name, None)
        else:
            record.fields.pop(name, None)
        dropped.append(DroppedField(record.profile_id, path, source["type"]))
    return dropped


@dataclass(frozen=True)
class _MainFields:
    """What undoing a merge did to the main profile's fields (paths as in `_field_paths`)."""

    kept: list[str]
    reverted: list[str]
    written_since: bool
    # Paths that would have been put back, but their object type was deleted since the merge.
    dropped: list[DroppedField]


def _restore_main_fields(
    tx: Tx,
    cipher: DomainCipher,
    domain_name: str,
    main_row: Any,
    payload: dict[str, Any],
    merged_at: datetime,
    gone: set[str],
    later: list[_StandingMerge],
) -> _MainFields:
    """Revert what the merge changed on the main profile, path by path: a plain field whole,
    an address part by part and Attributes key by key, as UpdateProfile and ingestion write
    them (a later write of one address part must not keep the rest of an address the merge
    brought, nor lose that part).

    The rule: a later write wins over the before-image. A path the merge changed is kept when
    it was written after the merge, as far as the profile shows it: its value, or who set it
    (a person, or which object type: a write by another setter), differs from what the merge
    left; otherwise it is put back as it was before the merge. A later write that set the
    very value the merge left, by the same setter (UpdateProfile sending back the merged value
    of a field a person had set), leaves no trace the profile keeps, so it is reverted too;
    the value is not lost, it goes back with the profile it came from. So as not to hide that,
    the result says whether the main profile was written at all since the merge, next to the
    paths it reverted.

    A later merge still standing (`later`) that found the merge's value is no later write: it
    is replayed on what is put back (`_replay_later_merges`), and a path takes the value the
    main profile would have had without this merge (that merge's profile's value, where the
    main profile lacked one), listed as reverted if its value changes and kept if not.

    What an object type deleted since the merge (`gone`) wrote is not put back: a path it set
    before the merge is reverted to nothing, as its deletion scrubbed it, and listed as dropped.

    The profile may come out as large as the size limit, its size now, or its size before the
    merge, whichever is largest; larger, the undo is refused (BadRequest, nothing changed),
    saying what to cut first. Were it not bounded, each round of merging away the main
    profile's Attributes, filling it again with UpdateProfile, and undoing would add the old
    keys beside the new ones."""
    main_id = main_row.profile_id
    before = _from_image(main_id, payload["profiles"][main_id], version=0)
    restored = _from_image(main_id, copy.deepcopy(payload["profiles"][main_id]), version=0)
    scrubbed = {d.path: d for d in _drop_deleted_sources(restored, gone)}
    after = _from_image(
        main_id, {**payload["profiles"][main_id], "payload": payload["main_after"]}, version=0
    )
    now_payload = cipher.open_record(PROFILE_TABLE, main_id, bytes(main_row.sealed))
    now = _from_image(
        main_id,
        {
            "payload": now_payload,
            "created_at": main_row.created_at.isoformat(),
            "updated_at": main_row.updated_at.isoformat(),
        },
        version=main_row.version,
    )
    if "main_version" in payload:
        written_since = main_row.version != payload["main_version"]
    else:  # logged before the version was: the merge's own save stamped it with its time
        written_since = main_row.updated_at > merged_at
    changed = {
        _merge_unit(path)
        for path in _field_paths(before, after)
        if _path_state(before, path) != _path_state(after, path)
    }
    # Per unit the merge changed: the state the main profile is expected to have now, as the
    # last merge that found the undone merge's value left it, and the one to put in its place.
    # Without a later merge on it, that is what this merge left, and the before-image.
    expected = dict.fromkeys(changed, after)
    replaced = dict.fromkeys(changed, restored)
    replayed = _replay_later_merges(tx, domain_name, main_id, later, expected, replaced)
    kept: list[str] = []
    reverted: list[str] = []
    dropped: list[DroppedField] = []
    records = {id(r): r for r in (before, after, *expected.values(), *replaced.values())}
    # Taken once every path is decided, in one pass: a path taken changes only its own state,
    # which no other path's decision reads.
    takes: list[tuple[str, ProfileRecord]] = []
    for path in _field_paths(*records.values()):
        unit = _merge_unit(path)
        if unit not in changed:
            continue
        old, new = expected[unit], replaced[unit]
        if unit not in replayed:
            if _path_state(before, path) == _path_state(after, path):
                continue
        elif _path_state(old, path) == _path_state(new, path) and _path_state(
            before, path
        ) == _path_state(after, path):
            continue
        if _path_state(now, path) != _path_state(old, path):
            kept.append(path)
            continue
        if new is restored and path in scrubbed:
            dropped.append(scrubbed[path])
        elif _path_value(new, path) != _path_value(old, path):
            reverted.append(path)
        elif unit in replayed:
            kept.append(path)  # a later merge gives it the same value
        takes.append((path, new))
    _take_all(now, takes)
    try:
        save_profile(tx, domain_name=domain_name, record=now, may_reach=profile_size(before))
    except ProfileTooLarge as error:
        raise BadRequest(
            f"Undoing this merge would make the profile {main_id} {error.size} bytes: larger "
            f"than the limit of {MAX_PROFILE_BYTES} bytes, than it is now and than it was "
            "before the merge, as the values it held then go back beside those written since. "
            "Remove or shorten fields or Attributes written since the merge, then undo it again."
        ) from None
    return _MainFields(kept, reverted, written_since, dropped)


def _merge_unit(path: str) -> str:
    """What `_merge_fields` takes as a whole that holds a field path: an Attributes key; any
    other field whole, an address with all its parts, and a gender or party type with its
    free-text twin (profiles.models `unit_members`)."""
    name, _, _ = path.partition(".")
    return path if name == "Attributes" else unit_members(name)[0]


def _unit_state(record: ProfileRecord, unit: str) -> tuple[Any, ...]:
    """A merge unit's value and who set each part of it (see `_path_state`)."""
    if "." in unit:
        return _path_state(record, unit)

    members = unit_members(unit)

    def covers(path: str) -> bool:
        return any(path == m or path.startswith(m + ".") for m in members)

    return (
        tuple(record.fields.get(m) for m in members),
        sorted(p for p in record.manual_fields if covers(p)),
        sorted((p, s) for p, s in record.field_sources.items() if covers(p)),
    )


def _take_units(target: ProfileRecord, takes: dict[str, ProfileRecord]) -> None:
    """Take merge units, each unit from its donor. Units hold disjoint paths, so the order
    they are taken in does not matter: sorted, an Attributes key follows another."""
    paths = [
        (path, donor)
        for unit, donor in takes.items()
        for path in ([unit] if "." in unit else unit_members(unit))
    ]
    _take_all(target, sorted(paths, key=lambda take: take[0]))


def _replay_later_merges(
    tx: Tx,
    domain_name: str,
    main_id: str,
    later: list[_StandingMerge],
    expected: dict[str, ProfileRecord],
    replaced: dict[str, ProfileRecord],
) -> set[str]:
    """Replay the later standing merges on what the undo puts back, unit by unit (in
    `expected`/`replaced`, updated in place); returns the units a later merge was replayed on.

    A later merge whose before-image of the main profile holds, for a unit, the state the
    main profile is expected to have (the undone merge's, or what the previous replayed merge
    left) found the undone merge's value there: its before-image takes the replacement
    instead, and its fields are merged again from its logged profiles (`_merge_fields`, less
    what object types deleted since wrote) to give the unit's new replacement. A merge that
    found something else (a write in between) ends the replay of that unit. The rewritten
    before-image and result go into that merge's log, so undoing it later reverts to the main
    profile without the undone merge."""
    active = set(expected)
    replayed: set[str] = set()
    for standing in later:
        log = standing.payload
        image = log["profiles"][main_id]
        seen = _from_image(main_id, copy.deepcopy(image), version=0)
        left = _from_image(
            main_id, {**image, "payload": copy.deepcopy(log["main_after"])}, version=0
        )
        active = {u for u in active if _unit_state(seen, u) == _unit_state(expected[u], u)}
        if not active:
            break
        _take_units(seen, {unit: replaced[unit] for unit in active})
        merged_ids = list(standing.row.merged_profile_ids)
        gone = _types_deleted_since(
            tx, domain_name, log, _log_origins(log), standing.row.created_at
        )
        donors = {
            pid: _from_image(pid, copy.deepcopy(log["profiles"][pid]), version=0)
            for pid in merged_ids
        }
        for donor in donors.values():
            _drop_deleted_sources(donor, gone)
        remade = _from_image(
            main_id, {**image, "payload": copy.deepcopy(seen.sealed_payload())}, version=0
        )
        _merge_fields(
            remade,
            [donors[pid] for pid in merged_ids],
            log["field_sources"],
            {main_id: remade, **donors},
        )
        rewritten = _from_image(
            main_id, {**image, "payload": copy.deepcopy(log["main_after"])}, version=0
        )
        _take_units(rewritten, dict.fromkeys(active, remade))
        for unit in active:
            expected[unit], replaced[unit] = left, remade
        image["payload"] = copy.deepcopy(seen.sealed_payload())
        log["main_after"] = rewritten.sealed_payload()
        standing.changed = True
        replayed |= active
    return replayed


def _field_paths(*records: ProfileRecord) -> list[str]:
    """Field paths in PROFILE_FIELDS order: every plain field by name, and the address and
    Attributes members any of the records has a value or a setter for ("Address.City",
    "Attributes.Tier")."""
    paths: dict[str, None] = {}
    for name in PROFILE_FIELDS:
        if name in WHOLE_VALUE_FIELDS or name not in ("Attributes", *ADDRESS_FIELDS):
            paths[name] = None
            continue
        prefix = name + "."
        members: set[str] = set()
        for record in records:
            members.update(record.fields.get(name, {}))
            members.update(
                p[len(prefix) :]
                for p in (*record.manual_fields, *record.field_sources)
                if p.startswith(prefix)
            )
        paths.update(dict.fromkeys(prefix + m for m in sorted(members)))
    return list(paths)


def _path_value(record: ProfileRecord, path: str) -> Any:
    name, _, part = path.partition(".")
    value = record.fields.get(name)
    return value.get(part) if part and isinstance(value, dict) else value


def _path_state(record: ProfileRecord, path: str) -> tuple[Any, bool, Any]:
    """A path's value and who set it (a person; else which object type, at what priority)."""
    return (
        _path_value(record, path),
        path in record.manual_fields,
        record.field_sources.get(path),
    )


def _keys_added_since(
    tx: Tx, cipher: DomainCipher, domain_name: str, main_id: str, payload: dict[str, Any]
) -> list[KeptKey]:
    """Key values the main profile did not have before the merge and keeps after the undo.

    Called once the undo took away the rows the merge added, so any other row of a value the
    main profile lacked before was indexed after the merge, even for a value that also moved in
    the merge (another object type's row for it: it stays, and is listed). Derived rows follow
    the fields, which `_restore_main_fields` reports."""
    known = {(name, bytes.fromhex(d)) for name, d in payload["main_keys"]}
    kept: list[KeptKey] = []
    for row in tx.conn.execute(
        select(profile_key).where(
            profile_key.c.domain_name == domain_name,
            profile_key.c.profile_id == main_id,
            profile_key.c.origin != DERIVED_ORIGIN,
        )
    ):
        digest = bytes(row.digest)
        if (row.key_name, digest) in known:
            continue
        known.add((row.key_name, digest))  # another source's row for the same value
        value = cipher.open_record(
            KEY_TABLE, key_record_id(main_id, row.key_name, digest), bytes(row.value_sealed)
        )["value"]
        kept.append(KeptKey(row.key_name, value))
    return sorted(kept, key=lambda k: (k.key_name, k.value))


def _undo_to_dict(result: UndoResult) -> dict[str, Any]:
    return {
        "main": result.main_profile_id,
        "restored": list(result.restored_profile_ids),
        "objects_back": result.objects_moved_back,
        "keys_back": result.keys_moved_back,
        "kept_objects": [[o.object_type_name, o.unique_key] for o in result.kept_objects],
        "kept_keys": [[k.key_name, k.value] for k in result.kept_keys],
        "kept_fields": list(result.kept_fields),
        "missing_objects": [[o.object_type_name, o.unique_key] for o in result.missing_objects],
        "reverted_fields": list(result.reverted_fields),
        "written_since": result.main_written_since,
        "missing_keys": [[k.key_name, k.value] for k in result.missing_keys],
        "dropped_fields": [
            [d.profile_id, d.path, d.object_type_name] for d in result.dropped_fields
        ],
    }


def _undo_from_dict(merge_id: str, data: dict[str, Any]) -> UndoResult:
    return UndoResult(
        merge_id=merge_id,
        main_profile_id=data["main"],
        restored_profile_ids=tuple(data["restored"]),
        objects_moved_back=data["objects_back"],
        keys_moved_back=data["keys_back"],
        kept_objects=tuple(KeptObject(t, u) for t, u in data["kept_objects"]),
        kept_keys=tuple(KeptKey(n, v) for n, v in data["kept_keys"]),
        kept_fields=tuple(data["kept_fields"]),
        missing_objects=tuple(KeptObject(t, u) for t, u in data["missing_objects"]),
        # Undone before these were recorded: unknown, shown as none.
        reverted_fields=tuple(data.get("reverted_fields", ())),
        main_written_since=data.get("written_since", False),
        missing_keys=tuple(KeptKey(n, v) for n, v in data.get("missing_keys", ())),
        dropped_fields=tuple(DroppedField(p, f, t) for p, f, t in data.get("dropped_fields", ())),
    )


def forget_deleted_profiles(tx: Tx, domain_name: str, profile_ids: list[str]) -> None:
    """DeleteProfile's part here (profiles.service.on_profiles_deleted): the profiles' match
    digests and features, their places in the last matching job's groups, and every merge log
    that holds their personal data (a merge into them, or an undone merge of them): an erased
    customer stays erased.

    An undone merge kept all its profiles apart from each other (identity.matching._separated);
    its log erased, the others would lose that, and an automatic merge could join two customers
    an operator told apart. So their ids, and only those, stay in `kept_apart`, where a later
    deletion takes its own ids out again."""
    rule_store.forget(tx, domain_name, profile_ids)
    ml_features.forget(tx, domain_name, profile_ids)
    ml_groups.forget_profiles(tx, domain_name, profile_ids)
    # Two deletions of profiles of one undone merge take turns (PostgreSQL): the second must
    # find the log gone and the ids the first kept apart, and rewrite those. Row locks alone do
    # not do it: the second's FOR UPDATE waits for the kept_apart row the first deletes, then
    # skips it as deleted, and the row the first inserted in its place is not in the snapshot
    # of the second's statement, so the second's id would stay kept apart, erased customer and
    # all. So each deletion first takes the domain's kept-apart lock, before it reads either
    # table: the second then reads both once the first committed. It comes after the deleted
    # profiles' rows, against store.advisory's order (named locks before rows), and adds no
    # deadlock: only deletions take it, each at this point, so one waiting for it holds only
    # what a deletion takes before (the rows of the profiles it deletes, which the holder,
    # deleting others, never waits for) and none of the merge_log and kept_apart rows the
    # holder goes on to lock.
    take_locks(tx, [(KEPT_APART_LOCK, domain_name)])
    gone = set(profile_ids)
    logs: set[str] = set()
    for chunk in in_chunks(profile_ids):
        logs.update(
            tx.conn.execute(
                select(merge_log.c.merge_id).where(
                    merge_log.c.domain_name == domain_name,
                    merge_log.c.main_profile_id.in_(chunk),
                )
            ).scalars()
        )
    survivors: dict[str, list[str]] = {}
    for row in tx.conn.execute(
        select(merge_log.c.merge_id, merge_log.c.main_profile_id, merge_log.c.merged_profile_ids)
        .where(merge_log.c.domain_name == domain_name, merge_log.c.undone_at.is_not(None))
        .order_by(merge_log.c.merge_id)
        .with_for_update()
    ):
        involved = {row.main_profile_id, *row.merged_profile_ids}
        if involved & gone:
            logs.add(row.merge_id)
            survivors[row.merge_id] = sorted(involved - gone)
    for row in tx.conn.execute(
        select(kept_apart)
        .where(kept_apart.c.domain_name == domain_name)
        .order_by(kept_apart.c.merge_id)
        .with_for_update()
    ):
        if gone.intersection(row.profile_ids):
            survivors[row.merge_id] = sorted(set(row.profile_ids) - gone)
            tx.conn.execute(
                delete(kept_apart).where(
                    kept_apart.c.domain_name == domain_name,
                    kept_apart.c.merge_id == row.merge_id,
                )
            )
    for chunk in in_chunks(sorted(logs)):
        tx.conn.execute(
            delete(merge_log).where(
                merge_log.c.domain_name == domain_name, merge_log.c.merge_id.in_(chunk)
            )
        )
    # One profile left alone is kept apart from nothing.
    rows = [
        {"domain_name": domain_name, "merge_id": merge_id, "profile_ids": ids}
        for merge_id, ids in survivors.items()
        if len(ids) > 1
    ]
    if rows:
        tx.conn.execute(kept_apart.insert(), rows)


if forget_deleted_profiles not in profiles_service.on_profiles_deleted:
    profiles_service.on_profiles_deleted.append(forget_deleted_profiles)


# ---------------------------------------------------------------------------- erasures


# Merge logs read at once when every log of a domain is rewritten (_rewrite_logs).
REWRITE_PAGE = 200


def forget_deleted_keys(
    tx: Tx, domain_name: str, deleted: Mapping[str, Sequence[tuple[str, bytes]]]
) -> None:
    """DeleteProfileKey's part here, and an erased object's (profiles.service.on_keys_deleted):
    the values (`deleted`: per live profile id, the (key name, digest) pairs) taken off each
    profile leave the merge logs of merges into it or into a profile merged into it (a moved
    key's entry of a merge that stands, and a kept or missing key an undo listed), so that
    neither `merges show` nor an undo brings them back. An entry goes whole: its rows are gone
    from the main profile, where an undo would have found it missing, and a row of the value
    indexed again since is new data, which an undo leaves on the main profile. The moved keys
    of an undone merge stay: they went back to their own profiles.

    Not scrubbed: a value the logged before-images hold in a standard field (an e-mail address
    in EmailAddress): an undo restores the profile it came from with its fields."""
    held = profiles_service.absorbed_profiles(tx, domain_name=domain_name, profile_ids=deleted)
    # Per main profile of a logged merge, the (key name, digest) pairs erased from the live
    # profile that holds it.
    wanted: dict[str, set[tuple[str, str]]] = {}
    for profile_id, pairs in deleted.items():
        erased = {(name, digest.hex()) for name, digest in pairs}
        for main_id in held[profile_id]:
            wanted.setdefault(main_id, set()).update(erased)
    region = tx.settings.default_phone_region
    cipher = tx.cipher(domain_name)
    names = {main_id: {name for name, _ in pairs} for main_id, pairs in wanted.items()}
    content_types: dict[str, ContentType] = {}

    def erased_value(main_id: str, name: str, value: str) -> bool:
        if name not in names[main_id]:
            return False
        if name not in content_types:
            content_types[name] = profiles_service.key_content_type(
                tx, domain_name=domain_name, key_name=name
            )
        # The digest the value's row had (profiles.key_digest): a value with no normal form
        # under the key's ContentType is indexed, and deleted, as written.
        digest = profiles_service.key_digest(
            cipher, name, content_types[name], value, phone_region=region
        )
        return (name, digest.hex()) in wanted[main_id]

    def scrub(payload: dict[str, Any], undo: dict[str, Any] | None, main_id: str) -> None:
        if undo is None:
            payload["keys"] = [
                k for k in payload["keys"] if (k["key_name"], k["digest"]) not in wanted[main_id]
            ]
        else:  # its keys went back to their profiles, which the deletion did not touch
            for listed in ("kept_keys", "missing_keys"):
                undo[listed] = [
                    [n, v] for n, v in undo.get(listed, ()) if not erased_value(main_id, n, v)
                ]

    for mains in in_chunks(sorted(wanted)):
        _rewrite_logs(tx, cipher, domain_name, merge_log.c.main_profile_id.in_(mains), scrub)


def forget_deleted_type(tx: Tx, domain_name: str, object_type_name: str) -> None:
    """DeleteProfileObjectType's part here (object_types.service.on_object_type_deleted):
    what the type wrote leaves every merge log of the domain, as it leaves the live profiles
    (objects.service.delete_objects_of_type; spec §1.8): a moved key's entry whose row was
    the type's (its own key, or a derived key of a field it wrote: `_derived_origin`), and,
    in the logged profile images, the values of the fields it wrote unless a person set them.
    Their sources stay named, so an undo still finds the type deleted since the merge and
    lists the fields as dropped (`_drop_deleted_sources`, which would take the same values).
    An undone merge's result keeps a kept or missing key only while the main profile (or the
    profile it was merged into since) still has a row of it from another source."""
    cipher = tx.cipher(domain_name)
    region = tx.settings.default_phone_region

    def scrub_image(payload: dict[str, Any]) -> None:
        fields, manual = payload["fields"], set(payload.get("manual", ()))
        for path, source in payload.get("sources", {}).items():
            if source.get("type") != object_type_name or path in manual:
                continue
            name, _, part = path.partition(".")
            inner = fields.get(name)
            if part and isinstance(inner, dict):
                inner.pop(part, None)
                if not inner:
                    fields.pop(name, None)
            elif not part:
                fields.pop(name, None)

    def still_held(main_id: str, name: str, value: str) -> bool:
        live = profiles_service.resolve_profile_id(tx, domain_name=domain_name, profile_id=main_id)
        if live is None:
            return False
        content_type = profiles_service.key_content_type(tx, domain_name=domain_name, key_name=name)
        # As the row was indexed (profiles.key_digest): as written when it has no normal form.
        digest = profiles_service.key_digest(cipher, name, content_type, value, phone_region=region)
        found = tx.conn.execute(
            select(profile_key.c.origin).where(
                profile_key.c.domain_name == domain_name,
                profile_key.c.profile_id == live,
                profile_key.c.key_name == name,
                profile_key.c.digest == digest,
                profile_key.c.origin != object_type_name,
            )
        ).first()
        return found is not None

    def scrub(payload: dict[str, Any], undo: dict[str, Any] | None, main_id: str) -> None:
        payload["keys"] = [
            key
            for key, origin in zip(payload["keys"], _log_origins(payload), strict=True)
            if object_type_name not in (origin, _main_origin(key, origin))
        ]
        for image in payload["profiles"].values():
            scrub_image(image["payload"])
        scrub_image(payload["main_after"])
        if undo is not None:
            for listed in ("kept_keys", "missing_keys"):
                undo[listed] = [
                    [n, v] for n, v in undo.get(listed, ()) if still_held(main_id, n, v)
                ]

    _rewrite_logs(tx, cipher, domain_name, None, scrub)


def _rewrite_logs(
    tx: Tx,
    cipher: DomainCipher,
    domain_name: str,
    which: Any,
    scrub: Callable[[dict[str, Any], dict[str, Any] | None, str], None],
) -> None:
    """Open the domain's merge logs (`which`: a condition on merge_log, or None for all),
    locked, let `scrub(payload, undo result or None, main profile id)` change them in place,
    and seal again those it changed.

    The logs are read `REWRITE_PAGE` at a time in merge-id order: a domain's logs hold sealed
    before-images of every merged profile, and DeleteProfileObjectType rewrites all of them,
    so reading them at once would hold them all in memory."""
    query = select(merge_log).where(merge_log.c.domain_name == domain_name)
    if which is not None:
        query = query.where(which)
    after: str | None = None
    while True:
        page_query = query if after is None else query.where(merge_log.c.merge_id > after)
        rows = tx.conn.execute(
            page_query.order_by(merge_log.c.merge_id).limit(REWRITE_PAGE).with_for_update()
        ).all()
        for row in rows:
            _rewrite_log(tx, cipher, domain_name, row, scrub)
        if len(rows) < REWRITE_PAGE:
            return
        after = rows[-1].merge_id


def _rewrite_log(
    tx: Tx,
    cipher: DomainCipher,
    domain_name: str,
    row: Any,
    scrub: Callable[[dict[str, Any], dict[str, Any] | None, str], None],
) -> None:
    """Let `scrub` change one opened merge log; seal and store it again if it changed."""
    payload = _open_log(cipher, row)
    undo = None
    if row.undo_sealed is not None:
        undo = cipher.open_record(MERGE_TABLE, f"{row.merge_id}/undo", bytes(row.undo_sealed))
    before = copy.deepcopy((payload, undo))
    scrub(payload, undo, row.main_profile_id)
    if (payload, undo) == before:
        return
    values: dict[str, Any] = {"sealed": cipher.seal_record(MERGE_TABLE, row.merge_id, payload)}
    if undo is not None:
        values["undo_sealed"] = cipher.seal_record(MERGE_TABLE, f"{row.merge_id}/undo", undo)
    tx.conn.execute(
        update(merge_log)
        .where(merge_log.c.domain_name == domain_name, merge_log.c.merge_id == row.merge_id)
        .values(**values)
    )


def redigest_logged_keys(
    tx: Tx, domain_name: str, key_name: str, content_type: ContentType
) -> None:
    """A key's ContentType changed (profiles.key_reindex.on_key_renormalised): its live rows
    were re-digested from their values, so the merge logs' moved keys of that name are too,
    from the values they log. An undo finds and moves back a moved key by its logged digest,
    and DeleteProfileKey scrubs a standing merge's entry by it (`forget_deleted_keys`): with
    the old digest the undo would leave the value on the main profile, and an erased value
    would stay in the log.

    The main profile's key pairs before the merge ("main_keys", which an undo tells the keys
    added since from) log no value: a pair of the key is re-digested from the value of a row
    of the key the main profile holds now whose digest under some ContentType is the logged
    one (the ContentType in force at the merge is not known here); a pair no row gives stays
    as it was, its value being off the main profile.

    Every log of the domain is read, a page at a time (`_rewrite_logs`), and only those that
    change are sealed again, under their own merge id as always."""
    if key_name in PREDEFINED_CONTENT_TYPES:
        return
    cipher = tx.cipher(domain_name)
    region = tx.settings.default_phone_region

    def digest_of(value: str, kind: ContentType) -> str:
        return key_digest(cipher, key_name, kind, value, phone_region=region).hex()

    def held_by_main(main_id: str) -> dict[str, str]:
        """Every digest under any ContentType of each value of the key on `main_id` now (on
        the profile it was merged into since, if it was: its rows are there until that merge
        is undone, and this one cannot be undone before), mapped to its digest under the new
        one."""
        live = profiles_service.resolve_profile_id(tx, domain_name=domain_name, profile_id=main_id)
        now: dict[str, str] = {}
        if live is None:
            return now
        for row in tx.conn.execute(
            select(profile_key.c.digest, profile_key.c.value_sealed).where(
                profile_key.c.domain_name == domain_name,
                profile_key.c.profile_id == live,
                profile_key.c.key_name == key_name,
            )
        ):
            digest = bytes(row.digest)
            value = cipher.open_record(
                KEY_TABLE, key_record_id(live, key_name, digest), bytes(row.value_sealed)
            )["value"]
            for kind in ContentType:
                now.setdefault(digest_of(value, kind), digest.hex())
        return now

    def redigest(payload: dict[str, Any], undo: dict[str, Any] | None, main_id: str) -> None:
        for key in payload["keys"]:
            if key["key_name"] == key_name:
                key["digest"] = digest_of(key["value"], content_type)
        if undo is None and any(name == key_name for name, _ in payload.get("main_keys", ())):
            now = held_by_main(main_id)
            pairs = {
                (name, now.get(digest, digest) if name == key_name else digest)
                for name, digest in payload["main_keys"]
            }
            payload["main_keys"] = [list(pair) for pair in sorted(pairs)]

    _rewrite_logs(tx, cipher, domain_name, None, redigest)


if forget_deleted_keys not in profiles_service.on_keys_deleted:
    profiles_service.on_keys_deleted.append(forget_deleted_keys)
if forget_deleted_type not in on_object_type_deleted:
    on_object_type_deleted.append(forget_deleted_type)
if redigest_logged_keys not in key_reindex.on_key_renormalised:
    key_reindex.on_key_renormalised.append(redigest_logged_keys)
