"""The one ingestion pipeline (spec §1.6–1.9): every record, whatever its way in
(PutProfileObject, the bulk CLI, contact records, queues), goes through `ingest_batch`;
`ingest_object` is a batch of one.

map (object type) → resolve the profile (PROFILE keys, then SECONDARY keys; a key matching more
than one profile is ambiguous and skipped, except that the CTR-NoInferred and
CTR-AutoAssociateOnly templates reject a record no key resolved when one was ambiguous:
`_unresolved`) → create an inferred profile when allowed → store the
object under its UNIQUE value (replacing the previous one wholesale, moving it if it now
resolves to another profile) → accumulate standard objects (`_profile` fields with manual
protection and SourcePriority; `_asset`/`_case`/`_order`, ...) → persist keys (LOOKUP_ONLY never,
NEW_ONLY only on a profile this ingestion created) → evict / expire.

A record is applied completely or not at all: in a batch, every rejection is decided before
anything of the record is written (the few records applied on their own run in a savepoint),
and a record that cannot be applied yields `IngestRejected` with a reason and a category the
dead-letter queue keeps. Batching is what makes ingestion fast: statements per batch instead of
per record (benchmarks/ingest.py).

Concurrent ingestions of one new customer never create two profiles: on PostgreSQL every key
of the batch is locked (transaction-scoped advisory locks, all taken up front in one global
order before looking up, as store.advisory says every writer does); SQLite has a single
writer, which serialises them already. On PostgreSQL too, the object type is held (shared) for
the whole ingestion, so a concurrent DeleteProfileObjectType either removes what the ingestion
stored or is seen by it; and the profiles found by the keys are locked
(`profiles.service.resolve_locked`) before they are read, so no concurrent writer of one
(another ingestion that found it by another key, UpdateProfile, a merge, DeleteProfile) loses
its change or has one written over its deletion.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, select

from openprofiles.contacts.records import contact_start
from openprofiles.context import Tx
from openprofiles.crypto.domain_keys import DomainCipher
from openprofiles.domains.service import get_domain
from openprofiles.ingest.mapping import ComputedKey, MappedObject, MappingError, map_object
from openprofiles.ingest.size import SizeBounds, record_growth
from openprofiles.object_types.models import ObjectType
from openprofiles.object_types.service import (
    PROFILE_OBJECT_QUOTA,
    find_object_type,
    get_object_type,
    lock_object_type,
    note_implicit_type_used,
)
from openprofiles.object_types.standard_objects import ROOT_IDENTIFIERS
from openprofiles.objects import service as objects
from openprofiles.profiles.keys import derived_key_values
from openprofiles.profiles.models import (
    PROFILE_FIELDS,
    WHOLE_VALUE_FIELDS,
    ProfileRecord,
    unit_members,
)
from openprofiles.profiles.service import (
    DERIVED_ORIGIN,
    DerivedKeys,
    derived_keys,
    get_profile,
    get_profiles,
    hooks_after,
    index_profile_keys,
    insert_key_rows,
    new_profile_record,
    resolve_locked,
    resolve_profile_id,
    save_profile,
    write_profiles,
)
from openprofiles.profiles.size import MAX_PROFILE_BYTES, ProfileTooLarge
from openprofiles.store.advisory import take_locks
from openprofiles.store.in_lists import in_chunks
from openprofiles.store.prepared import PreparedRead
from openprofiles.store.schema import profile, profile_key

CATEGORIES = ("no_profile", "missing_key", "ambiguous", "invalid_value", "transient")


class IngestRejected(Exception):
    """The record cannot be applied; it belongs in the dead-letter queue with this reason.

    `invalid_request`: the record fails the checks spec §1.6 puts before any profile is looked
    for (its UNIQUE key, or every PROFILE key, has no value), which Customer Profiles answers
    synchronously ("The UNIQUE key or PROFILE key does not exist in the profile object"): an
    API call that sent it alone is told so with a BadRequestException (objects.answers).
    Everything else is found once the record is processed, which AWS does asynchronously, so
    the call that sent it succeeds and the record shows up in the dead-letter queue."""

    def __init__(self, reason: str, category: str, *, invalid_request: bool = False) -> None:
        if category not in CATEGORIES:
            raise ValueError(f"unknown rejection category {category!r}")
        super().__init__(reason)
        self.reason = reason
        self.category = category
        self.invalid_request = invalid_request


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
    """Apply one record of `object_type_name` (its parsed `source` and submitted text `raw`):
    a batch of one.

    `object_type` may be given by callers that resolved it already. Raises NotFound for an
    unknown domain or object type (a request error, not a record error) and IngestRejected when
    the record itself cannot be applied (nothing of it is written then).
    """
    (outcome,) = ingest_batch(
        tx,
        domain_name=domain_name,
        object_type_name=object_type_name,
        records=[(source, raw)],
        object_type=object_type,
    )
    if isinstance(outcome, IngestRejected):
        raise outcome
    return outcome


def ingest_batch(
    tx: Tx,
    *,
    domain_name: str,
    object_type_name: str,
    records: Sequence[tuple[Mapping[str, Any], str]],
    object_type: ObjectType | None = None,
    type_locked: bool = False,
) -> list[IngestResult | IngestRejected]:
    """Apply records of one object type in order, each (parsed source, submitted text); the
    outcome of each, in the same order. A rejected record writes nothing and does not stop
    the others; a record sees what the records before it did. `type_locked`: the caller holds
    the type's lock already (object_types.lock_object_type, shared: a contact batch takes it
    to read its integration under it), which is then not taken twice.

    The records are mapped and their key digests computed first; then, for runs of records,
    every candidate profile, stored object and object count is read in a few IN-list queries,
    the records are resolved in order against that state (kept up to date in memory as each
    record applies: `_Run`), and everything is written with one executemany per statement.
    A record that needs what `_Run` does not model (standard objects, a full profile that
    needs an eviction) ends the run: what the run holds is written, and the record is applied
    on its own in a savepoint by `_apply`, reading the database directly.
    """
    cipher = tx.cipher(domain_name)  # NotFound for an unknown domain first
    if not tx.services.database.is_sqlite:
        if not type_locked:
            lock_object_type(tx, domain_name=domain_name, name=object_type_name, shared=True)
        # Read after the lock: a DeleteProfileObjectType it waited for has committed, and the
        # type the caller resolved before (it may have before it took the lock) may be gone.
        object_type = None
    if object_type is None or object_type.name != object_type_name:
        object_type = get_object_type(tx, domain_name=domain_name, name=object_type_name)
    region = tx.settings.default_phone_region
    outcomes: list[IngestResult | IngestRejected | None] = [None] * len(records)
    prepared: list[_Prepared] = []
    for index, (source, raw) in enumerate(records):
        try:
            prepared.append(_prepare(object_type, cipher, index, source, raw, region))
        except IngestRejected as exc:
            outcomes[index] = exc
    # Every lock of the batch is taken up front, in one global order (see _lock).
    _lock(tx, domain_name, [item for p in prepared for item in _locks_of(object_type_name, p)])
    expires_at = _expires_at(tx, object_type)
    run: _Run | None = None
    for position, item in enumerate(prepared):
        outcome: IngestResult | IngestRejected | None = None
        if not _touches_standard_objects(item.mapped):
            if run is None:
                run = _Run(tx, object_type, expires_at, prepared[position:])
            outcome = run.apply(item)
        if outcome is None:
            if run is not None:
                run.flush()
                run = None
            try:
                # The profile-written hooks (auto-merge) run once the object is stored too.
                with tx.conn.begin_nested(), hooks_after(tx):
                    outcome = _apply(tx, object_type, item)
            except IngestRejected as exc:
                outcome = exc
        outcomes[item.index] = outcome
    if run is not None:
        run.flush()
    if object_type.implicit and any(isinstance(o, IngestResult) for o in outcomes):
        note_implicit_type_used(tx, domain_name=domain_name, name=object_type_name)
    return [o for o in outcomes if o is not None]


@dataclass(frozen=True)
class _Prepared:
    index: int
    raw: str
    mapped: MappedObject
    digests: dict[tuple[str, str], bytes]
    unique_digest: bytes
    # The InitiationTimestamp of a contact record: contact history is ordered by it.
    contact_start: datetime | None


def _prepare(
    object_type: ObjectType,
    cipher: DomainCipher,
    index: int,
    source: Mapping[str, Any],
    raw: str,
    region: str,
) -> _Prepared:
    """Map the record and digest its keys; IngestRejected for what needs no database to tell."""
    try:
        mapped = map_object(object_type, source, phone_region=region)
    except MappingError as exc:
        raise IngestRejected(exc.message, "invalid_value") from exc
    unique = mapped.unique_key
    if unique is None:
        raise IngestRejected(
            f"Missing unique key: every field of the UNIQUE key of object type "
            f"{object_type.name} must have a value.",
            "missing_key",
            invalid_request=True,
        )
    if not any("PROFILE" in k.identifiers for k in mapped.keys):
        raise IngestRejected(
            f"Missing profile key: none of the PROFILE keys of object type {object_type.name} "
            "has a value.",
            "missing_key",
            invalid_request=True,
        )
    digests = {(k.name, k.normalised): cipher.digest(k.name, k.normalised) for k in mapped.keys}
    return _Prepared(
        index,
        raw,
        mapped,
        digests,
        digests[(unique.name, unique.normalised)],
        contact_start(source),
    )


_STANDARD_IDENTIFIERS = frozenset(ROOT_IDENTIFIERS.values())


def _touches_standard_objects(mapped: MappedObject) -> bool:
    return any(root in mapped.targets for root in ROOT_IDENTIFIERS) or any(
        k.identifiers & _STANDARD_IDENTIFIERS for k in mapped.keys
    )


def _profile_key_order(mapped: MappedObject) -> list[ComputedKey]:
    """PROFILE keys in resolution order: primary ones, then SECONDARY ones (spec §1.6)."""
    profile_keys = [k for k in mapped.keys if "PROFILE" in k.identifiers]
    return [
        *(k for k in profile_keys if "SECONDARY" not in k.identifiers),
        *(k for k in profile_keys if "SECONDARY" in k.identifiers),
    ]


def _persisted_keys(mapped: MappedObject, created: bool) -> list[ComputedKey]:
    """Key persistence (spec §1.5 flowchart): LOOKUP_ONLY never; NEW_ONLY only when this
    ingestion created the profile; everything else always."""
    return [
        k
        for k in mapped.keys
        if "LOOKUP_ONLY" not in k.identifiers and ("NEW_ONLY" not in k.identifiers or created)
    ]


def _no_profile(object_type: ObjectType) -> IngestRejected:
    return IngestRejected(
        f"No profile matched the object's profile keys, and object type "
        f"{object_type.name} does not allow profile creation (AllowProfileCreation).",
        "no_profile",
    )


# The contact-record templates that associate a contact by the customer's phone number or
# email (`_phone`/`_email`) only when it finds exactly one profile: "if more than one profile
# matches, the request will be rejected" (spec §3.2, AWS's auto-associate-profile-using-phone-
# profile-key). A type made from them has exactly their keys (TemplateId excludes Keys).
# Every other type follows the generic rule: an ambiguous key is skipped (spec §1.6).
_AMBIGUITY_REJECTS = frozenset({"CTR-NoInferred", "CTR-AutoAssociateOnly"})


def _unresolved(
    object_type: ObjectType, ambiguous: tuple[str, int] | None
) -> IngestRejected | None:
    """Why a record that no key resolved is rejected, or None when an inferred profile is to
    be created for it. `ambiguous` is the first key that found several profiles (its name and
    how many; never its value, a customer's number or address)."""
    if ambiguous is not None and object_type.template_id in _AMBIGUITY_REJECTS:
        name, count = ambiguous
        return IngestRejected(
            f"The object's {name} key matches more than one profile ({count} profiles share "
            f"its value), so object type {object_type.name} (template "
            f"{object_type.template_id}) associates it with none and creates none. Merge the "
            "profiles that are one customer (MergeProfiles), or link the contact to the right "
            "profile (AddProfileKey _ctrContactId), then retry the record.",
            "ambiguous",
        )
    if not object_type.allow_profile_creation:
        return _no_profile(object_type)
    return None


class _Run:
    """Consecutive records applied against state read once and kept current in memory.

    `index` mirrors the `profile_key` rows of every key the run's records use: (key name,
    digest) -> {row's profile id: its rows' origins}, updated as the sequential writes would
    update it (derived keys of a changed profile replaced, ingested keys added), so a record
    sees the profiles and keys the records before it created. `flush` writes the net result.
    """

    def __init__(
        self,
        tx: Tx,
        object_type: ObjectType,
        expires_at: datetime | None,
        records: Sequence[_Prepared],
    ) -> None:
        self.tx = tx
        self.object_type = object_type
        self.domain_name = domain_name = object_type.domain_name
        self.expires_at = expires_at
        pairs = {pair for r in records for pair in _pairs(r)}
        self.index: dict[tuple[str, bytes], dict[str, set[str]]] = {}
        # Row profile id -> the live profile it names (merges followed), None when gone.
        self.live: dict[str, str | None] = {}
        live_ids = sorted(resolve_locked(tx, domain_name, lambda: self._read_index(pairs)))
        self.profiles: dict[str, ProfileRecord] = (
            get_profiles(tx, domain_name=domain_name, profile_ids=live_ids) if live_ids else {}
        )
        # Objects per profile as an upper bound (expired rows not purged yet count), kept up to
        # date as the run adds and moves objects: a record whose profile the bound puts at the
        # quota goes to _apply, which counts exactly and evicts (spec §1.9); below the quota no
        # eviction can be needed.
        self.counts = dict.fromkeys(live_ids, 0)
        self.counts.update(
            objects.object_count_bounds(tx, domain_name=domain_name, profile_ids=live_ids)
        )
        self.stored = objects.stored_objects(
            tx,
            domain_name=domain_name,
            object_type_name=object_type.name,
            unique_digests=[r.unique_digest for r in records],
        )
        # UNIQUE digest -> (profile id, expires_at) as the run has left it.
        self.current = dict(self.stored)
        self.derived_before: dict[str, DerivedKeys] = {}
        self.derived_now: dict[str, DerivedKeys] = {}
        # What the derived keys were computed from, to skip recomputing them when it is unchanged.
        self.derived_source: dict[str, tuple[tuple[str, str], ...]] = {}
        self.created: dict[str, ProfileRecord] = {}
        self.changed: set[str] = set()
        self.writes: dict[bytes, objects.ObjectWrite] = {}
        self.key_rows: list[tuple[str, str, bytes, str, str]] = []
        self.sizes = SizeBounds()

    def _read_index(self, pairs: set[tuple[str, bytes]]) -> tuple[set[str], set[str]]:
        """Fill `index` and `live` from the key rows of `pairs`; the live profiles they name,
        twice (`profiles.service.resolve_locked`'s outcome and the profiles to lock)."""
        self.index.clear()
        self.live.clear()
        tx, domain_name = self.tx, self.domain_name
        for row in candidate_key_rows(tx, domain_name=domain_name, pairs=pairs):
            origins = self.index.setdefault((row.key_name, bytes(row.digest)), {})
            origins.setdefault(row.profile_id, set()).add(row.origin)
            if row.profile_id not in self.live:
                self.live[row.profile_id] = (
                    row.profile_id
                    if row.merged_into is None
                    else resolve_profile_id(tx, domain_name=domain_name, profile_id=row.profile_id)
                )
        found = {p for p in self.live.values() if p is not None}
        return found, found

    def apply(self, item: _Prepared) -> IngestResult | IngestRejected | None:
        """The record's outcome, or None (nothing done) when it needs `_apply` instead."""
        tx, object_type, mapped = self.tx, self.object_type, item.mapped
        target, ambiguous = self._resolve(item)
        created = target is None
        existing = self.current.get(item.unique_digest)
        if existing is not None and existing[1] is not None and existing[1] <= tx.now:
            existing = None  # expired: gone for every read
        if target is None:
            refused = _unresolved(object_type, ambiguous)
            if refused is not None:
                return refused
            record = _inferred_profile(tx, object_type, mapped)
            try:
                self.sizes.created(record, mapped)
            except ProfileTooLarge as exc:
                return _too_large(exc, None)
            target = record.profile_id
            self.live[target] = target
            self.profiles[target] = self.created[target] = record
            self.counts[target] = 0
            self.derived_source[target] = ()
            self.derived_now[target] = {}
            self._derive(record)
        else:
            if existing is None or existing[0] != target:
                count = self.counts.get(target)
                if count is None or count >= PROFILE_OBJECT_QUOTA:
                    return None  # an eviction is needed (spec §1.9): _apply's rules
            record = self.profiles[target]
            if target not in self.derived_source:
                self.derived_source[target] = tuple(derived_key_values(target, record.fields))
            try:
                changed = self.sizes.apply(
                    record,
                    record_growth(mapped),
                    lambda: apply_profile_fields(
                        record,
                        mapped.targets.get("_profile", {}),
                        object_type_name=object_type.name,
                        source_priority=object_type.source_priority,
                    ),
                )
            except ProfileTooLarge as exc:
                return _too_large(exc, target)
            if changed:
                record.version += 1
                record.updated_at = tx.now
                self.changed.add(target)
                self._derive(record)
        if existing is None or existing[0] != target:
            self.counts[target] += 1
            if existing is not None and existing[0] in self.counts:
                self.counts[existing[0]] -= 1
        self.current[item.unique_digest] = (target, self.expires_at)
        # Written again: it is written last now (objects write in this order; a new one takes
        # its write_order from it, a stored one keeps its own: objects.write_objects).
        self.writes.pop(item.unique_digest, None)
        self.writes[item.unique_digest] = objects.ObjectWrite(
            unique_digest=item.unique_digest,
            profile_id=target,
            object_json=item.raw,
            expires_at=self.expires_at,
            source_last_updated=mapped.source_last_updated,
            key_digests=tuple((k.name, item.digests[(k.name, k.normalised)]) for k in mapped.keys),
            contact_start=item.contact_start,
        )
        for key in _persisted_keys(mapped, created):
            digest = item.digests[(key.name, key.normalised)]
            origins = self.index.setdefault((key.name, digest), {}).setdefault(target, set())
            if object_type.name not in origins:  # else: INSERT .. ON CONFLICT DO NOTHING
                origins.add(object_type.name)
                self.key_rows.append((target, key.name, digest, key.value, object_type.name))
        return IngestResult(
            profile_id=target,
            profile_object_unique_key=item.unique_digest.hex(),
            created_profile=created,
        )

    def _resolve(self, item: _Prepared) -> tuple[str | None, tuple[str, int] | None]:
        """The first PROFILE key (primary, then SECONDARY) finding exactly one live profile;
        a key finding several is ambiguous and skipped (spec §1.6): the first such key and how
        many profiles it found come second, for `_unresolved`."""
        seen: set[tuple[str, bytes]] = set()
        ambiguous: tuple[str, int] | None = None
        for key in _profile_key_order(item.mapped):
            pair = (key.name, item.digests[(key.name, key.normalised)])
            if pair in seen:
                continue
            seen.add(pair)
            found = {self.live.get(p) for p in self.index.get(pair, ())} - {None}
            if len(found) == 1:
                return found.pop(), None
            if len(found) > 1 and ambiguous is None:
                ambiguous = (key.name, len(found))
        return None, ambiguous

    def _derive(self, record: ProfileRecord) -> None:
        """Replace the profile's derived keys in the index, as save_profile does in the table:
        its rows of the derived origin go, the current derived values are inserted (a value
        another source backs as well keeps that source's row)."""
        pid = record.profile_id
        source = tuple(derived_key_values(pid, record.fields))
        if self.derived_source[pid] == source:
            return  # the fields keys derive from did not change
        if pid not in self.derived_now:
            self.derived_now[pid] = self.derived_before[pid] = derived_keys(
                self.tx, domain_name=self.domain_name, values=self.derived_source[pid]
            )
        self.derived_source[pid] = source
        now = derived_keys(self.tx, domain_name=self.domain_name, values=source)
        for pair in self.derived_now[pid].keys() - now.keys():
            rows = self.index.get(pair, {})
            origins = rows.get(pid)
            if origins is not None:
                origins.discard(DERIVED_ORIGIN)
                if not origins:
                    del rows[pid]
        for pair in now:
            self.index.setdefault(pair, {}).setdefault(pid, set()).add(DERIVED_ORIGIN)
        self.derived_now[pid] = now

    def flush(self) -> None:
        # The profile-written hooks run after the objects and keys are written too: an
        # auto-merge they start moves the profile's objects and keys, so all must be there.
        with hooks_after(self.tx):
            self._write()

    def _write(self) -> None:
        tx, domain_name = self.tx, self.domain_name
        write_profiles(
            tx,
            domain_name=domain_name,
            created=list(self.created.values()),
            updated=[
                (self.profiles[p], self.derived_before.get(p, {}), self.derived_now.get(p, {}))
                for p in sorted(self.changed - self.created.keys())
            ],
        )
        objects.write_objects(
            tx,
            domain_name=domain_name,
            object_type_name=self.object_type.name,
            writes=list(self.writes.values()),
            stored=self.stored,
        )
        insert_key_rows(tx, domain_name=domain_name, rows=self.key_rows)


def _pairs(item: _Prepared) -> list[tuple[str, bytes]]:
    return [(name, digest) for (name, _), digest in item.digests.items()]


# ---------------------------------------------------------------------------- the rules


def _apply(tx: Tx, object_type: ObjectType, item: _Prepared) -> IngestResult:
    domain_name = object_type.domain_name
    mapped, digests, unique_digest = item.mapped, item.digests, item.unique_digest

    def digest_of(key: ComputedKey) -> bytes:
        return digests[(key.name, key.normalised)]

    # Standard-object identifiers must each find at most one record (spec §1.5): checked
    # before anything is written.
    standard = _resolve_standard_objects(tx, object_type, mapped, digest_of)

    ambiguous: list[tuple[str, int] | None] = [None]

    def resolve() -> tuple[str | None, set[str]]:
        found, ambiguous[0] = _resolve_profile(tx, domain_name, mapped, digest_of)
        return found, set() if found is None else {found}

    target_id = resolve_locked(tx, domain_name, resolve)
    created = target_id is None
    if target_id is None:
        refused = _unresolved(object_type, ambiguous[0])
        if refused is not None:
            raise refused
        record = _inferred_profile(tx, object_type, mapped)
        try:
            write_profiles(tx, domain_name=domain_name, created=[record], updated=[])
        except ProfileTooLarge as exc:
            raise _too_large(exc, None) from exc
        target_id = record.profile_id
    else:
        record = get_profile(tx, domain_name=domain_name, profile_id=target_id)
        if apply_profile_fields(
            record,
            mapped.targets.get("_profile", {}),
            object_type_name=object_type.name,
            source_priority=object_type.source_priority,
        ):
            try:
                save_profile(tx, domain_name=domain_name, record=record)
            except ProfileTooLarge as exc:
                raise _too_large(exc, target_id) from exc

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
        object_json=item.raw,
        expires_at=expires_at,
        source_last_updated=mapped.source_last_updated,
        key_digests=[(k.name, digest_of(k)) for k in mapped.keys],
        contact_start=item.contact_start,
    )
    for root, (record_digest, keys) in standard.items():
        held = objects.find_object(
            tx, domain_name=domain_name, object_type_name=root, unique_digest=record_digest
        )
        if held is None or held.profile_id != target_id:
            _make_room(tx, object_type, target_id, standard_root=root)
        objects.merge_standard_object(
            tx,
            domain_name=domain_name,
            root=root,
            unique_digest=record_digest,
            profile_id=target_id,
            values=dict(mapped.targets[root]),
            expires_at=expires_at,
            # Every key of the record, as on the record's own object: AWS finds a Salesforce
            # asset by `_salesforceAccountId` (AG: mapping-salesforce-objects-to-asset).
            key_digests=[(k.name, digest_of(k)) for k in mapped.keys],
            system_id=_system_id(root, keys),
        )

    persisted = [(k.name, k.normalised, k.value) for k in _persisted_keys(mapped, created)]
    index_profile_keys(
        tx, domain_name=domain_name, profile_id=target_id, keys=persisted, origin=object_type.name
    )
    return IngestResult(
        profile_id=target_id,
        profile_object_unique_key=unique_digest.hex(),
        created_profile=created,
    )


