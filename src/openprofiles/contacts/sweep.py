"""The drivers that send the kept records (contacts.kept) on, a transaction per chunk.

* `send_kept_on` sends on the records a domain can take now (`held_instances`, `replay_held`):
  the one driver of every chunk of an association's kept records after the first, which the
  association's own transaction replays (contacts.service `connect_instance`); of the server's
  sweep (`kept_records_task`, every `KEPT_SWEEP_SECONDS`) and `openprofiles instances
  send-kept`, for an association whose process stopped before its records were all sent; and
  of a stream's connector, for the records it held while their domain could not take them.
* `send_waiting_on` sends on the records waiting for a contact they continue (contacts.links,
  contacts.waiting) whose contact came without sending them on, or that waited `WAIT_SECONDS`.
* `purge_shared_endpoints` deletes the endpoints of start events several profiles shared
  (contacts.shared_endpoint) once the contact's live period, that same `WAIT_SECONDS`, is over.

Each chunk goes through the intake again (contacts.service `replay`), which takes its records
out of the store before it sends them on: several drivers at once never send a record twice.
Above the intake (contacts.service): the replays that run inside another transaction (an
association's first chunk, a batch's wake) are the intake's own.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, or_, select

from openprofiles.background import PeriodicTask
from openprofiles.contacts.kept import WAITING, UnroutedRecord, list_unrouted
from openprofiles.contacts.links import CONTACT_KEY, WAIT_SECONDS
from openprofiles.contacts.models import BatchOutcome
from openprofiles.contacts.moves import follow_strays
from openprofiles.contacts.routing import Router
from openprofiles.contacts.service import REPLAY_CHUNK, add_outcome, replay
from openprofiles.contacts.shared_endpoint import any_stale, purge_stale
from openprofiles.context import Services, Tx
from openprofiles.errors import ServiceError
from openprofiles.integrations.service import lock_instances
from openprofiles.store.conflicts import retrying
from openprofiles.store.schema import (
    contact_awaited,
    contact_record,
    instance_moved_from,
    profile_key,
    unrouted_contact_record,
)

# How often the server's sweep sends on kept records a domain can take now (kept_records_task).
KEPT_SWEEP_SECONDS = 60.0
logger = logging.getLogger(__name__)


def held_groups(tx: Tx, *, kept_before: datetime | None = None) -> dict[str, list[str | None]]:
    """The instances with kept records that a domain can take now, each with the domains those
    records are held for (contacts.kept `held_for`; None: the instance's domain, whichever it
    is), in the instances' order. Those are the records held while their domain could not take
    them (`ingest_contact_items(hold_unavailable=True)`), and those of an association that had
    more than its transaction replays (`connect_instance`) and not sent all the rest yet. Only
    those kept before `kept_before`, when given (`send_kept_on`'s run).

    Records held for the instance's domain (or for none) are ready once that domain's key can
    be used. Records held for a domain the instance was moved away from (its KMS did not
    answer: they may update a contact there, contacts.moves) are ready once that KMS answers,
    or its key is refused (they then go to the instance's domain, held again if it cannot take
    them): they do not wait on the instance's domain's key, and it does not wait on them.
    Held for a domain that is neither (deleted since, or left and come back to), they are
    held for the instance's domain."""
    route = Router(tx)
    kept = unrouted_contact_record.c
    query = select(kept.instance_arn, kept.held_for).where(kept.instance_arn.is_not(None), ~WAITING)
    if kept_before is not None:
        query = query.where(kept.created_at < kept_before)
    left: dict[str, set[str]] = {}
    ready: dict[str, list[str | None]] = {}
    for instance_arn, held_for in tx.conn.execute(query.distinct()):
        target = route(instance_arn)
        if target is None:
            continue
        if instance_arn not in left:
            moved = instance_moved_from.c
            left[instance_arn] = set(
                tx.conn.execute(
                    select(moved.domain_name).where(moved.instance_arn == instance_arn)
                ).scalars()
            )
        if held_for is not None and held_for in left[instance_arn]:
            can = route.out_for_now(held_for) is None
        else:
            can = route.unavailable(target.domain_name) is None
        if can:
            ready.setdefault(instance_arn, []).append(held_for)
    return {instance_arn: ready[instance_arn] for instance_arn in sorted(ready)}


def held_instances(tx: Tx, *, kept_before: datetime | None = None) -> list[str]:
    """The instances with kept records that a domain can take now (`held_groups`), sorted."""
    return list(held_groups(tx, kept_before=kept_before))


def replay_held(
    tx: Tx,
    *,
    instance_arns: Sequence[str],
    limit: int,
    kept_before: datetime | None = None,
    held_for: Mapping[str, Sequence[str | None]] | None = None,
) -> BatchOutcome:
    """Send on the `limit` oldest kept records of these instances (`held_instances`; only those
    kept before `kept_before`, and those held for the domains `held_for` names for the
    instance (`held_groups`), when given), holding again those whose domain cannot take them
    after all (the outcome reports each one); `send_kept_on` calls it chunk after chunk."""
    # Shared, before their records are taken out: an instance dissociated since
    # `held_instances` keeps its records again under this lock (Router.look_up), and taken
    # after the deletes it would wait for an association whose replay waits for those rows.
    lock_instances(tx, instance_arns, shared=True)
    kept: list[UnroutedRecord] = []
    for instance_arn in instance_arns:
        kept.extend(
            list_unrouted(
                tx,
                instance_arn=instance_arn,
                limit=limit - len(kept),
                waiting=False,
                kept_before=kept_before,
                held_for=None if held_for is None else held_for.get(instance_arn, ()),
            )
        )
        if len(kept) >= limit:
            break
    return replay(tx, kept, hold_unavailable=True)


def send_kept_on(
    services: Services,
    *,
    instance_arns: Sequence[str] | None = None,
    sent: BatchOutcome | None = None,
    limit: int = REPLAY_CHUNK,
) -> BatchOutcome:
    """Send on the kept records that a domain can take now (`held_instances`; only those of
    `instance_arns` when given), `limit` a transaction, oldest first, until none is left; what
    was sent, in all. The one driver of every chunk after the first: an association once it
    committed (`connect_instance`), the server's sweep and `openprofiles instances send-kept`
    for an association whose process stopped before its records were all sent, and a stream's
    connector for the records it held (connectors.kinesis, `limit` its batch size).

    Several drivers at once are safe: each chunk takes its rows out before it sends them
    (contacts.service `replay`), so a record goes to one of them only. A run sends on the
    records kept before it began, each once: one a chunk keeps again (its domain's key failed
    meanwhile, a domain its instance left does not answer, or the instance was dissociated) is
    kept as a new row, left to the next run, and the run goes on to the others — it stopped
    there once, and an instance whose records could not go now held back every other
    instance's after it. A chunk that fails is logged and stops the run (the association, if
    any, stays committed): the next sweep tries again.

    `sent`: what the association's own transaction replayed, counted into the result.

    Without `instance_arns` (the sweep, `openprofiles instances send-kept`, a stream's
    connector) it then sends on the records waiting for a contact they continue whose contact
    came, or that waited long enough (`send_waiting_on`), and purges the shared endpoints kept
    past their contact's live period (`purge_shared_endpoints`)."""
    total = BatchOutcome()
    if sent is not None:
        add_outcome(total, sent)
    _send_held_on(services, instance_arns, limit, total)
    if instance_arns is None:
        send_waiting_on(services, limit=limit, total=total)
        purge_shared_endpoints(services)
    return total


def purge_shared_endpoints(services: Services, *, now: datetime | None = None) -> int:
    """Delete the callers' endpoints kept for the screen pop of contacts several profiles
    matched (contacts.shared_endpoint) once their live period is over (before `now`, when
    given); how many went. One that fails is logged (never the values) and left to the next
    sweep."""

    def purge() -> int:
        with services.write() as tx:
            return purge_stale(tx, now=now)

    try:
        with services.read() as tx:
            if not any_stale(tx, now=now):
                return 0
        return retrying(purge)
    except ServiceError as exc:
        logger.warning(
            "Shared caller endpoints could not be purged (%s); they are tried again later.",
            type(exc).__name__,
        )
        return 0


def _send_held_on(
    services: Services, instance_arns: Sequence[str] | None, limit: int, total: BatchOutcome
) -> None:
    """`send_kept_on`'s held and unrouted records, counted into `total`."""
    wanted = None if instance_arns is None else set(instance_arns)
    # Records kept again by a chunk of this run are kept as new rows, after this: left to the
    # next run, they cannot come round again and again in this one.
    began = datetime.now(UTC)
    while True:
        with services.read() as tx:
            ready = {
                arn: domains
                for arn, domains in held_groups(tx, kept_before=began).items()
                if wanted is None or arn in wanted
            }
        if not ready:
            return

        def chunk(ready: dict[str, list[str | None]] = ready) -> BatchOutcome:
            with services.write() as tx:
                return replay_held(
                    tx,
                    instance_arns=list(ready),
                    limit=limit,
                    kept_before=began,
                    held_for=ready,
                )

        try:
            outcome = retrying(chunk)
        except ServiceError as exc:
            logger.warning(
                "Kept contact records could not be sent on (%s); they are tried again later.",
                type(exc).__name__,
            )
            return
        add_outcome(total, outcome)
        if not (outcome.accepted or outcome.rejected):
            # Another driver took the rows first.
            return


def send_waiting_on(
    services: Services,
    *,
    limit: int = REPLAY_CHUNK,
    total: BatchOutcome | None = None,
    now: datetime | None = None,
) -> BatchOutcome:
    """Send on the records waiting for a contact they continue (contacts.links): those one of
    whose awaited contacts is now applied to a profile or linked to one, and those kept
    `WAIT_SECONDS` (before `now`, when given), `limit` a transaction, until none is left;
    what was sent (counted into `total`, when given). Sent on, a record is applied or
    dead-lettered, never kept waiting again (`ingest_contact_items(waited=...)`), and
    the records waiting for one it applies are sent on with it (contacts.service `_wake`). A
    record whose contact a batch applies is sent on by that batch: what is left here is those
    an agent's link places (when the link's own wake skipped it) and those that waited long
    enough.
    Safe with several drivers at once, as
    `send_kept_on`. Records left waiting in a domain their instance was moved away from are
    first made to wait in its domain now (contacts.moves `follow_strays`)."""
    total = total if total is not None else BatchOutcome()
    for sent in follow_strays(services, replay):
        add_outcome(total, sent)
    while True:

        def chunk() -> BatchOutcome | None:
            with services.write() as tx:
                ids = _waiting_to_send(tx, limit, now or tx.now)
                if not ids:
                    return None
                # A domain whose key fails meanwhile holds them, as any kept records.
                kept = list_unrouted(tx, message_ids=ids)
                return replay(tx, kept, hold_unavailable=True, waited_until=now or tx.now)

        try:
            outcome = retrying(chunk)
        except ServiceError as exc:
            logger.warning(
                "Waiting contact records could not be sent on (%s); they are tried again later.",
                type(exc).__name__,
            )
            return total
        if outcome is None:
            return total
        add_outcome(total, outcome)
        if outcome.held:
            # Their domain's key failed meanwhile: kept as held records, sent on with those.
            return total


def _waiting_to_send(tx: Tx, limit: int, now: datetime) -> list[str]:
    """The message ids of (at most `limit`) waiting records to send on now (`send_waiting_on`),
    oldest first."""
    waited = contact_awaited.alias("waited")
    applied = select(contact_record.c.contact_digest).where(
        contact_record.c.domain_name == waited.c.domain_name,
        contact_record.c.contact_digest == waited.c.contact_digest,
        contact_record.c.profile_id.is_not(None),
    )
    linked = select(profile_key.c.digest).where(
        profile_key.c.domain_name == waited.c.domain_name,
        profile_key.c.key_name == CONTACT_KEY,
        profile_key.c.digest == waited.c.contact_digest,
    )
    came = select(waited.c.message_id).where(
        waited.c.message_id == unrouted_contact_record.c.message_id,
        or_(applied.exists(), linked.exists()),
    )
    due = and_(
        # Driven from contact_awaited (IN, not WAITING's correlated EXISTS): SQLite otherwise
        # scans the whole kept-records store, under the write lock, at every sweep.
        unrouted_contact_record.c.message_id.in_(select(contact_awaited.c.message_id)),
        or_(
            unrouted_contact_record.c.created_at <= now - timedelta(seconds=WAIT_SECONDS),
            came.exists(),
        ),
    )
    query = (
        select(unrouted_contact_record.c.message_id)
        .where(due)
        .order_by(unrouted_contact_record.c.created_at, unrouted_contact_record.c.message_id)
        .limit(limit)
    )
    return list(tx.conn.execute(query).scalars())


def kept_records_task(services: Services) -> PeriodicTask:
    """The server's background sweep (every `KEPT_SWEEP_SECONDS`): sends on the kept records of
    instances a domain can take now, those an association could not send on before its process
    stopped among them, the records waiting for a contact they continue whose contact came
    or that waited long enough (`send_waiting_on`), and the shared endpoints past their live
    period (`purge_shared_endpoints`). Several server processes may run it at
    once: `send_kept_on` is safe so."""
    return PeriodicTask(
        "send kept contact records on", lambda: send_kept_on(services), KEPT_SWEEP_SECONDS
    )
