"""The kept-records store (`unrouted_contact_record`): contact records that no domain can take
now, kept sealed under the system key until one can.

* A record whose instance is associated with no domain (or that names no instance) has no
  domain whose dead-letter queue could take it: it is kept, sealed under the system key, in
  `unrouted_contact_record` (`keep_unrouted_rows`), and `replay_unrouted` (contacts.service)
  sends it on once the instance is associated (`connect_instance`, whatever the way of
  associating; a chunk in the association's transaction, the rest after its commit by
  `send_kept_on`, or by the server's sweep if the process stopped before: contacts.sweep). A
  stream's batch (`hold_unavailable`) keeps the records of a domain that cannot take any now
  (its key unusable: its dead-letter store is sealed under that key too) the same way, rather
  than waiting whole for it; `replay_held` sends them on once it can. A held record notes the
  domain it waits for (`held_for`): its instance's domain, or a domain the instance was moved
  away from whose KMS did not answer (contacts.moves), so that the sweep sends it on when that
  domain can take it, and DeleteDomain deletes the records held for the domain deleted.
* A record without a customer endpoint that continues a contact of which nothing is applied yet
  waits here for it (`keep_waiting`, contacts.links), with a `contact_awaited` row per contact
  that would place it (contacts.waiting); `WAITING` tells such records from the held ones.
* A record sent with a key limited to some domains (auth.scope) that is kept waiting is
  confined to the domain it waits in (`confined_to`, in its sealed payload; so is one such a
  record becomes, held or kept waiting again when sent on): it never follows its instance to
  another domain (contacts.moves `follow_instance`), and sent on once its instance has left
  that domain, it is dead-lettered there instead (contacts.service `_intake`).
* A record delivered again while it is kept (a file read again, a stream's redelivery) is kept
  once: the store's unique content digest (`UNROUTED_KEY_NAME`). Kept records are read
  (`list_unrouted`) and counted without being opened (`count_unrouted`, `openprofiles
  instances unrouted`); the operator may delete those no association will route
  (`purgeable_unrouted` lists them for the question, `purge_unrouted` deletes those listed),
  and a customer's, found by opening them (`unrouted_holding`, `purge_unrouted_ids`), and
  DeleteDomain deletes the records waiting in the domain and those held for it
  (`delete_domains_records`; so does a drop of a domain whose key is gone).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from openprofiles.contacts.links import waiting_reason
from openprofiles.contacts.models import ContactRecord
from openprofiles.contacts.waiting import wait_in
from openprofiles.context import Tx
from openprofiles.domains.service import register_domain_deleter
from openprofiles.held_values import HeldValue, ids_holding
from openprofiles.integrations.models import is_instance_arn
from openprofiles.store.in_lists import in_chunks
from openprofiles.store.schema import contact_awaited, instance_moved_from, unrouted_contact_record

UNROUTED_TABLE = "unrouted_contact_record"
# The blind-index key name of kept records' content digests (never a profile key's name).
UNROUTED_KEY_NAME = "@unroutedRecord"
# A kept record that waits for a contact it continues (contacts.links): sent on by
# contacts.sweep `send_waiting_on`, not with the held ones.
WAITING = (
    select(contact_awaited.c.message_id)
    .where(contact_awaited.c.message_id == unrouted_contact_record.c.message_id)
    .exists()
)


# A record to keep (`keep_unrouted_rows`): its instance ARN (or None), the record as received,
# why it is kept, where it came from ("File ctr.jsonl, line 3"), the domain it is held for
# (None: its instance's domain once it has one) and the domain it is confined to (None: it
# goes wherever its instance's records go).
KeptRow = tuple[str | None, str, str, str | None, str | None, str | None]


@dataclass(frozen=True)
class UnroutedRecord:
    message_id: str
    instance_arn: str | None
    object_json: str
    reason: str
    created_at: datetime
    # Where it came from ("File ctr.jsonl, line 3"), for the dead letter of a replay that fails.
    origin: str | None = None
    # The domain it never leaves (see the module), or None.
    confined_to: str | None = None


def _delete_domains_records(tx: Tx, domain_name: str) -> None:
    """DeleteDomain's part here (`delete_domains_records`)."""
    delete_domains_records(tx.conn, domain_name)


