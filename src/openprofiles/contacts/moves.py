"""Where the records of a contact-centre instance go once it has moved to another domain, and
where its kept records wait.

* A moved instance's contacts go to its new domain, but for updates of those applied in a
  domain it was moved away from, and records that continue them (a transfer leg, a task): they
  go there, where their profile and history are (`applied_where_moved_from`,
  `instance_moved_from`, remembered by `note_move`), unless their own contact is applied in
  the new domain already (its start event); while that domain's KMS does not answer, they are
  not routed at all, and a stream holds for the new domain's unusable key only those that do
  not go back. DeleteIntegration of the instance's integration counts as a move away from its
  domain (`_note_dissociation`): a move in two steps routes so too.
* The records kept waiting in the old domain for a contact they continue wait in the new one
  from the move on (`follow_instance`), and so do those a batch kept there while the move
  committed, at the next sweep (`follow_strays`; contacts.waiting). But for those confined to
  the old domain (a sender limited to some domains sent them: contacts.confined): they stay,
  and are sent on at once, to be dead-lettered there.

The intake (contacts.service `ingest_contact_items`) routes by it, and the association
(contacts.service `connect_instance`) notes the moves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from sqlalchemy import delete, select

from openprofiles.contacts.kept import UnroutedRecord, list_unrouted
from openprofiles.contacts.links import CUSTOMER_ENDPOINT_TYPES, continued_contact_ids
from openprofiles.contacts.models import BatchOutcome, ContactRecord, ContactRecordInvalid
from openprofiles.contacts.records import parse_contact_record, read_record
from openprofiles.contacts.routing import Router, applied_states, contact_digest
from openprofiles.contacts.waiting import strays, wait_in, waiting_of_instance
from openprofiles.context import Services, Tx
from openprofiles.errors import ServiceError
from openprofiles.integrations.models import Integration
from openprofiles.integrations.service import on_instance_dissociated
from openprofiles.store.conflicts import retrying
from openprofiles.store.in_lists import in_chunks
from openprofiles.store.schema import instance_moved_from

logger = logging.getLogger(__name__)


def applied_where_moved_from(
    tx: Tx,
    route: Router,
    routed: Sequence[tuple[int, ContactRecord, Integration]],
    *,
    hold: bool,
) -> tuple[dict[int, tuple[str, str]], dict[int, tuple[str, str]]]:
    """The routed records (index, record, target) whose contact, or a contact they continue
    (`continued_contact_ids`: a transfer leg, a task made from a call), is applied in a domain
    their instance was moved away from (`instance_moved_from`, the latest move first): index →
    (that domain, the object type that contact is stored as there); a domain that holds the
    record's own contact comes before one that holds only a contact it continues, and the
    instance's domain now, where its own contact is applied (`_applied_here`), before any. A
    move moves no profiles, and what comes next goes to the new domain, but an update of a contact
    applied before the move, or a leg of it, belongs where its profile and history are: sent
    to the new domain, an update would be a second, new contact there, the stale copy left in
    the old one, and a leg would wait there for a contact that never comes. One query a batch
    looks the moves up; only the records of instances that moved cost more (a query for their
    own contacts in their domain now, and one per domain they left, for their own and
    continued contacts together).

    A domain left whose key is refused (disabled, deleted, access revoked) is not looked in: a
    domain given up must not hold up the instance's records, which go to the new domain. One
    whose KMS does not answer now may hold their contacts, which cannot be told: sent to the
    new domain, they would split a contact over two domains. So, as when the instance's own
    domain cannot take them (contacts.service `ingest_contact_items`), the batch fails with its
    error (a request: InternalServerException, retried), or with `hold` (a stream, kept records
    sent on: an association's replay must not fail the move away from that domain) the records
    of the instances that left it, but those already placed, are held: the second mapping,
    index → (why, that domain: the one they are held for). An instance's integration deleted
    (DeleteIntegration) counts as a move away from its domain (`_note_dissociation`):
    associated with another, it is such a domain left."""
    if not routed:
        return {}, {}
    moved = instance_moved_from.c
    left: dict[str, set[str]] = {}  # domain → the batch's instances that left it, latest first
    for chunk in in_chunks(sorted({target.uri for _, _, target in routed})):
        query = (
            select(moved.domain_name, moved.instance_arn)
            .where(moved.instance_arn.in_(chunk))
            .order_by(moved.moved_at.desc())
        )
        for row in tx.conn.execute(query):
            left.setdefault(row.domain_name, set()).add(row.instance_arn)
    back: dict[int, tuple[str, str]] = {}
    # Placed by their own contact: looked for no further. First those whose own contact is
    # applied in their instance's domain now (a contact-start event after the move,
    # `apply_contact_event`): sent back for a contact they continue, a contact would be split
    # over two domains. Not where that domain's key cannot be used: its digests cannot be made.
    movers: set[str] = set().union(*left.values())
    by_own = _applied_here(tx, route, [r for r in routed if r[2].uri in movers])
    # Those whose instance's domain now cannot be checked (its key cannot be used): whether
    # their own contact is there already cannot be told. One with a customer endpoint may be
    # (its start event, applied there before the key failed): it goes back by its own contact
    # only, not by one it continues, or the contact could split; it is held or fails with its
    # domain, as a new contact there. One without (a task, which a start event places on no
    # profile) still follows the contact it continues.
    unchecked = {
        index
        for index, record, target in routed
        if target.uri in movers
        and route.unavailable(target.domain_name) is not None
        and record.customer_endpoint is not None
        and record.customer_endpoint.type in CUSTOMER_ENDPOINT_TYPES
    }
    held: dict[int, tuple[str, str]] = {}
    for domain_name, instances in left.items():
        theirs = [
            (index, record)
            for index, record, target in routed
            if target.uri in instances and index not in by_own and index not in held
        ]
        if not theirs:
            continue
        error = route.out_for_now(domain_name)
        if error is not None and not hold:
            raise error.with_traceback(None)
        if error is not None:
            why = route.unavailable(domain_name) or error.message
            held.update((index, (why, domain_name)) for index, _ in theirs if index not in back)
            continue
        if route.unavailable(domain_name) is not None:
            continue
        # Own contact first; for one placed by a contact it continues, only its own is left.
        asked = {
            index: [
                contact_digest(tx, domain_name, contact_id)
                for contact_id in [
                    record.contact_id,
                    *([] if index in back or index in unchecked else continued_contact_ids(record)),
                ]
            ]
            for index, record in theirs
        }
        seen = applied_states(tx, domain_name, [d for ds in asked.values() for d in ds])
        for index, (own, *continued) in asked.items():
            if own in seen:
                back[index] = (domain_name, seen[own].object_type_name)
                by_own.add(index)
                continue
            found = next((d for d in continued if d in seen), None)
            if found is not None:
                back[index] = (domain_name, seen[found].object_type_name)
    return back, held


def _applied_here(
    tx: Tx, route: Router, routed: Sequence[tuple[int, ContactRecord, Integration]]
) -> set[int]:
    """The routed records (index, record, target) whose own contact is applied in their
    target's domain, one query a domain; those of a domain whose key cannot be used now are
    taken as not applied there."""
    asked: dict[str, list[tuple[int, bytes]]] = {}
    for index, record, target in routed:
        if route.unavailable(target.domain_name) is None:
            digest = contact_digest(tx, target.domain_name, record.contact_id)
            asked.setdefault(target.domain_name, []).append((index, digest))
    found: set[int] = set()
    for domain_name, digests in asked.items():
        seen = applied_states(tx, domain_name, [digest for _, digest in digests])
        found.update(index for index, digest in digests if digest in seen)
    return found


def note_move(tx: Tx, instance_arn: str, *, from_domain: str | None, to_domain: str | None) -> None:
    """Remember the domain the instance was moved away from, if any (`instance_moved_from`:
    updates of its contacts applied there still go there, `applied_where_moved_from`), and
    forget `to_domain` as one it left: it is the instance's own again. `to_domain` None: a
    dissociation (`_note_dissociation`). Under the instance's association lock
    (`associate_instance`, `delete_integration`)."""
    moved = instance_moved_from.c
    left = [d for d in (to_domain, from_domain) if d is not None]
    tx.conn.execute(
        delete(instance_moved_from).where(
            moved.instance_arn == instance_arn, moved.domain_name.in_(left)
        )
    )
    if from_domain is not None:
        tx.conn.execute(
            instance_moved_from.insert().values(
                domain_name=from_domain, instance_arn=instance_arn, moved_at=tx.now
            )
        )


def _note_dissociation(tx: Tx, instance_arn: str, domain_name: str) -> None:
    """DeleteIntegration of an instance's integration: the first step of a move done in two
    (then an association with another domain). The domain is remembered as one it left, so
    updates of the contacts applied there go there whatever domain the instance is associated
    with next, as after a move (`note_move`); associated with it again, it is its own."""
    note_move(tx, instance_arn, from_domain=domain_name, to_domain=None)


if _note_dissociation not in on_instance_dissociated:
    on_instance_dissociated.append(_note_dissociation)


def follow_instance(
    tx: Tx, instance_arn: str, *, from_domain: str, to_domain: str
) -> list[UnroutedRecord]:
    """A moved instance's records waiting in its old domain wait in the new one, where their
    contacts now come (contacts.waiting), by the digests of the contacts that would place them
    there: their own and those they continue. Their time counts on from when they were kept.
    One whose contact comes back to the old domain after all (a leg of a contact applied
    there, `applied_where_moved_from`) is sent on from here by the batch that applies it
    there (contacts.service `_intake` wakes that contact's records in the instance's domain
    too), and follows it to the old domain.

    Those confined to the old domain (contacts.confined) do not follow: they are returned,
    for the caller to send on in its transaction (contacts.service `replay`), which
    dead-letters them there."""
    message_ids = waiting_of_instance(tx, instance_arn=instance_arn, domain_name=from_domain)
    moved: list[tuple[str, str, list[bytes]]] = []
    stayed: list[UnroutedRecord] = []
    for chunk in in_chunks(message_ids):
        for kept in list_unrouted(tx, message_ids=chunk):
            if kept.confined_to is not None:
                stayed.append(kept)
                continue
            raw, parsed = read_record(kept.object_json)
            try:
                record = parse_contact_record(
                    parsed, raw, phone_region=tx.settings.default_phone_region
                )
            except ContactRecordInvalid:
                # Not a record now (kept by an older version): it waits no more, and the
                # replay that follows dead-letters it with the reason.
                moved.append((kept.message_id, to_domain, []))
                continue
            contact_ids = [record.contact_id, *continued_contact_ids(record)]
            digests = [contact_digest(tx, to_domain, c) for c in contact_ids]
            moved.append((kept.message_id, to_domain, digests))
    wait_in(tx, moved)
    return stayed


def follow_strays(
    services: Services, send_on: Callable[[Tx, Sequence[UnroutedRecord]], BatchOutcome]
) -> list[BatchOutcome]:
    """Records waiting in a domain their instance has left wait in its domain now, as a move
    makes them (`follow_instance`): those a batch that routed them to the old domain kept
    there after the move had moved the others (contacts.waiting), and those left waiting in a
    domain the instance was dissociated from (DeleteIntegration) when it is associated with
    another. The confined ones `follow_instance` leaves are sent on with `send_on`
    (contacts.service `replay`) in the same transaction: what became of them is returned.
    Looked for in a read first: there are none but after such a race, and a write every
    minute would take SQLite's writer lock for nothing."""
    with services.read() as tx:
        if not strays(tx):
            return []

    def follow() -> list[BatchOutcome]:
        sent: list[BatchOutcome] = []
        with services.write() as tx:
            for instance_arn, from_domain, to_domain in strays(tx):
                stayed = follow_instance(
                    tx, instance_arn, from_domain=from_domain, to_domain=to_domain
                )
                if stayed:
                    sent.append(send_on(tx, stayed))
        return sent

    try:
        return retrying(follow)
    except ServiceError as exc:
        # Their new domain's key fails: they wait where they are, and are tried next sweep.
        logger.warning(
            "Waiting contact records of a moved instance could not follow it (%s); they are "
            "tried again later.",
            type(exc).__name__,
        )
        return []