def _too_large(error: ProfileTooLarge, profile_id: str | None) -> IngestRejected:
    """A record whose fields would take its profile over the size limit (profiles.size)."""
    which = "a new profile" if profile_id is None else f"the profile {profile_id}"
    return IngestRejected(
        f"The record's profile fields would take {which} to {error.size} bytes, over the "
        f"limit of {MAX_PROFILE_BYTES} bytes (250 KB) on a profile's size.",
        "invalid_value",
    )


def _resolve_profile(
    tx: Tx, domain_name: str, mapped: MappedObject, digest_of: Any
) -> tuple[str | None, tuple[str, int] | None]:
    """Primary PROFILE keys first, then SECONDARY ones; the first key that finds exactly one
    profile wins; a key finding several is ambiguous and skipped (spec §1.6): as `_Run._resolve`,
    the first ambiguous key and its count come second."""
    seen: set[tuple[str, bytes]] = set()
    ambiguous: tuple[str, int] | None = None
    for key in _profile_key_order(mapped):
        pair = (key.name, digest_of(key))
        if pair in seen:
            continue
        seen.add(pair)
        found = lookup_profiles(tx, domain_name=domain_name, key_name=pair[0], digest=pair[1])
        if len(found) == 1:
            return found.pop(), None
        if len(found) > 1 and ambiguous is None:
            ambiguous = (key.name, len(found))
    return None, ambiguous