def delete_domains_records(conn: Connection, domain_name: str) -> None:
    """DeleteDomain, and `openprofiles domains drop-unreadable` (domains.unreadable): the kept
    records waiting for a contact of the domain, and those held for it as their instance's
    domain, go with it. They were routed to it; left behind, a record would flow into the next
    domain its instance is associated with, a deleted domain's data outliving it. Those held for
    it as a domain their instance had left when they were held (its KMS did not answer: whether
    their contact is there could not be told) are not its records: they are held for the
    instance's domain now. Held before the instance left (a move, or DeleteIntegration and then
    DeleteDomain, the usual clean-up), they were its own. (Run before the domain's rows go:
    `instance_moved_from` tells the two apart.)"""
    kept = unrouted_contact_record.c
    moved = instance_moved_from.c
    waiting = select(contact_awaited.c.message_id).where(
        contact_awaited.c.domain_name == domain_name
    )
    conn.execute(delete(unrouted_contact_record).where(kept.message_id.in_(waiting)))
    held_after_leaving = (
        select(moved.instance_arn)
        .where(
            moved.domain_name == domain_name,
            moved.instance_arn == kept.instance_arn,
            kept.created_at >= moved.moved_at,
        )
        .exists()
    )
    conn.execute(
        update(unrouted_contact_record)
        .where(kept.held_for == domain_name, held_after_leaving)
        .values(held_for=None)
    )
    conn.execute(delete(unrouted_contact_record).where(kept.held_for == domain_name))


register_domain_deleter(_delete_domains_records)


def keep_unrouted_rows(tx: Tx, records: Sequence[KeptRow]) -> list[tuple[str, bytes]]:
    """Keep records (`KeptRow`), sealed under the system key, in one executemany; the message
    id each was given and its content digest. A record already kept (the same text from the
    same place: a file read again, a stream's redelivery) is not kept twice: the store's unique
    content digest turns the second insert into nothing (the row kept is the one with that
    digest). The place counts: lines too long to read are all kept with empty text, each with
    its own line."""
    if not records:
        return []
    cipher = tx.services.keys.system_cipher()
    rows: list[dict[str, Any]] = []
    for instance_arn, raw, reason, origin, held_for, confined_to in records:
        message_id = uuid.uuid4().hex
        payload = {"object": raw, "reason": reason}
        if origin is not None:
            payload["origin"] = origin
        if confined_to is not None:
            # Sealed with the record, not a column: only a record's sending on (which opens
            # it) and a move's following (which opens it too) ask.
            payload["confined_to"] = confined_to
        rows.append(
            {
                "message_id": message_id,
                "content_digest": cipher.digest(UNROUTED_KEY_NAME, f"{origin or ''}\x00{raw}"),
                # Only an instance ARN is kept in the column, to route the record once its
                # instance is associated. Anything else (it can be any text a sender put
                # there, even a NUL that PostgreSQL refuses) is kept in the sealed record only.
                "instance_arn": instance_arn
                if instance_arn and is_instance_arn(instance_arn)
                else None,
                "sealed": cipher.seal_record(UNROUTED_TABLE, message_id, payload),
                "created_at": tx.now,
                "held_for": held_for,
            }
        )
    statement: Any = (
        sqlite_insert(unrouted_contact_record)
        if tx.services.database.is_sqlite
        else pg_insert(unrouted_contact_record)
    )
    tx.conn.execute(statement.on_conflict_do_nothing(index_elements=["content_digest"]), rows)
    return [(row["message_id"], row["content_digest"]) for row in rows]


def keep_waiting(
    tx: Tx, waiting: Sequence[tuple[str, ContactRecord, tuple[bytes, ...], str | None, bool]]
) -> list[str | None]:
    """Keep (domain, record, awaited contact digests, origin, confined) records waiting for a
    contact they continue (contacts.links): in the unrouted store, with their reason, and a
    `contact_awaited` row per digest; a `confined` one is confined to the domain (see the
    module). A record already kept (delivered again while it waits,
    or twice in the batch) is kept once: its row is the one that waits. The message id of the
    row each record waits as (None: that row has just left the store, sent on by another)."""
    if not waiting:
        return []
    given = keep_unrouted_rows(
        tx,
        [
            (r.instance_arn, r.raw, waiting_reason(r), origin, None, domain if confined else None)
            for domain, r, _, origin, confined in waiting
        ],
    )
    kept = unrouted_contact_record.c
    held: dict[bytes, str] = {}
    for chunk in in_chunks(sorted({digest for _, digest in given})):
        held.update(
            (bytes(row.content_digest), row.message_id)
            for row in tx.conn.execute(
                select(kept.content_digest, kept.message_id).where(kept.content_digest.in_(chunk))
            )
        )
    wait_in(
        tx,
        [
            (message_id, domain_name, digests)
            for (message_id, digest), (domain_name, _, digests, _, _) in zip(
                given, waiting, strict=True
            )
            if held.get(digest) == message_id
        ],
    )
    return [held.get(digest) for _, digest in given]


