"""Rules for contact records and live contact events (spec §3).

Every contact record goes to the domain its instance is associated with (integrations) and
through the one ingestion pipeline, as an object of that integration's object type (CTR,
CTR-NoInferred, CTR-AutoAssociateOnly or a type built on them): the template's keys decide the
profile (`_ctrContactId` first, then the caller's phone number for voice or the customer's email
address for chat and email).

* Idempotent deliveries: `contact_record` remembers, per domain and ContactId, the
  LastUpdateTimestamp applied. A repeated delivery, or an older version of a contact, changes
  nothing; a newer one replaces the stored record (the pipeline replaces objects by their
  UNIQUE key, `_ctrContactId`).
* Nothing is dropped: a record the pipeline rejects, or that is invalid but names an associated
  instance, goes to that domain's dead-letter queue with its reason. A record whose instance is
  associated with no domain (or that names no instance) has no domain whose dead-letter queue
  could take it: it is kept, sealed under the system key, in `unrouted_contact_record`, and
  `replay_unrouted` sends it on once the instance is associated.
* A contact-start event (`apply_contact_event`) runs through the same pipeline as a partial
  record, so the profile is found or created by the template's rules at once and `_ctrContactId`
  is indexed on it; the full record that follows lands on the same profile and replaces the
  partial one.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from openprofiles.contacts.models import (
    BatchOutcome,
    ContactLink,
    ContactRecord,
    ContactRecordInvalid,
    Rejection,
)
from openprofiles.contacts.records import Item, parse_contact_record
from openprofiles.context import Tx
from openprofiles.dlq.sinks import dead_letter_in
from openprofiles.domains.service import register_domain_table
from openprofiles.errors import BadRequest, ServiceError
from openprofiles.ingest.pipeline import IngestRejected, IngestResult, ingest_object
from openprofiles.integrations.models import InstanceAssociation, Integration, is_instance_arn
from openprofiles.integrations.service import (
    DEFAULT_INSTANCE_OBJECT_TYPE,
    associate_instance,
    find_instance_integration,
)
from openprofiles.normalize import ContentType, normalize
from openprofiles.profiles.service import EXPLICIT_ORIGIN
from openprofiles.store.schema import contact_record, profile, profile_key, unrouted_contact_record

register_domain_table(contact_record)

CONTACT_KEY = "_ctrContactId"
UNROUTED_TABLE = "unrouted_contact_record"


@dataclass(frozen=True)
class Applied:
    """One record applied: `changed` is False for a repeated or older delivery."""

    domain_name: str
    profile_id: str | None
    changed: bool
    created_profile: bool


@dataclass(frozen=True)
class UnroutedRecord:
    message_id: str
    instance_arn: str | None
    object_json: str
    reason: str
    created_at: datetime


class _Router:
    """Instance → integration, looked up once per batch."""

    def __init__(self, tx: Tx) -> None:
        self._tx = tx
        self._cache: dict[str, Integration | None] = {}

    def __call__(self, instance_arn: str) -> Integration | None:
        if instance_arn not in self._cache:
            self._cache[instance_arn] = find_instance_integration(
                self._tx, instance_arn=instance_arn
            )
        return self._cache[instance_arn]


def ingest_contact_items(tx: Tx, items: Iterable[Item]) -> BatchOutcome:
    """Apply every record of a batch; rejected ones are dead-lettered (or kept as unrouted)
    and reported, and the rest of the batch is still applied."""
    outcome = BatchOutcome()
    route = _Router(tx)
    for raw, parsed in items:
        rejection, applied = _ingest_one(tx, route, raw, parsed)
        if rejection is not None:
            outcome.rejected.append(rejection)
            continue
        assert applied is not None
        outcome.accepted += 1
        outcome.unchanged += not applied.changed
        outcome.created_profiles += applied.created_profile
    return outcome


def _ingest_one(
    tx: Tx, route: _Router, raw: str, parsed: Any
) -> tuple[Rejection | None, Applied | None]:
    try:
        record = parse_contact_record(parsed, raw)
    except ContactRecordInvalid as exc:
        instance = parsed.get("InstanceARN") if isinstance(parsed, Mapping) else None
        target = (
            route(instance) if isinstance(instance, str) and is_instance_arn(instance) else None
        )
        if target is not None:
            _dead_letter(tx, target, raw, exc.reason, "invalid_value")
        else:
            keep_unrouted(
                tx,
                instance_arn=instance if isinstance(instance, str) else None,
                raw=raw,
                reason=exc.reason,
            )
        return Rejection(exc.contact_id, exc.reason), None
    target = route(record.instance_arn)
    if target is None:
        reason = (
            f"The instance {record.instance_arn} is not associated with any domain; associate it "
            "(PutIntegration with its ARN, or openprofiles instances associate)."
        )
        keep_unrouted(tx, instance_arn=record.instance_arn, raw=raw, reason=reason)
        return Rejection(record.contact_id, reason), None
    try:
        return None, apply_contact_record(tx, target, record)
    except IngestRejected as exc:
        reason, category = exc.reason, exc.category
    except ServiceError as exc:
        # e.g. the integration's object type was deleted: the record waits in the DLQ.
        reason, category = exc.message, "invalid_value"
    _dead_letter(tx, target, raw, reason, category)
    return Rejection(record.contact_id, reason), None


def _dead_letter(tx: Tx, target: Integration, raw: str, reason: str, category: str) -> None:
    dead_letter_in(
        tx,
        domain_name=target.domain_name,
        object_type_name=target.object_type_name or "CTR",
        object_json=raw,
        reason=reason,
        category=category,
    )


def contact_digest(tx: Tx, domain_name: str, contact_id: str) -> bytes:
    """The blind-index digest of a ContactId, as the pipeline indexes `_ctrContactId`."""
    return tx.cipher(domain_name).digest(CONTACT_KEY, normalize(ContentType.STRING, contact_id))


def apply_contact_record(
    tx: Tx, target: Integration, record: ContactRecord, *, partial: bool = False
) -> Applied:
    """Ingest one record (or, `partial`, a contact-start event) into the target's domain.

    Raises IngestRejected when the pipeline rejects it (the caller dead-letters it)."""
    domain_name = target.domain_name
    type_name = target.object_type_name or "CTR"
    digest = contact_digest(tx, domain_name, record.contact_id)
    _lock(tx, domain_name, digest)
    seen = tx.conn.execute(_SEEN, {"domain_name": domain_name, "digest": digest}).first()
    if seen is not None and not _supersedes(seen, record, partial):
        return Applied(domain_name, seen.profile_id, changed=False, created_profile=False)
    _honour_forced_link(tx, domain_name, digest)
    result: IngestResult = ingest_object(
        tx,
        domain_name=domain_name,
        object_type_name=type_name,
        source=record.source,
        raw=record.raw,
    )
    values = {
        "last_update": record.last_update,
        "partial": partial,
        "object_type_name": type_name,
        "profile_id": result.profile_id,
        "received_at": tx.now,
    }
    if seen is None:
        tx.conn.execute(
            _UPSERT[tx.conn.dialect.name],
            {"domain_name": domain_name, "contact_digest": digest, **values},
        )
    else:
        tx.conn.execute(
            update(contact_record)
            .where(
                contact_record.c.domain_name == domain_name,
                contact_record.c.contact_digest == digest,
            )
            .values(**values)
        )
    return Applied(
        domain_name, result.profile_id, changed=True, created_profile=result.created_profile
    )


def _supersedes(seen: Any, record: ContactRecord, partial: bool) -> bool:
    """Whether `record` should replace what was applied for its contact (spec §3.1: at-least-once
    delivery, dedupe by ContactId + LastUpdateTimestamp)."""
    if partial:
        # A start event never replaces anything: the contact is already linked.
        return False
    if seen.partial:
        return True
    if record.last_update is None:
        return False
    return seen.last_update is None or record.last_update > seen.last_update


def _upsert(statement: Any) -> Any:
    # Concurrent first deliveries of one contact on PostgreSQL are serialised by _lock; the
    # conflict clause keeps SQLite and PostgreSQL statements alike.
    return statement.on_conflict_do_update(
        index_elements=["domain_name", "contact_digest"],
        set_={
            name: statement.excluded[name]
            for name in ("last_update", "partial", "object_type_name", "profile_id", "received_at")
        },
    )


# Statements on the hot path are built once: building one costs more than running it.
_UPSERT = {
    "sqlite": _upsert(sqlite_insert(contact_record)),
    "postgresql": _upsert(pg_insert(contact_record)),
}
_SEEN = select(contact_record).where(
    contact_record.c.domain_name == bindparam("domain_name"),
    contact_record.c.contact_digest == bindparam("digest"),
)
_LINKED = (
    select(profile_key.c.profile_id, profile_key.c.origin)
    .join(
        profile,
        and_(
            profile.c.domain_name == profile_key.c.domain_name,
            profile.c.profile_id == profile_key.c.profile_id,
        ),
    )
    .where(
        profile_key.c.domain_name == bindparam("domain_name"),
        profile_key.c.key_name == CONTACT_KEY,
        profile_key.c.digest == bindparam("digest"),
        profile.c.merged_into.is_(None),
    )
)


def _honour_forced_link(tx: Tx, domain_name: str, digest: bytes) -> None:
    """AddProfileKey(_ctrContactId) during a contact forces the profile (spec §3.2). When a
    contact-start event had already linked the contact to another profile, the key would match
    two profiles and be skipped as ambiguous; the agent's explicit link wins, so the key is
    removed from the profiles it was indexed on by ingestion."""
    rows = list(tx.conn.execute(_LINKED, {"domain_name": domain_name, "digest": digest}))
    explicit = {r.profile_id for r in rows if r.origin == EXPLICIT_ORIGIN}
    if len(explicit) != 1 or len({r.profile_id for r in rows}) == 1:
        return
    tx.conn.execute(
        delete(profile_key).where(
            profile_key.c.domain_name == domain_name,
            profile_key.c.key_name == CONTACT_KEY,
            profile_key.c.digest == digest,
            profile_key.c.profile_id.not_in(explicit),
        )
    )


def _lock(tx: Tx, domain_name: str, digest: bytes) -> None:
    """Serialise deliveries of one contact (PostgreSQL; SQLite has a single writer)."""
    if tx.services.database.is_sqlite:
        return
    lock_id = int.from_bytes(
        hashlib.sha256(b"contact\x00" + domain_name.encode() + b"\x00" + digest).digest()[:8],
        "big",
        signed=True,
    )
    tx.conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})


# ---------------------------------------------------------------------------- live contacts

EVENT_REQUIRED = ("ContactId", "InstanceARN", "Channel", "InitiationTimestamp")


def apply_contact_event(tx: Tx, event: Any) -> ContactLink:
    """Link a contact that has just started to its profile (found or created by the
    integration's template rules) by indexing `_ctrContactId` on it at once.

    BadRequest for an invalid event or an instance associated with no domain; with
    CTR-AutoAssociateOnly and no matching profile the contact stays unlinked (reason given).
    """
    if not isinstance(event, Mapping):
        raise BadRequest("The contact event must be a JSON object.")
    missing = [name for name in EVENT_REQUIRED if not event.get(name)]
    if missing:
        raise BadRequest(f"The contact event lacks {', '.join(missing)}.")
    raw = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    try:
        record = parse_contact_record(event, raw)
    except ContactRecordInvalid as exc:
        raise BadRequest(exc.reason) from None
    target = find_instance_integration(tx, instance_arn=record.instance_arn)
    if target is None:
        raise BadRequest(f"The instance {record.instance_arn} is not associated with any domain.")
    try:
        applied = apply_contact_record(tx, target, record, partial=True)
    except IngestRejected as exc:
        return ContactLink(record.contact_id, target.domain_name, None, False, exc.reason)
    return ContactLink(
        record.contact_id, target.domain_name, applied.profile_id, applied.created_profile
    )


# ---------------------------------------------------------------------------- unrouted records


def keep_unrouted(tx: Tx, *, instance_arn: str | None, raw: str, reason: str) -> str:
    message_id = uuid.uuid4().hex
    sealed = tx.services.keys.system_cipher().seal_record(
        UNROUTED_TABLE, message_id, {"object": raw, "reason": reason}
    )
    tx.conn.execute(
        insert(unrouted_contact_record).values(
            message_id=message_id,
            instance_arn=(instance_arn or None) and instance_arn[:255],
            sealed=sealed,
            created_at=tx.now,
        )
    )
    return message_id


def list_unrouted(tx: Tx, *, instance_arn: str | None = None) -> list[UnroutedRecord]:
    """Kept records, oldest first (all instances when `instance_arn` is None)."""
    query = select(unrouted_contact_record).order_by(
        unrouted_contact_record.c.created_at, unrouted_contact_record.c.message_id
    )
    if instance_arn is not None:
        query = query.where(unrouted_contact_record.c.instance_arn == instance_arn)
    cipher = tx.services.keys.system_cipher()
    out = []
    for row in tx.conn.execute(query):
        payload = cipher.open_record(UNROUTED_TABLE, row.message_id, bytes(row.sealed))
        out.append(
            UnroutedRecord(
                message_id=row.message_id,
                instance_arn=row.instance_arn,
                object_json=payload["object"],
                reason=payload["reason"],
                created_at=row.created_at,
            )
        )
    return out


def connect_instance(
    tx: Tx,
    *,
    domain_name: str,
    instance_arn: str,
    move: bool,
    object_type_name: str = DEFAULT_INSTANCE_OBJECT_TYPE,
) -> tuple[InstanceAssociation, BatchOutcome]:
    """Associate an instance with a domain and send it the contact records that were kept
    while the instance had no domain (every way of associating must do both)."""
    association = associate_instance(
        tx,
        domain_name=domain_name,
        instance_arn=instance_arn,
        move=move,
        object_type_name=object_type_name,
    )
    return association, replay_unrouted(tx, instance_arn=instance_arn)


def replay_unrouted(tx: Tx, *, instance_arn: str) -> BatchOutcome:
    """Send the instance's kept records through again (after it was associated)."""
    kept = list_unrouted(tx, instance_arn=instance_arn)
    if kept:
        tx.conn.execute(
            delete(unrouted_contact_record).where(
                unrouted_contact_record.c.message_id.in_([k.message_id for k in kept])
            )
        )
    items: list[Item] = []
    for k in kept:
        try:
            items.append((k.object_json, json.loads(k.object_json)))
        except ValueError as exc:
            items.append(
                (k.object_json, ContactRecordInvalid(f"The record is not valid JSON: {exc}."))
            )
    return ingest_contact_items(tx, items)