# Built once, run straight on the driver (store.prepared): building the expression costs more
# than running it, and SQLAlchemy's execution path as much again (benchmarks/ingest.py).
_LOOKUP = PreparedRead(
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
_CANDIDATES = PreparedRead(
    select(
        profile_key.c.key_name,
        profile_key.c.digest,
        profile_key.c.profile_id,
        profile_key.c.origin,
        profile.c.merged_into,
    )
    .join(
        profile,
        and_(
            profile.c.domain_name == profile_key.c.domain_name,
            profile.c.profile_id == profile_key.c.profile_id,
        ),
    )
    .where(
        profile_key.c.domain_name == bindparam("d"),
        profile_key.c.key_name.in_(bindparam("ks", expanding=True)),
        profile_key.c.digest.in_(bindparam("gs", expanding=True)),
    )
)


def candidate_key_rows(
    tx: Tx, *, domain_name: str, pairs: Iterable[tuple[str, bytes]]
) -> list[Any]:
    """The `profile_key` rows (key_name, digest, profile_id, origin, and the profile's
    merged_into) of the given (key name, digest) pairs, in IN-list queries."""
    wanted = set(pairs)
    names = sorted({name for name, _ in wanted})
    digests = sorted({digest for _, digest in wanted})
    out: list[Any] = []
    # key_name IN (..) AND digest IN (..) walks the (domain, key name, digest) primary key.
    for chunk in in_chunks(digests):
        params = {"d": domain_name, "ks": names, "gs": chunk}
        out.extend(
            r for r in _CANDIDATES.rows(tx.conn, params) if (r.key_name, bytes(r.digest)) in wanted
        )
    return out


def lookup_profiles(tx: Tx, *, domain_name: str, key_name: str, digest: bytes) -> set[str]:
    """The live profiles (merges followed) a key value is indexed for."""
    rows = _LOOKUP.rows(tx.conn, {"d": domain_name, "k": key_name, "g": digest})
    found: set[str] = set()
    for row in rows:
        if row.merged_into is None:
            found.add(row.profile_id)
        elif (
            live := resolve_profile_id(tx, domain_name=domain_name, profile_id=row.profile_id)
        ) is not None:
            found.add(live)
    return found


def _inferred_profile(tx: Tx, object_type: ObjectType, mapped: MappedObject) -> ProfileRecord:
    """A new profile, not stored yet (spec §1.7): the first EMAIL_ADDRESS / PHONE_NUMBER typed
    fields fill EmailAddress / PhoneNumber (only now, at creation), then the mapping's targets
    apply."""
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
    return new_profile_record(
        tx, fields=seed.fields, manual=False, field_sources=seed.field_sources
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
        # Gender with GenderString, PartyType with PartyTypeString: one field (a value in the
        # enum or free text), held by one member at a time; either being protected keeps it.
        others = [m for m in unit_members(name) if m != name]
        for path, part, item in parts:
            if item in ("", None) or not all(
                _may_write(record, p, source_priority) for p in (path, *others)
            ):
                continue
            for other in others:
                changed |= _clear_path(record, other)
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


def _clear_path(record: ProfileRecord, name: str) -> bool:
    """Remove a top-level field that ingestion writes over through its unit's other member;
    whether it held a value."""
    record.field_sources.pop(name, None)
    record.manual_fields.discard(name)
    return record.fields.pop(name, None) is not None


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


def _system_id(root: str, keys: Sequence[ComputedKey]) -> str:
    """The AssetId/CaseId/OrderId a new standard object gets [INF: AWS assigns it, spec §7.9]:
    the value of the record's `_assetId`/`_caseId`/`_orderId` key if it has one (so that key
    finds the object later), else the value of the identifier key that names the new object
    (`keys` are name-sorted; the first one's digest is its UNIQUE digest). An id that people
    recognise (a serial number, a Shopify order id) rather than an opaque one; ids of objects
    named by different key names could coincide, which only makes an `_assetId` lookup find
    both."""
    id_key = objects.SYSTEM_ID_KEYS.get(root)
    for key in keys:
        if key.name == id_key:
            return key.value
    return keys[0].value


def _make_room(
    tx: Tx, object_type: ObjectType, profile_id: str, *, standard_root: str | None = None
) -> None:
    """Eviction when the profile is full (spec §1.9): the oldest object of the type furthest
    over its MaxProfileObjectCount, else the oldest object of the incoming type.

    `standard_root`: the incoming object is the record's new standard object (`_asset`,
    `_case`, `_order`), not its own. Standard objects are objects of the profile like any other
    (ListProfileObjects lists them; the spec's per-profile quota counts every type, and gives a
    standard type, `_webAnalytics`, a limit of its own), so they make room as any object does
    and are evicted by the same rules: the oldest of their root goes, or, for a profile holding
    none yet, an older object of the record's type (which gave the new one: it replaces one of
    its own rather than the record being refused). Never the record's object just written."""
    domain_name = object_type.domain_name
    counts = objects.count_objects_by_type(tx, domain_name=domain_name, profile_id=profile_id)
    if sum(counts.values()) < PROFILE_OBJECT_QUOTA:
        return
    over: list[tuple[int, str]] = []
    for type_name, count in counts.items():
        limit = _type_limit(tx, domain_name, type_name, object_type)
        if limit is not None and count > limit:
            over.append((count - limit, type_name))
    incoming = standard_root or object_type.name
    victims = [max(over)[1]] if over else [incoming]
    if not over and standard_root is not None and counts.get(object_type.name, 0) > 1:
        victims.append(object_type.name)
    for victim in victims:
        if objects.evict_oldest(
            tx, domain_name=domain_name, profile_id=profile_id, object_type_name=victim
        ):
            return
    raise IngestRejected(
        f"The profile {profile_id} holds {PROFILE_OBJECT_QUOTA} objects, none of them of "
        f"type {incoming} or of a type over its MaxProfileObjectCount.",
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
        config = get_domain(tx, domain_name=object_type.domain_name).config
        configured = config.get("DefaultExpirationDays")
        days = int(configured) if configured else None
    return tx.now + timedelta(days=days) if days else None


def _locks_of(object_type_name: str, item: _Prepared) -> list[tuple[str, str, bytes]]:
    """What `_lock` takes for one prepared record: its UNIQUE value and each of its keys."""
    return [
        ("object", object_type_name, item.unique_digest),
        *(("key", name, digest) for (name, _), digest in item.digests.items()),
    ]


def _lock(tx: Tx, domain_name: str, items: Iterable[tuple[str, str, bytes]]) -> None:
    """Serialise concurrent ingestions that share a key or a UNIQUE value (PostgreSQL): one
    advisory lock per (kind, name, digest), in one global order, released at commit."""
    take_locks(tx, ((kind, domain_name, name, digest) for kind, name, digest in items))