def list_unrouted(
    tx: Tx,
    *,
    instance_arn: str | None = None,
    limit: int | None = None,
    waiting: bool | None = None,
    message_ids: Sequence[str] | None = None,
    kept_before: datetime | None = None,
    held_for: Sequence[str | None] | None = None,
) -> list[UnroutedRecord]:
    """Kept records, oldest first (all instances when `instance_arn` is None; the `limit` oldest
    when given; only those waiting for a contact they continue, or only the others, when
    `waiting` says; only those of `message_ids` when given; only those kept before
    `kept_before` when given; only those held for one of `held_for`, None among them for
    those held for no domain in particular, when given)."""
    query = (
        select(unrouted_contact_record)
        .order_by(unrouted_contact_record.c.created_at, unrouted_contact_record.c.message_id)
        .limit(limit)
    )
    if instance_arn is not None:
        query = query.where(unrouted_contact_record.c.instance_arn == instance_arn)
    if waiting is not None:
        query = query.where(WAITING if waiting else ~WAITING)
    if message_ids is not None:
        query = query.where(unrouted_contact_record.c.message_id.in_(message_ids))
    if kept_before is not None:
        query = query.where(unrouted_contact_record.c.created_at < kept_before)
    if held_for is not None:
        column = unrouted_contact_record.c.held_for
        named = [domain_name for domain_name in held_for if domain_name is not None]
        query = query.where(
            or_(column.in_(named), column.is_(None)) if None in held_for else column.in_(named)
        )
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
                origin=payload.get("origin"),
                confined_to=payload.get("confined_to"),
            )
        )
    return out


def count_unrouted(
    tx: Tx, *, instance_arn: str | None = None, waiting: bool | None = None
) -> dict[str | None, int]:
    """Kept records per instance ARN (None: kept without one), counted without opening them;
    only those waiting for a contact they continue, or only the others, when `waiting` says."""
    arn = unrouted_contact_record.c.instance_arn
    query = select(arn, func.count()).group_by(arn)
    if instance_arn is not None:
        query = query.where(arn == instance_arn)
    if waiting is not None:
        query = query.where(WAITING if waiting else ~WAITING)
    return {row[0]: int(row[1]) for row in tx.conn.execute(query)}


def purgeable_unrouted(tx: Tx, *, instance_arn: str | None) -> list[str]:
    """The message ids of the kept records `purge_unrouted` deletes for the instance (None:
    those kept without an instance ARN), read without opening them: counted for the operator's
    question, then passed back to `purge_unrouted` so that it deletes those and no record kept
    while the question waited."""
    kept = unrouted_contact_record.c
    return list(tx.conn.execute(select(kept.message_id).where(_purgeable(instance_arn))).scalars())


def purge_unrouted(tx: Tx, *, instance_arn: str | None, message_ids: Sequence[str]) -> int:
    """Delete kept records: the instance's, or (None) those kept without an instance ARN,
    which no association can ever route; of those, the ones of `message_ids` (what
    `purgeable_unrouted` counted); how many. For the operator who will not associate the
    instance (`openprofiles instances purge-unrouted`): the records are personal data. Records
    waiting for a contact they continue are left: their domain takes them, applied or
    dead-lettered, within `WAIT_SECONDS`."""
    tx.erased()
    statement = delete(unrouted_contact_record).where(_purgeable(instance_arn))
    ids = unrouted_contact_record.c.message_id
    return sum(
        int(tx.conn.execute(statement.where(ids.in_(chunk))).rowcount or 0)
        for chunk in in_chunks(sorted(set(message_ids)))
    )


def _purgeable(instance_arn: str | None) -> Any:
    """The condition of the kept records `purge_unrouted` deletes: the instance's (None:
    without an instance ARN), waiting ones left."""
    arn = unrouted_contact_record.c.instance_arn
    return and_(arn.is_(None) if instance_arn is None else arn == instance_arn, ~WAITING)


def unrouted_holding(tx: Tx, *, value: HeldValue) -> list[str]:
    """The message ids of the kept records (every instance's, waiting ones too) whose record or
    reason holds a customer's value (openprofiles.held_values), in id order: each is opened, a
    page at a time. A kept record names no profile, so DeleteProfile leaves it, and a replay
    (`instances associate`) would bring the erased customer back: this finds it for
    `purge_unrouted_ids` (`openprofiles instances purge-unrouted --matching`)."""
    cipher = tx.services.keys.system_cipher()
    kept = unrouted_contact_record.c
    return ids_holding(
        value,
        lambda after, limit: tx.conn.execute(
            select(kept.message_id, kept.sealed)
            .where(kept.message_id > after)
            .order_by(kept.message_id)
            .limit(limit)
        ).all(),
        lambda row: cipher.open_record(UNROUTED_TABLE, row.message_id, bytes(row.sealed)),
    )


def purge_unrouted_ids(tx: Tx, *, message_ids: Sequence[str]) -> int:
    """Delete the kept records of `message_ids`, waiting ones too (a customer's erasure: their
    domain would apply them), with their `contact_awaited` rows; how many went (one sent on
    meanwhile is not counted)."""
    tx.erased()
    purged = 0
    for chunk in in_chunks(sorted(set(message_ids))):
        tx.conn.execute(delete(contact_awaited).where(contact_awaited.c.message_id.in_(chunk)))
        result = tx.conn.execute(
            delete(unrouted_contact_record).where(unrouted_contact_record.c.message_id.in_(chunk))
        )
        purged += int(result.rowcount or 0)
    return purged
