"""Rules for contact records and live contact events (spec §3).

Every contact record goes to the domain its instance is associated with (integrations) and
through the one ingestion pipeline, as an object of that integration's object type (CTR,
CTR-NoInferred, CTR-AutoAssociateOnly or a type built on them): the template's keys decide the
profile (`_ctrContactId` first, then the caller's phone number for voice or the customer's email
address for chat and email).

* Idempotent deliveries: `contact_record` remembers, per domain and ContactId, the
  LastUpdateTimestamp applied. A repeated delivery, or an older version of a contact, changes
  nothing; a newer one replaces the stored record (the pipeline replaces objects by their
  UNIQUE key: `_ctrContactId` in the templates, the type's own in a type of one's own). A
  record that cannot be ordered against the applied one (the same LastUpdateTimestamp, or
  none, and other content) is rejected with the reason, never answered as accepted while
  changing nothing (`_verdict`).
* Nothing is dropped: a record the pipeline rejects, or that is invalid but names an associated
  instance, goes to that domain's dead-letter queue with its reason. A record whose instance is
  associated with no domain (or that names no instance), and those a stream's batch
  (`hold_unavailable`) holds for a domain that cannot take any now, are kept instead
  (contacts.kept), and sent on once a domain can take them: an instance's first chunk in the
  transaction that associates it (`connect_instance`, `replay_unrouted`), the rest by
  contacts.sweep. A dead-lettered record is retried by `retry_contact_record`, under the same
  rules: checked again, and never applied over a newer version of its contact.
* One intake for every way in (POST /contact-records, `openprofiles ingest contact-records`,
  the Kinesis connector): `ingest_contact_items` parses and routes a batch, then sends each
  (domain, object type) group through `ingest_batch` in the caller's transaction, with the
  dedupe rows read in IN-list queries and written with one executemany.
* A contact-start event (`apply_contact_event`) runs through the same pipeline as a partial
  record, so the profile is found or created by the template's rules at once and `_ctrContactId`
  is indexed on it; the full record that follows lands on the same profile and replaces the
  partial one — unless an agent linked the contact elsewhere (AddProfileKey `_ctrContactId`):
  the latest link wins (`_honour_forced_links`), and a profile the event created that is left
  holding nothing else is deleted (`_drop_event_profile`).
* A contact without a customer endpoint (a task, a chat without an email address) never
  creates a profile: it goes where its `_ctrContactId` or the contact it continues (a transfer
  leg) places it, or to the dead-letter queue saying why (contacts.links). One that comes
  before the contact it continues is applied after it in a batch (`_continued_first`), and
  across batches waits for it in the kept-records store (contacts.kept `keep_waiting`) until
  the batch that applies that contact, or an agent's link of either (`_wake_linked`), sends it
  on (`_wake`, contacts.waiting), or the sweep does (contacts.sweep `send_waiting_on`: an hour
  without).
* A moved instance's records go where contacts.moves says: updates of contacts applied in a
  domain it was moved away from, and the records that continue them, go there; so do its
  contact-start events (`apply_contact_event` routes an event as its record).

In modules of their own: what a record is routed by (contacts.routing), where a moved
instance's records go (contacts.moves), the kept-records store (contacts.kept), and the drivers
that send kept records on (contacts.sweep).
"""

from __future__ import annotations

import heapq
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import and_, bindparam, delete, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

# erasure registers its objects-deleted hook as it is imported.
from openprofiles.auth.scope import DomainScope, refuse_event_out_of_scope
from openprofiles.contacts.confined import keep_confined
from openprofiles.contacts.erasure import carry_contacts
from openprofiles.contacts.kept import (
    KeptRow,
    UnroutedRecord,
    keep_unrouted_rows,
    keep_waiting,
    list_unrouted,
)
from openprofiles.contacts.links import (
    CONTACT_KEY,
    continued_contact_ids,
    lock_contacts,
    needs_link,
    no_profile_reason,
    waiting_reason,
)
from openprofiles.contacts.models import (
    BatchOutcome,
    ContactLink,
    ContactRecord,
    ContactRecordInvalid,
    Rejection,
)
from openprofiles.contacts.moves import applied_where_moved_from, follow_instance, note_move
from openprofiles.contacts.records import (
    Item,
    parse_contact_record,
    read_record,
    screen_pop_search,
)
from openprofiles.contacts.routing import Router, State, applied_states, contact_digest
from openprofiles.contacts.shared_endpoint import keep_shared_endpoint
from openprofiles.contacts.waiting import waiting_for
from openprofiles.context import Tx
from openprofiles.dlq.sinks import dead_letter_in
from openprofiles.domains.service import register_domain_table
from openprofiles.errors import BadRequest, ServiceError
from openprofiles.ingest import DEFAULT_BATCH_SIZE
from openprofiles.ingest.mapping import MappingError, map_object
from openprofiles.ingest.pipeline import IngestRejected, IngestResult, ingest_batch
from openprofiles.integrations.models import InstanceAssociation, Integration, is_instance_arn
from openprofiles.integrations.service import (
    associate_instance,
    find_instance_integration,
    find_integration,
)
from openprofiles.json_text import JsonTextError, load_json
from openprofiles.normalize import ContentType, normalize
from openprofiles.object_types.models import ObjectType
from openprofiles.object_types.service import (
    find_object_type,
    get_object_type,
    lock_object_type,
    on_object_type_deleted,
)
from openprofiles.objects.service import find_object
from openprofiles.profiles.service import (
    DERIVED_ORIGIN,
    EXPLICIT_ORIGIN,
    delete_profile,
    index_profile_keys,
    insert_key_rows,
    on_keys_added,
    on_profiles_deleted,
    resolve_profile_id,
)
from openprofiles.store.in_lists import in_chunks
from openprofiles.store.many import ManyWriter
from openprofiles.store.prepared import PreparedRead
from openprofiles.store.schema import (
    contact_awaited,
    contact_record,
    contact_shared_endpoint,
    instance_moved_from,
    profile,
    profile_key,
    profile_object,
    unrouted_contact_record,
)

register_domain_table(contact_record)
register_domain_table(contact_awaited)
register_domain_table(instance_moved_from)
register_domain_table(contact_shared_endpoint)

# Kept records replayed in one transaction (`connect_instance`, contacts.sweep `send_kept_on`):
# an ordinary batch's size, whose advisory locks (one set per contact, on PostgreSQL) fit the
# server's lock table with room to spare, where an instance's thousands of kept records would
# not.
REPLAY_CHUNK = DEFAULT_BATCH_SIZE
# Waiting records a batch (or a start event, a link, a sweep's chunk) sends on in its own
# transaction (`_wake`), all rounds together: a contact with thousands waiting would hold
# SQLite's writer, and on PostgreSQL exhaust the lock table, as a replay would (REPLAY_CHUNK).
# The rest wait on; their contact applied, the sweep sends them on within a minute.
WAKE_CHUNK = REPLAY_CHUNK


@dataclass(frozen=True)
class Applied:
    """One record applied: `changed` is False for a repeated or older delivery."""

    domain_name: str
    profile_id: str | None
    changed: bool
    created_profile: bool
    # Its ContactId's blind-index digest in `domain_name` (contact_digest), made once for the
    # dedupe and used again by the wake (the contacts records may wait for).
    digest: bytes


@dataclass(frozen=True)
class _Failed:
    """A record the pipeline (or its object type) could not take; it is dead-lettered.

    `error` is the request error that caused it, when it was one (a deleted object type): a
    single contact event reports it as such rather than as a rejected record."""

    reason: str
    category: str
    error: ServiceError | None = None
    # A record placed on no profile that continues a contact of which nothing is applied yet:
    # the digests of the contacts that would place it (its own first), for the intake to keep
    # it waiting rather than dead-letter it (contacts.links).
    awaits: tuple[bytes, ...] = ()


def ingest_contact_items(
    tx: Tx,
    items: Sequence[Item],
    *,
    hold_unavailable: bool = False,
    origins: Sequence[str | None] | None = None,
    waited: Sequence[timedelta] | None = None,
    scope: DomainScope | None = None,
) -> BatchOutcome:
    """Apply every record of a batch (the one intake of POST /contact-records, the file loader
    and the Kinesis connector); rejected ones are dead-lettered (or kept as unrouted) and
    reported, and the rest of the batch is still applied.

    `scope`: the sender's credential is limited to these domains (auth.scope). A record that
    would go to another domain (its instance's, or one the instance was moved away from), or
    be kept for an instance associated with no domain, is rejected with the reason, neither
    applied, dead-lettered nor kept.

    The records are parsed and routed first, then applied per (domain, object type) through
    `ingest_batch` (`apply_contact_records`); outcomes are reported in the batch's order.

    A domain that cannot take records now (its key unusable) fails the batch with its error,
    nothing applied, for a caller that answers it (a request, a file load). With
    `hold_unavailable` (a stream, whose batch would otherwise wait whole for one domain) its
    records are kept instead, sealed under the system key like unrouted ones — its own
    dead-letter store is sealed under the key that fails — and reported as rejected and held;
    `replay_held` (contacts.sweep) sends them on once it can take them.

    `origins` says where each item came from ("File ctr.jsonl, line 3"), for its dead letter.

    A record without a customer endpoint that continues a contact of which nothing is applied
    yet is kept waiting for it (contacts.kept `keep_waiting`, contacts.links), reported as
    rejected and held (`waiting`). Not with `waited` (records sent on after waiting that long:
    they never wait twice): it is dead-lettered, saying how long it waited. Then the records
    kept waiting for the contacts the batch applied are sent on in its transaction (`_wake`),
    reported in the outcome's `woken`, not among the batch's own — but for those the batch
    itself kept waiting (a later group of it, another object type, applied their contact),
    which are reported as what they became (`claim_woken`).
    """
    outcome, applied = _intake(tx, items, hold_unavailable, origins, waited, scope=scope)
    _wake(tx, applied, outcome)
    return outcome


def _intake(
    tx: Tx,
    items: Sequence[Item],
    hold_unavailable: bool,
    origins: Sequence[str | None] | None,
    waited: Sequence[timedelta] | None,
    *,
    hold_left: bool = False,
    sent_as: Sequence[str] | None = None,
    scope: DomainScope | None = None,
    confined: Sequence[str | None] | None = None,
) -> tuple[BatchOutcome, dict[str, set[bytes]]]:
    """`ingest_contact_items` but for the waiting records it wakes; also the digests of the
    contacts it applied to a profile, by domain (the contacts records may wait for).
    `hold_left`: kept records sent on (`_resend`) are held again while a domain their
    instance left does not answer, even where the instance's own domain's outage would fail
    the caller (an association's replay: the move away from that domain must not fail).
    `sent_as`: the items are kept records sent on, of these message ids (the outcome's
    `sent`); `confined`: the domain each is confined to (contacts.confined), or None. A record
    kept here (waiting, held) stays confined to its domain, and one a `scope`d sender sent is
    confined to the domain it is kept for."""
    route = Router(tx, keeping=True)
    # Every instance of the batch is looked up, under its association lock, before the batch
    # writes anything, so those locks come first in the transaction (store.advisory).
    route.look_up(_instances_named(items))
    # Where each rejected record went, by its index: held (kept for a domain that cannot take
    # it now), the domain that dead-lettered it, kept unrouted, kept waiting.
    held: set[int] = set()
    lettered: dict[int, str] = {}
    results: list[Applied | Rejection | None] = [None] * len(items)
    routed: list[tuple[int, ContactRecord, Integration]] = []
    unrouted: dict[int, KeptRow] = {}
    waiting: dict[int, tuple[str, ContactRecord, tuple[bytes, ...], str | None, bool]] = {}
    applied: dict[str, set[bytes]] = {}
    refusals: dict[str | None, str] = {}

    def refused(domain_name: str | None) -> str | None:
        """Why the sender's scope refuses a record for `domain_name` (None: kept for no domain
        yet), or None; written to the audit log once a batch and domain (auth.scope), once the
        batch has committed: a transaction run again after a lost race (store.conflicts.
        retrying) logs no second line, and one that fails refused nothing."""
        if scope is None or (domain_name is not None and scope.allows(domain_name)):
            return None
        if domain_name not in refusals:
            refusals[domain_name] = scope.feed_refusal_reason()
            tx.after_commit(partial(scope.log_feed_refusal, domain_name, "records"))
        return refusals[domain_name]

    def confined_to(index: int, domain_name: str) -> str | None:
        """The domain a record kept now for `domain_name` is confined to: a confined one's own,
        and for a sender limited to some domains `domain_name` (in its scope: refused
        otherwise); None for others."""
        if confined is not None and confined[index] is not None:
            return confined[index]
        return domain_name if scope is not None else None

    def strayed(index: int, domain_name: str | None) -> bool:
        """Whether a confined record would land outside its domain (in `domain_name`; None:
        kept for the instance's next domain)."""
        return confined is not None and confined[index] not in (None, domain_name)

    def stay(index: int, instance_arn: str | None, contact_id: str | None, raw: str) -> None:
        """A confined record that would leave its domain: dead-lettered there, or held for it
        (contacts.confined)."""
        assert confined is not None
        domain_name = confined[index]
        assert domain_name is not None
        origin = origins[index] if origins else None
        placed = keep_confined(
            tx,
            route,
            domain_name=domain_name,
            raw=raw,
            origin=origin,
            hold=hold_unavailable or hold_left,
        )
        results[index] = Rejection(contact_id, placed.reason)
        if placed.held:
            unrouted[index] = (instance_arn, raw, placed.reason, origin, domain_name, domain_name)
            held.add(index)
        if placed.lettered:
            lettered[index] = domain_name

    for index, (raw, parsed) in enumerate(items):
        origin = origins[index] if origins else None
        try:
            record = parse_contact_record(
                parsed, raw, phone_region=tx.settings.default_phone_region
            )
        except ContactRecordInvalid as exc:
            instance = parsed.get("InstanceARN") if isinstance(parsed, Mapping) else None
            target = (
                route(instance) if isinstance(instance, str) and is_instance_arn(instance) else None
            )
            if (why_not := refused(target.domain_name if target else None)) is not None:
                results[index] = Rejection(exc.contact_id, why_not)
                continue
            if strayed(index, target.domain_name if target else None):
                stay(index, instance if isinstance(instance, str) else None, exc.contact_id, raw)
                continue
            # Dead-lettering needs the domain's key as much as applying does.
            why = route.unavailable(target.domain_name) if hold_unavailable and target else None
            if target is not None and why is not None:
                held_for = target.domain_name
                unrouted[index] = (
                    instance,
                    raw,
                    why,
                    origin,
                    held_for,
                    confined_to(index, held_for),
                )
                results[index] = Rejection(exc.contact_id, why)
                held.add(index)
                continue
            if target is not None:
                _dead_letter(tx, target, raw, exc.reason, "invalid_value", origin)
                lettered[index] = target.domain_name
            else:
                unrouted[index] = (
                    instance if isinstance(instance, str) else None,
                    raw,
                    exc.reason,
                    origin,
                    None,
                    None,
                )
            results[index] = Rejection(exc.contact_id, exc.reason)
            continue
        target = route(record.instance_arn)
        if (why_not := refused(target.domain_name if target else None)) is not None:
            results[index] = Rejection(record.contact_id, why_not)
            continue
        if target is None and strayed(index, None):
            stay(index, record.instance_arn, record.contact_id, raw)
            continue
        if target is None:
            reason = (
                f"The instance {record.instance_arn} is not associated with any domain; the "
                "record is kept and applied once it is (PutIntegration with its ARN)."
            )
            unrouted[index] = (record.instance_arn, raw, reason, origin, None, None)
            results[index] = Rejection(record.contact_id, reason)
            continue
        routed.append((index, record, target))
    back, held_back = applied_where_moved_from(
        tx, route, routed, hold=hold_unavailable or hold_left
    )
    for index, record, target in routed:
        # Going back to a domain its instance left: that one's scope decides.
        if index in back and (why_not := refused(back[index][0])) is not None:
            results[index] = Rejection(record.contact_id, why_not)
        elif index not in held_back and strayed(
            index, back[index][0] if index in back else target.domain_name
        ):
            stay(index, record.instance_arn, record.contact_id, record.raw)
    routed = [one for one in routed if results[one[0]] is None]
    for index, record, target in routed:
        if index not in held_back and index not in back and hold_unavailable:
            # Held for its instance's own domain only once it is known not to go back to a
            # domain the instance left (which took it above, its key working): held for the
            # new domain, it would wait on that domain's key, a request sending it there.
            why = route.unavailable(target.domain_name)
            if why is not None:
                held_back[index] = (why, target.domain_name)
        if index in held_back:
            origin = origins[index] if origins else None
            why, held_for = held_back[index]
            unrouted[index] = (
                record.instance_arn,
                record.raw,
                why,
                origin,
                held_for,
                confined_to(index, held_for),
            )
            results[index] = Rejection(record.contact_id, why)
            held.add(index)
    keep_unrouted_rows(tx, list(unrouted.values()))
    # Of the records sent back to a domain their instance left: the instance's domain now.
    came_back: dict[int, str] = {}
    groups: dict[tuple[str, str], tuple[Integration, list[tuple[int, ContactRecord]]]] = {}
    for index, record, target in routed:
        if index in held_back:
            continue
        if index in back:
            came_back[index] = target.domain_name
            target = _sent_back(target, *back[index])
        key = (target.domain_name, _type_name(target))
        groups.setdefault(key, (target, []))[1].append((index, record))
    # Groups in one order for every batch, so concurrent batches take their locks alike.
    for key in sorted(groups):
        target, members = groups[key]
        done = apply_contact_records(tx, target, [record for _, record in members])
        for (index, record), done_one in zip(members, done, strict=True):
            if isinstance(done_one, _Failed) and done_one.awaits and waited is None:
                origin = origins[index] if origins else None
                waiting[index] = (
                    target.domain_name,
                    record,
                    done_one.awaits,
                    origin,
                    confined_to(index, target.domain_name) is not None,
                )
            elif isinstance(done_one, _Failed):
                origin = origins[index] if origins else None
                reason = done_one.reason
                if done_one.awaits and waited is not None:
                    reason = no_profile_reason(record, waited=waited[index])
                _dead_letter(tx, target, record.raw, reason, done_one.category, origin)
                lettered[index] = target.domain_name
                results[index] = Rejection(record.contact_id, reason)
            else:
                results[index] = done_one
                if done_one.profile_id is not None:
                    applied.setdefault(target.domain_name, set()).add(done_one.digest)
                domain_now = came_back.get(index)
                if (
                    done_one.profile_id is not None
                    and domain_now is not None
                    and route.unavailable(domain_now) is None
                ):
                    # Records waiting for it in the instance's domain now (the move made
                    # them wait there, contacts.moves `follow_instance`) are sent on too, and
                    # go where it is (`applied_where_moved_from`: the contact they continue).
                    # Not while
                    # that domain's key fails: its digests cannot be made, and the record,
                    # applied where its contact is, must not fail with it; the sweep sends
                    # them on later.
                    digest = contact_digest(tx, domain_now, record.contact_id)
                    applied.setdefault(domain_now, set()).add(digest)
    kept_as = keep_waiting(tx, list(waiting.values()))
    for (index, (_, record, _, _, _)), message_id in zip(waiting.items(), kept_as, strict=True):
        results[index] = Rejection(record.contact_id, waiting_reason(record), message_id)
    outcome = BatchOutcome()
    for index, result in enumerate(results):
        if isinstance(result, Applied) and sent_as is None:
            # The hot path, counted straight in.
            _count_applied(outcome, result)
            continue
        # What became of the record, counted alone, then into the batch's outcome.
        one = BatchOutcome()
        if isinstance(result, Rejection):
            one.rejected.append(replace(result, index=index))
            one.waiting = int(index in waiting)
            one.held = int(index in held) + one.waiting
            if index in lettered:
                one.dead_lettered[lettered[index]] = 1
            if index in unrouted:
                # As contacts.kept's keep_unrouted_rows keeps it: only an instance ARN counts.
                instance_arn = unrouted[index][0]
                one.unrouted[
                    instance_arn if instance_arn and is_instance_arn(instance_arn) else None
                ] = 1
        elif result is not None:
            _count_applied(one, result)
        add_outcome(outcome, one)
        if sent_as is not None:
            outcome.sent[sent_as[index]] = one
    return outcome, applied


def _sent_back(target: Integration, domain_name: str, type_name: str) -> Integration:
    """Where a record of a moved instance goes back to (contacts.moves
    `applied_where_moved_from`: `domain_name`, where its contact, or one it continues, is
    stored as `type_name`): the instance's integration as it was in that domain (deleted by
    the move), the record's type the one its contact is stored as there."""
    return replace(
        target,
        domain_name=domain_name,
        object_type_name=type_name,
        object_type_names=None,
        disabled_reason=None,
    )


def _count_applied(outcome: BatchOutcome, applied: Applied) -> None:
    outcome.accepted += 1
    outcome.unchanged += not applied.changed
    outcome.created_profiles += applied.created_profile


def _wake(tx: Tx, applied: Mapping[str, set[bytes]], outcome: BatchOutcome) -> None:
    """Send on, in the caller's transaction, the records kept waiting for the `applied`
    contacts (domain → digests; contacts.waiting), then those waiting for the ones that sends
    on, until none is left (a task waiting for a leg waiting for a call): counted in
    `outcome.woken`. Each is taken out of the store as it is sent (`_resend`), and sent on as
    the sweep sends a waiting record: it never waits again.

    At most `WAKE_CHUNK` records in all, the oldest of each round first: the others are left
    waiting, untouched, and the sweep sends them on (contacts.sweep `send_waiting_on`: their
    contact is applied). Taken out of the store as they are sent, none is sent twice."""
    woken = BatchOutcome()
    budget = WAKE_CHUNK
    while budget > 0 and (message_ids := waiting_for(tx, applied, limit=budget)):
        kept = [k for chunk in in_chunks(message_ids) for k in list_unrouted(tx, message_ids=chunk)]
        budget -= len(message_ids)
        # A domain whose key fails meanwhile holds them, as any kept records.
        more, applied = _resend(tx, kept, hold_unavailable=True, waited_until=tx.now)
        add_outcome(woken, more)
        woken.sent.update(more.sent)
    if woken.accepted or woken.rejected:
        outcome.woken = woken
        claim_woken(outcome)


def claim_woken(outcome: BatchOutcome) -> None:
    """Report as the batch's own the records it kept waiting (its rejected with `kept_as`)
    that it sent on itself (its `woken`, with their `sent`): a later group of its transaction,
    or a later transaction of its request (contacts.http), applied the contact they continue.
    Each is no longer held but what its sending on made it (accepted, or rejected with that
    reason), and no longer among the woken. A record the batch holds twice (kept once) is the
    second time a repeat of what the first became."""
    woken = outcome.woken
    if woken is None or not woken.sent:
        return
    claimed: set[str] = set()
    rejected: list[Rejection] = []
    for rejection in outcome.rejected:
        kept_as = rejection.kept_as
        fate = woken.sent.get(kept_as) if kept_as is not None else None
        if kept_as is None or fate is None:
            rejected.append(rejection)
            continue
        outcome.held -= 1
        outcome.waiting -= 1
        if kept_as in claimed:
            fate = replace(fate, unchanged=fate.accepted, created_profiles=0)
        claimed.add(kept_as)
        # In its place among the rejected, when it is rejected still, and at its index (its
        # sending on placed it among the kept records sent).
        rejected.extend(replace(one, index=rejection.index) for one in fate.rejected)
        add_outcome(outcome, replace(fate, rejected=[]))
    if not claimed:
        return
    outcome.rejected = rejected
    left = BatchOutcome()
    for message_id, fate in woken.sent.items():
        if message_id not in claimed:
            add_outcome(left, fate)
            left.sent[message_id] = fate
    outcome.woken = left if left.sent else None


def _instances_named(items: Sequence[Item]) -> list[str]:
    """The instance ARNs the items name, as the intake routes them (parse_contact_record)."""
    named = (parsed.get("InstanceARN") for _, parsed in items if isinstance(parsed, Mapping))
    return [arn.strip() for arn in named if isinstance(arn, str) and is_instance_arn(arn.strip())]


def _type_name(target: Integration) -> str:
    return target.object_type_name or "CTR"


def _dead_letter(
    tx: Tx, target: Integration, raw: str, reason: str, category: str, origin: str | None
) -> None:
    dead_letter_in(
        tx,
        domain_name=target.domain_name,
        object_type_name=_type_name(target),
        object_json=raw,
        reason=reason,
        category=category,
        origin=origin,
    )


def apply_contact_record(
    tx: Tx, target: Integration, record: ContactRecord, *, partial: bool = False
) -> Applied:
    """Ingest one record (or, `partial`, a contact-start event) into the target's domain.

    Raises IngestRejected when the pipeline rejects it (the caller dead-letters it), and the
    request error when the target's object type is gone."""
    (outcome,) = apply_contact_records(tx, target, [record], partial=partial, isolate=False)
    if isinstance(outcome, _Failed):
        if outcome.error is not None:
            raise outcome.error
        raise IngestRejected(outcome.reason, outcome.category)
    return outcome


def apply_contact_records(
    tx: Tx,
    target: Integration,
    records: Sequence[ContactRecord],
    *,
    partial: bool = False,
    isolate: bool = True,
) -> list[Applied | _Failed]:
    """Ingest records (or, `partial`, contact-start events) into the target's domain as one
    `ingest_batch` per run; the outcome of each, in order.

    Dedupe (spec §3.1) is decided against the `contact_record` rows read in one IN-list query
    and kept current in memory, so a later version of a contact in the same batch replaces an
    earlier one, an older or repeated one changes nothing, and one that cannot be ordered is
    rejected (`_verdict`). A run ends before a record whose contact is already in it: the run is
    applied first, and the record is judged against what the run actually did (a rejected
    version does not count as applied).

    `isolate` runs each run in a savepoint, so a request error part-way fails only the record
    that caused it; without it (a lone contact event) the error propagates to the caller.
    """
    if target.disabled_reason is not None:
        return _disabled(target.disabled_reason, records)
    return _apply_as(
        tx,
        target.domain_name,
        _type_name(target),
        records,
        partial=partial,
        isolate=isolate,
        integration_uri=target.uri,
    )


def _disabled(reason: str, records: Sequence[ContactRecord]) -> list[Applied | _Failed]:
    """DeleteProfileObjectType disabled the integration: the records wait in the DLQ."""
    error = BadRequest(reason)
    return [_Failed(error.message, "invalid_value", error) for _ in records]


def _apply_as(
    tx: Tx,
    domain_name: str,
    type_name: str,
    records: Sequence[ContactRecord],
    *,
    partial: bool = False,
    isolate: bool = True,
    integration_uri: str | None = None,
) -> list[Applied | _Failed]:
    """`apply_contact_records` into `domain_name` as objects of `type_name`; refused when the
    integration `integration_uri` of the domain (the one the records came through) is disabled
    once the type's lock is held."""
    cipher = tx.cipher(domain_name)

    def digest_of(contact_id: str) -> bytes:
        return cipher.digest(CONTACT_KEY, normalize(ContentType.STRING, contact_id))

    digests = [digest_of(r.contact_id) for r in records]
    outcomes: list[Applied | _Failed | None] = [None] * len(records)
    try:
        object_type = get_object_type(tx, domain_name=domain_name, name=type_name)
    except ServiceError as exc:
        # e.g. the integration's object type was deleted: the records wait in the DLQ.
        return [_Failed(exc.message, "invalid_value", exc) for _ in records]
    # A record without a customer endpoint goes only where a link places it (contacts.links):
    # its own `_ctrContactId`, or the contact it continues, whose digests are read and locked
    # with the batch's own (no query of their own).
    linkless = [needs_link(object_type, r) for r in records]
    continued = [
        [digest_of(c) for c in continued_contact_ids(r)] if needs else []
        for r, needs in zip(records, linkless, strict=True)
    ]
    earlier = [d for ds in continued for d in ds]
    _lock(tx, domain_name, [*digests, *earlier])
    # The type's lock, before the integration is read again: a DeleteProfileObjectType it
    # waited for has committed and disabled the integration, read enabled before. The pipeline
    # would still take the records, as the implicit type of a template name (CTR), and define
    # the deleted type again. Held to the commit, it is the one ingest_batch needs: it does not
    # take it again (`_ingest_run`).
    lock_object_type(tx, domain_name=domain_name, name=type_name, shared=True)
    if integration_uri is not None:
        now = find_integration(tx, domain_name=domain_name, uri=integration_uri)
        if now is not None and now.disabled_reason is not None:
            return _disabled(now.disabled_reason, records)
    state = applied_states(tx, domain_name, [*digests, *earlier])
    rows: dict[bytes, dict[str, Any]] = {}
    run: list[int] = []
    in_run: set[bytes] = set()

    def flush() -> None:
        if not run:
            return
        links = _honour_forced_links(
            tx,
            domain_name,
            {digests[i]: state.get(digests[i]) for i in run},
            also={d: state.get(d) for i in run for d in continued[i]},
        )
        for i in run:
            if digests[i] in links.undecided:
                outcomes[i] = _Failed(
                    f"Contact {records[i].contact_id} was linked to "
                    f"{links.undecided[digests[i]]} profiles by AddProfileKey (_ctrContactId) "
                    "since its record was last applied, and which link is the latest cannot "
                    "be told, so the record is applied to none. Remove the wrong links "
                    "(DeleteProfileKey), then retry the record.",
                    "ambiguous",
                )
        joins = []
        for i in run:
            if outcomes[i] is not None or not linkless[i] or digests[i] in links.linked:
                continue
            if digests[i] in links.several:
                # Skipped as ambiguous, the key would leave the pipeline nothing to place it
                # by but a new empty profile.
                outcomes[i] = _Failed(
                    f"Contact {records[i].contact_id} has no customer endpoint, and its "
                    "_ctrContactId is on several profiles, so it is placed on none. Remove the "
                    "wrong links (DeleteProfileKey), then retry the record.",
                    "ambiguous",
                )
                continue
            joined = _continued_profile(tx, domain_name, continued[i], links.linked, state)
            if joined is None:
                # Nothing of the contact it continues is applied (or linked) yet: its record
                # may still come (contacts.links), so the intake may keep this one waiting.
                awaited = [d for d in continued[i] if state.get(d) is None]
                outcomes[i] = _Failed(
                    no_profile_reason(records[i]),
                    "no_profile",
                    awaits=(digests[i], *awaited) if awaited else (),
                )
            else:
                # Linked as its start event would link it: the pipeline then finds it there.
                contact_id = records[i].contact_id
                joins.append((joined, CONTACT_KEY, digests[i], contact_id, type_name))
        if joins:
            insert_key_rows(tx, domain_name=domain_name, rows=joins)
        todo = [i for i in run if outcomes[i] is None]
        done = _ingest_run(tx, object_type, [records[i] for i in todo], isolate)
        # Objects of a type whose keys lack `_ctrContactId`, with their contact (contacts.erasure).
        carried: list[tuple[bytes, bytes]] = []
        for i, result in zip(todo, done, strict=True):
            if isinstance(result, _Failed):
                outcomes[i] = result
                continue
            digest = digests[i]
            before = state.get(digest)
            if CONTACT_KEY not in object_type.keys:
                _link_live_contact(tx, object_type, records[i], result.profile_id, partial)
                carried.append((bytes.fromhex(result.profile_object_unique_key), digest))
            if (
                before is not None
                and before.partial
                and before.profile_id is not None
                and before.profile_id != result.profile_id
            ):
                # The contact left the profile its start event linked it to (an agent's link).
                _drop_event_profile(tx, domain_name, digest, before)
            state[digest] = State(
                records[i].last_update, partial, result.profile_id, type_name, tx.now
            )
            rows[digest] = {
                "domain_name": domain_name,
                "contact_digest": digest,
                "last_update": records[i].last_update,
                "partial": partial,
                "object_type_name": type_name,
                "profile_id": result.profile_id,
                "received_at": tx.now,
            }
            outcomes[i] = Applied(
                domain_name,
                result.profile_id,
                changed=True,
                created_profile=result.created_profile,
                digest=digest,
            )
        carry_contacts(tx, domain_name, type_name, carried)
        if tx.erased_contacts:
            # A record of the run evicted the object of a contact applied earlier in the batch
            # (MaxProfileObjectCount): nothing of that contact is stored, so its delivery is not
            # written at the batch's end (a resend is a first delivery, contacts.erasure), and
            # a later version in the batch is judged as new.
            for erased in [e for e in tx.erased_contacts if e[:2] == (domain_name, type_name)]:
                tx.erased_contacts.discard(erased)
                rows.pop(erased[2], None)
                state.pop(erased[2], None)
        run.clear()
        in_run.clear()

    for i in _continued_first(digests, continued):
        record, digest = records[i], digests[i]
        # A transfer leg after the contact it continues: that one is applied first, so the leg
        # finds the profile it went to.
        if digest in in_run or not in_run.isdisjoint(continued[i]):
            flush()
        seen = state.get(digest)
        if seen is not None:
            verdict = _verdict(tx, domain_name, digest, seen, record, partial)
            if isinstance(verdict, _Failed):
                outcomes[i] = verdict
                continue
            if not verdict:
                outcomes[i] = Applied(
                    domain_name,
                    seen.profile_id,
                    changed=False,
                    created_profile=False,
                    digest=digest,
                )
                continue
        run.append(i)
        in_run.add(digest)
    flush()
    if rows:
        _UPSERT[tx.conn.dialect.name].execute(tx.conn, list(rows.values()))
    return [o for o in outcomes if o is not None]


def _continued_first(digests: Sequence[bytes], continued: Sequence[Sequence[bytes]]) -> list[int]:
    """The order to apply a batch's records in (indexes): each after the records in the batch
    of the contacts it continues, wherever they stand (contacts.links), and the versions of one
    contact in the batch's order; otherwise the batch's order (the earliest record ready goes
    first). A cycle (two records that continue each other) is broken by the earliest record
    left, so every record has its place. A batch in which no record continues another is not
    looked at further.

    Only later records used to be waited for: in [leg → call-1, task → leg, call-1] the leg
    moved after call-1 but the task, which continues the leg, stayed before it."""
    if not any(continued):
        return list(range(len(digests)))
    count = len(digests)
    where: dict[bytes, list[int]] = {}
    for i, digest in enumerate(digests):
        where.setdefault(digest, []).append(i)
    after: list[set[int]] = [set() for _ in range(count)]  # what each record must follow
    for i, ds in enumerate(continued):
        after[i].update(j for d in ds for j in where.get(d, ()) if j != i)
    for versions in where.values():
        for earlier, later in itertools.pairwise(versions):
            after[later].add(earlier)
    followers: list[list[int]] = [[] for _ in range(count)]
    for i, before in enumerate(after):
        for j in before:
            followers[j].append(i)
    pending = [len(before) for before in after]
    ready = [i for i in range(count) if not pending[i]]
    placed = [False] * count
    order: list[int] = []
    while len(order) < count:
        # With none ready, the rest wait on each other: the earliest of them goes first.
        i = heapq.heappop(ready) if ready else placed.index(False)
        if placed[i]:
            continue
        placed[i] = True
        order.append(i)
        for follower in followers[i]:
            pending[follower] -= 1
            if not pending[follower] and not placed[follower]:
                heapq.heappush(ready, follower)
    return order


def _ingest_run(
    tx: Tx, object_type: ObjectType, records: Sequence[ContactRecord], isolate: bool
) -> list[IngestResult | _Failed]:
    """The records through `ingest_batch`, under the type's lock `_apply_as` took. Isolated, a
    request error part-way (rare) undoes the run's savepoint and the records are applied one by
    one, so only the one that caused it fails."""
    batch = [(r.source_to_map, r.raw) for r in records]
    if not isolate:
        return [
            _failed_or(r)
            for r in ingest_batch(
                tx,
                domain_name=object_type.domain_name,
                object_type_name=object_type.name,
                records=batch,
                object_type=object_type,
                type_locked=True,
            )
        ]
    try:
        with tx.conn.begin_nested():
            done = ingest_batch(
                tx,
                domain_name=object_type.domain_name,
                object_type_name=object_type.name,
                records=batch,
                object_type=object_type,
                type_locked=True,
            )
        return [_failed_or(r) for r in done]
    except ServiceError:
        pass
    out: list[IngestResult | _Failed] = []
    for one in batch:
        try:
            with tx.conn.begin_nested():
                (result,) = ingest_batch(
                    tx,
                    domain_name=object_type.domain_name,
                    object_type_name=object_type.name,
                    records=[one],
                    object_type=object_type,
                    type_locked=True,
                )
            out.append(_failed_or(result))
        except ServiceError as exc:
            out.append(_Failed(exc.message, "invalid_value", exc))
    return out


def _failed_or(result: IngestResult | IngestRejected) -> IngestResult | _Failed:
    if isinstance(result, IngestRejected):
        return _Failed(result.reason, result.category)
    return result


def _verdict(
    tx: Tx, domain_name: str, digest: bytes, seen: State, record: ContactRecord, partial: bool
) -> bool | _Failed:
    """Whether `record` replaces what was applied for its contact (True), is a repeat or an older
    version that changes nothing (False), or is a version that cannot be ordered against the
    applied one (rejected: it is dead-lettered with the reason, never answered as accepted).

    Spec §3.1: records come at least once and are deduplicated by ContactId +
    LastUpdateTimestamp. A later LastUpdateTimestamp replaces; an earlier one is an older
    version delivered late. The same LastUpdateTimestamp, or none on the record, cannot order
    it: it is a repeat only when it is the applied record itself. Otherwise the sender meant an
    update that cannot be told from an older version — applying it could put an old version
    back, ignoring it would drop an update while answering "Accepted" — so it is rejected,
    saying that a later LastUpdateTimestamp is needed."""
    if partial:
        # A start event never replaces anything: the contact is already linked.
        return False
    if seen.partial:
        return True
    if record.last_update is not None:
        if seen.last_update is None or record.last_update > seen.last_update:
            return True
        if record.last_update < seen.last_update:
            return False
    same = _same_as_applied(tx, domain_name, digest, seen, record)
    if same or (same is None and record.last_update is not None):
        # A record applied and since expired or deleted (nothing to compare with) that carries
        # the applied LastUpdateTimestamp is that version by the spec's dedupe key.
        return False
    applied = (
        f"with LastUpdateTimestamp {seen.last_update.isoformat().replace('+00:00', 'Z')}"
        if seen.last_update is not None
        else "without a LastUpdateTimestamp"
    )
    if record.last_update is None:
        problem = (
            "this one has no LastUpdateTimestamp and "
            + ("differs from it" if same is False else "that record is no longer stored")
            + ", so it cannot be told whether it is a later version"
        )
    else:
        problem = "this one has the same LastUpdateTimestamp but differs from it"
    return _Failed(
        f"A record of contact {record.contact_id} was already applied {applied}; {problem}. "
        "Send an update with a later LastUpdateTimestamp to replace it.",
        "invalid_value",
    )


def _same_as_applied(
    tx: Tx, domain_name: str, digest: bytes, seen: State, record: ContactRecord
) -> bool | None:
    """Whether `record` is the record applied for its contact (the same JSON, however it is
    written); None when that record is no longer stored (expired or deleted, or its object type
    gone). The stored object is found by the UNIQUE key of the type it was stored as: the
    templates' is `_ctrContactId` (the contact's digest), a type of one's own may name another
    (`_unique_digest`)."""
    object_type = find_object_type(tx, domain_name=domain_name, name=seen.object_type_name)
    if object_type is None:
        return None
    stored = find_object(
        tx,
        domain_name=domain_name,
        object_type_name=seen.object_type_name,
        unique_digest=_unique_digest(tx, object_type, record) or digest,
    )
    if stored is None:
        return None
    if stored.object_json == record.raw:
        return True
    try:
        return bool(load_json(stored.object_json, "The applied record") == record.source)
    except JsonTextError:
        return False


def _unique_digest(tx: Tx, object_type: ObjectType, record: ContactRecord) -> bytes | None:
    """The digest of the record's UNIQUE key as `object_type` maps it (as the pipeline stores
    it); None when it is the contact's `_ctrContactId` digest (the contact-record templates':
    nothing to map, on the path of every repeated delivery) or the record does not map or lacks
    the key (the pipeline rejects it)."""
    if object_type.template_id is not None and object_type.template_id.startswith("CTR"):
        return None
    try:
        mapped = map_object(
            object_type, record.source_to_map, phone_region=tx.settings.default_phone_region
        )
    except MappingError:
        return None
    unique = mapped.unique_key
    if unique is None:
        return None
    return tx.cipher(object_type.domain_name).digest(unique.name, unique.normalised)


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
    "sqlite": ManyWriter(_upsert(sqlite_insert(contact_record))),
    "postgresql": ManyWriter(_upsert(pg_insert(contact_record))),
}
# Per batch of records, on the driver (store.prepared, store.many): through SQLAlchemy's
# execution path these three (_UPSERT, _LINKED and contacts.routing's _SEEN) were a tenth of
# the contact-record loader's time.
_LINKED = PreparedRead(
    select(profile_key.c.digest, profile_key.c.profile_id, profile_key.c.origin)
    .join(
        profile,
        and_(
            profile.c.domain_name == profile_key.c.domain_name,
            profile.c.profile_id == profile_key.c.profile_id,
        ),
    )
    .where(
        profile_key.c.domain_name == bindparam("d"),
        profile_key.c.key_name == CONTACT_KEY,
        profile_key.c.digest.in_(bindparam("gs", expanding=True)),
        profile.c.merged_into.is_(None),
    )
)
_UNLINK = delete(profile_key).where(
    profile_key.c.domain_name == bindparam("d"),
    profile_key.c.key_name == CONTACT_KEY,
    profile_key.c.digest == bindparam("g"),
    profile_key.c.profile_id != bindparam("keep"),
)


@dataclass(frozen=True)
class _Links:
    """What `_honour_forced_links` found: the one live profile each contact's `_ctrContactId`
    finds now (`linked`), the contacts whose latest link cannot be told, with how many
    profiles they are linked to (`undecided`), and those whose key is on several profiles
    none of which it chose (`several`: the pipeline skips such a key as ambiguous)."""

    linked: dict[bytes, str]
    undecided: dict[bytes, int]
    several: set[bytes]


def _continued_profile(
    tx: Tx,
    domain_name: str,
    continued: Sequence[bytes],
    linked: Mapping[bytes, str],
    state: Mapping[bytes, State],
) -> str | None:
    """The live profile of the first of the `continued` contacts that is on one: the profile
    its `_ctrContactId` finds, or else the one its record was applied to (merges followed)."""
    for digest in continued:
        if digest in linked:
            return linked[digest]
        seen = state.get(digest)
        if seen is not None and seen.profile_id is not None:
            live = resolve_profile_id(tx, domain_name=domain_name, profile_id=seen.profile_id)
            if live is not None:
                return live
    return None


def _honour_forced_links(
    tx: Tx,
    domain_name: str,
    contacts: Mapping[bytes, State | None],
    also: Mapping[bytes, State | None] | None = None,
) -> _Links:
    """AddProfileKey(_ctrContactId) forces the profile (spec §3.2), and the agent's latest
    link wins. When the key is on several profiles (a start event's or an earlier record's
    profile, and the agent's link) it would be skipped as ambiguous and the record would go
    by the phone number or email — perhaps back to a profile the agent moved the contact away
    from — so it is removed from all but the one the agent chose, which is found thus:

    `profile_key` rows carry no time, but what the contact's last application left is known:
    after it, the key is on one profile only (the one `contact_record` names: this function
    leaves the key on the kept profile alone, and the pipeline finds that one). So an explicit
    link on any other profile was made since, and is newer: with one such, it wins (a first
    re-link, and a second one after a record followed the first). With none, an explicit link
    on the applied profile itself keeps it. AddProfileKey on two profiles leaves one explicit
    link, the latest: it marks the earlier one (contacts.links.mark_earlier_links). Several
    explicit links made since are left only by links made before it did so; their order
    cannot be told: the digest is returned with how many, and the caller rejects the record as
    ambiguous rather than guess or fall back on the phone number. `contacts` maps each digest
    to its applied state (None: never applied).

    `also`: contacts (digest -> applied state) whose profile is wanted too (the contacts that
    records without an endpoint continue), judged alike but with no link removed: their own
    records decide that.
    """
    also = also or {}
    judged = {**also, **contacts}
    wanted = sorted(judged)
    linked: dict[bytes, list[Any]] = {}
    for chunk in in_chunks(wanted):
        for row in _LINKED.rows(tx.conn, {"d": domain_name, "gs": chunk}):
            linked.setdefault(bytes(row.digest), []).append(row)
    unlink = []
    undecided: dict[bytes, int] = {}
    found: dict[bytes, str] = {}
    several: set[bytes] = set()
    for digest, rows in linked.items():
        profiles = {r.profile_id for r in rows}
        if len(profiles) < 2:
            found[digest] = profiles.pop()
            continue
        explicit = {r.profile_id for r in rows if r.origin == EXPLICIT_ORIGIN}
        seen = judged.get(digest)
        applied = (
            resolve_profile_id(tx, domain_name=domain_name, profile_id=seen.profile_id)
            if seen is not None and seen.profile_id is not None
            else None
        )
        newer = explicit - {applied}
        if len(newer) > 1:
            if digest in contacts:
                undecided[digest] = len(newer)
            continue
        keep = newer.pop() if newer else applied if applied in explicit else None
        if keep is None:
            several.add(digest)
            continue
        found[digest] = keep
        if digest in contacts:
            unlink.append({"d": domain_name, "g": digest, "keep": keep})
    if unlink:
        tx.conn.execute(_UNLINK, unlink)
    return _Links(found, undecided, several)


def _link_live_contact(
    tx: Tx, object_type: ObjectType, record: ContactRecord, profile_id: str, partial: bool
) -> None:
    """For a type of one's own without a `_ctrContactId` key: a live contact is still found by
    it (what a start event promises, the agent pages search it), so its start event indexes it
    on the profile, under the type (DeleteProfileObjectType removes it). The full record takes
    it off again, wherever it lands: after the contact, the type's own keys say what finds it,
    as in Customer Profiles, and a stale link could name a profile the record is not on."""
    if partial:
        index_profile_keys(
            tx,
            domain_name=object_type.domain_name,
            profile_id=profile_id,
            keys=[(CONTACT_KEY, record.contact_id, record.contact_id)],
            origin=object_type.name,
        )
        return
    tx.conn.execute(
        delete(profile_key).where(
            profile_key.c.domain_name == object_type.domain_name,
            profile_key.c.key_name == CONTACT_KEY,
            profile_key.c.digest == contact_digest(tx, object_type.domain_name, record.contact_id),
            profile_key.c.origin == object_type.name,
        )
    )


def _drop_event_profile(tx: Tx, domain_name: str, digest: bytes, seen: State) -> None:
    """Delete the profile a contact-start event created, now that the contact's record went to
    another profile (the agent linked it there), when it holds nothing but what the event put
    there. Left, it would keep the caller's number (its PhoneNumber, or EmailAddress, and their
    keys): with CTR-NoInferred every later contact from that number would match it and the
    agent's profile and be rejected as ambiguous; with CTR it would take them all.

    Deleted only when all of these hold, and otherwise left whole (a profile with anything
    else on it is a customer's; removing the number from it could be wrong, and it is the
    agent's to merge or delete):
    * it was created by the event: its creation time is the event's application time (one
      transaction applies one event), and it was never written since (updated = created: no
      UpdateProfile, no field another record brought);
    * it is live (not merged away) and no profile was merged into it;
    * it holds no object of any type (the event's record has just moved off it) and no other
      contact's delivery names it;
    * its keys are only those its own fields give and those the event's object type indexed,
      no contact id among them: no AddProfileKey, no other type's record, no other contact.
    It is deleted as DeleteProfile deletes (its keys, its deliveries, every hook)."""
    profile_id = seen.profile_id
    if profile_id is None or seen.received_at is None:
        return
    # The profile's row locked (PostgreSQL) before anything is checked: every writer that puts
    # something on a profile (UpdateProfile, AddProfileKey, the pipeline, a merge) locks it
    # first, so nothing can land on it between the checks below and the delete.
    row = tx.conn.execute(
        select(profile.c.created_at, profile.c.updated_at, profile.c.merged_into)
        .where(profile.c.domain_name == domain_name, profile.c.profile_id == profile_id)
        .with_for_update()
    ).first()
    if (
        row is None
        or row.merged_into is not None
        or row.created_at != seen.received_at
        or row.updated_at != row.created_at
    ):
        return
    absorbed = select(profile.c.profile_id).where(
        profile.c.domain_name == domain_name, profile.c.merged_into == profile_id
    )
    holds = select(profile_object.c.profile_id).where(
        profile_object.c.domain_name == domain_name, profile_object.c.profile_id == profile_id
    )
    # The contact's own delivery row names it until the batch writes the new one.
    named = select(contact_record.c.profile_id).where(
        contact_record.c.domain_name == domain_name,
        contact_record.c.profile_id == profile_id,
        contact_record.c.contact_digest != digest,
    )
    keyed = select(profile_key.c.origin).where(
        profile_key.c.domain_name == domain_name,
        profile_key.c.profile_id == profile_id,
        or_(
            profile_key.c.origin.not_in([DERIVED_ORIGIN, seen.object_type_name]),
            profile_key.c.key_name == CONTACT_KEY,
        ),
    )
    for query in (absorbed, holds, named, keyed):
        if tx.conn.execute(query.limit(1)).first() is not None:
            return
    delete_profile(tx, domain_name=domain_name, profile_id=profile_id)


def _lock(tx: Tx, domain_name: str, digests: Sequence[bytes]) -> None:
    """Serialise deliveries of one contact, and links made of it (contacts.links)."""
    lock_contacts(tx, domain_name, digests)


def _forget_deliveries(tx: Tx, domain_name: str, object_type_name: str) -> None:
    """A deleted object type's contact records are gone: forget which versions were applied,
    or a contact delivered again (a stream replayed after the type is set up again) would be
    taken for a repeat and answered Accepted while nothing is stored."""
    tx.conn.execute(
        delete(contact_record).where(
            contact_record.c.domain_name == domain_name,
            contact_record.c.object_type_name == object_type_name,
        )
    )


if _forget_deliveries not in on_object_type_deleted:
    on_object_type_deleted.append(_forget_deliveries)


def _forget_deleted_profiles(tx: Tx, domain_name: str, profile_ids: list[str]) -> None:
    """DeleteProfile's part here (profiles.service.on_profiles_deleted): the deliveries applied
    to the deleted profiles are forgotten, their rows deleted rather than unlinked.

    A row kept with its profile cleared would still say which version was applied: that
    version delivered again (at least once, spec §3.1) would be answered as a repeat with its
    record gone and no profile, and a contact-start event of the contact again would link it
    to no profile (a start event never replaces an applied one). Deleted, a delivery after the
    erasure goes through the pipeline as a first one, to the profile the template's rules find
    or create now; and the row (the contact's digest, when it was updated) is itself a trace of
    the erased customer. The same as a deleted object type's deliveries (`_forget_deliveries`)."""
    for chunk in in_chunks(profile_ids):
        tx.conn.execute(
            delete(contact_record).where(
                contact_record.c.domain_name == domain_name,
                contact_record.c.profile_id.in_(chunk),
            )
        )


if _forget_deleted_profiles not in on_profiles_deleted:
    on_profiles_deleted.append(_forget_deleted_profiles)


def retry_contact_record(
    tx: Tx, *, domain_name: str, object_type_name: str, parsed: Mapping[str, Any], raw: str
) -> Applied | IngestRejected:
    """Apply a dead-lettered contact record again (`openprofiles dlq retry`), in the domain and
    as the object type it was dead-lettered in, by the rules of a delivery: it is checked again
    (an invalid record is rejected with its reason), a version of its contact older than or
    the same as the one applied changes nothing (`changed` False, spec §3.1: dedupe by ContactId
    + LastUpdateTimestamp), and one that cannot be ordered against it is rejected. Nothing is
    dead-lettered here: the caller keeps the letter. `parsed` is `raw` as the caller parsed it,
    strictly (json_text.load_json): it is not parsed again."""
    try:
        record = parse_contact_record(parsed, raw, phone_region=tx.settings.default_phone_region)
    except ContactRecordInvalid as exc:
        return IngestRejected(exc.reason, "invalid_value")
    target = find_instance_integration(tx, instance_arn=record.instance_arn)
    if target is not None and target.domain_name != domain_name:
        target = None
    if target is not None and target.disabled_reason:
        # Still disabled (DeleteProfileObjectType): a retry would bring in, and define again
        # as an implicit type, what the deletion stopped. The letter waits for the setup.
        return IngestRejected(target.disabled_reason, "invalid_value")
    uri = target.uri if target is not None else None
    (outcome,) = _apply_as(tx, domain_name, object_type_name, [record], integration_uri=uri)
    if isinstance(outcome, _Failed):
        return IngestRejected(outcome.reason, outcome.category)
    _wake_for(tx, domain_name, record, outcome)
    return outcome


def _wake_for(tx: Tx, domain_name: str, record: ContactRecord, applied: Applied) -> None:
    """A contact applied alone (a start event, a retried dead letter) sends on the records
    waiting for it, as a batch does (`_wake`)."""
    if applied.profile_id is not None:
        digest = contact_digest(tx, domain_name, record.contact_id)
        _wake(tx, {domain_name: {digest}}, BatchOutcome())


def _wake_linked(
    tx: Tx, domain_name: str, profile_id: str, key_name: str, digests: list[bytes]
) -> None:
    """An agent's (or a flow's) AddProfileKey(`_ctrContactId`) sends on, in its transaction,
    the records waiting for the contacts it linked, as a batch that applies a contact does
    (`_wake`): the agent sees the transfer leg or task on the profile at once, not a sweep
    later. Registered after contacts.links' `mark_earlier_links` (imported above), so the
    link they find is already the latest. AddProfileKey took the linked contact's lock before
    the profile's (contacts.links.lock_linked_contacts); the wake may take other contacts'
    locks, and their instances', after the profile's, against the house order (store.advisory):
    it does only when records wait for the contact (rare), and a deadlock with a batch of that
    contact is run again (store.conflicts)."""
    if key_name == CONTACT_KEY:
        _wake(tx, {domain_name: set(digests)}, BatchOutcome())


if _wake_linked not in on_keys_added:
    on_keys_added.append(_wake_linked)


# ---------------------------------------------------------------------------- live contacts

EVENT_REQUIRED = ("ContactId", "InstanceARN", "Channel", "InitiationTimestamp")


def apply_contact_event(tx: Tx, event: Any, *, scope: DomainScope | None = None) -> ContactLink:
    """Link a contact that has just started to its profile (found or created by the
    integration's template rules) by indexing `_ctrContactId` on it at once. `scope`: the
    sender's credential is limited to these domains (auth.scope): AccessDenied for an instance
    associated with another.

    BadRequest for an invalid event or an instance associated with no domain; with
    CTR-AutoAssociateOnly and no matching profile, or for a contact without a customer endpoint
    that nothing links (contacts.links), the contact stays unlinked (reason given); so it does
    when several profiles share the caller's endpoint, which is kept for the screen pop
    (contacts.shared_endpoint).
    """
    if not isinstance(event, Mapping):
        raise BadRequest("The contact event must be a JSON object.")
    missing = [name for name in EVENT_REQUIRED if not event.get(name)]
    if missing:
        raise BadRequest(f"The contact event lacks {', '.join(missing)}.")
    raw = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    try:
        record = parse_contact_record(event, raw, phone_region=tx.settings.default_phone_region)
    except ContactRecordInvalid as exc:
        raise BadRequest(exc.reason) from None
    # The screen pop's search attributes are optional: a flow that sets profileSearchKey and
    # fills profileSearchValue from an attribute empty for this caller must not cost the contact
    # its live link. The contact is linked as without them, and the caller told what was
    # ignored (the screen pop then searches as usual: contact_screen_pop_search).
    try:
        screen_pop_search(event)
        ignored = None
    except ContactRecordInvalid as exc:
        ignored = f"{exc.reason} They were ignored: the screen pop searches as without them."
    # Under the instance's association lock, as a batch routes (contacts.routing.Router): a
    # DeleteDomain under way has committed, or waits for the link.
    route = Router(tx, keeping=True)
    target = route(record.instance_arn)
    # A sender limited to some domains links contacts of those only (auth.scope), and is not
    # told whether the instance has a domain: first, and alike for none.
    refuse_event_out_of_scope(scope, target.domain_name if target else None)
    if target is None:
        raise BadRequest(f"The instance {record.instance_arn} is not associated with any domain.")
    # Routed as its record would be (`_intake`): a moved instance's contact applied in a domain
    # it left (its event sent again), or a transfer leg of a contact applied there, goes back
    # there (contacts.moves), not to a second profile in the instance's domain now. A domain
    # left whose KMS does not answer fails the event (InternalServerException, retried): where
    # its contact is cannot be told. `domain_now`: the instance's domain, when it went back.
    back, _ = applied_where_moved_from(tx, route, [(0, record, target)], hold=False)
    domain_now = None
    if 0 in back:
        domain_now = target.domain_name
        target = _sent_back(target, *back[0])
        # Going back to a domain its instance left: that one's scope decides too, as for a
        # record.
        refuse_event_out_of_scope(scope, target.domain_name)
    try:
        applied = apply_contact_record(tx, target, record, partial=True)
    except IngestRejected as exc:
        if exc.category == "ambiguous":
            # Still linked to none (spec §3.2), but the agent's screen pop shows the profiles
            # that share the caller's number or address (contacts.shared_endpoint).
            keep_shared_endpoint(tx, target.domain_name, record)
        said = exc.reason if ignored is None else f"{exc.reason} {ignored}"
        return ContactLink(record.contact_id, target.domain_name, None, False, said)
    _wake_for(tx, target.domain_name, record, applied)
    if domain_now is not None and route.unavailable(domain_now) is None:
        # Records waiting for it in the instance's domain now go where it is, as a batch's
        # sent back wake them (`_intake`).
        _wake_for(tx, domain_now, record, applied)
    return ContactLink(
        record.contact_id,
        target.domain_name,
        applied.profile_id,
        applied.created_profile,
        ignored,
    )


def contact_screen_pop_search(
    tx: Tx, *, domain_name: str, contact_id: str
) -> tuple[str, str] | None:
    """What the contact's attributes ask the agent's screen pop to search the domain by
    (records.screen_pop_search), read from the contact's start event or record as stored —
    sealed, as every object — or None. Found by the contact's `_ctrContactId` digest, the
    UNIQUE key of the contact-record templates' types; a type of one's own (another UNIQUE
    key) or a contact never stored (CTR-AutoAssociateOnly without a match) gives None, and
    the screen pop searches as it would without the attributes."""
    digest = contact_digest(tx, domain_name, contact_id)
    seen = applied_states(tx, domain_name, [digest]).get(digest)
    if seen is None:
        return None
    stored = find_object(
        tx, domain_name=domain_name, object_type_name=seen.object_type_name, unique_digest=digest
    )
    if stored is None:
        return None
    try:
        source = json.loads(stored.object_json)
        return screen_pop_search(source) if isinstance(source, Mapping) else None
    except (ValueError, ContactRecordInvalid):
        # A full record whose attributes ask for no usable search: the usual screen pop.
        return None


def connect_instance(
    tx: Tx,
    *,
    domain_name: str,
    instance_arn: str,
    move: bool,
    object_type_name: str | None = None,
    object_type_names: Mapping[str, str] | None = None,
    settings: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    refuse_association: Exception | None = None,
) -> tuple[InstanceAssociation, BatchOutcome]:
    """Associate an instance with a domain and send it the contact records that were kept
    while the instance had no domain (every way of associating must do both: PutIntegration
    with an instance ARN, `openprofiles instances associate`, the admin pages). The members are
    `associate_instance`'s: not given, those of an existing association are kept.

    Only the `REPLAY_CHUNK` oldest kept records are replayed in the caller's transaction: on
    PostgreSQL each record takes advisory locks to the commit, and thousands in one
    transaction would exhaust the server's lock table ("out of shared memory"), rolling the
    association back for good. After the commit the caller sends the rest on
    (contacts.sweep `send_kept_on(services, instance_arns=[instance_arn])`), a transaction per
    chunk; if the process stops before, the server's sweep (`kept_records_task`) or
    `openprofiles instances send-kept` finishes them.

    `refuse_association`: raised, nothing changed, unless the instance is associated with the
    domain already (a key limited to some domains: auth.scope)."""
    association = associate_instance(
        tx,
        domain_name=domain_name,
        instance_arn=instance_arn,
        move=move,
        object_type_name=object_type_name,
        object_type_names=object_type_names,
        settings=settings,
        tags=tags,
        refuse_association=refuse_association,
    )
    note_move(tx, instance_arn, from_domain=association.previous_domain, to_domain=domain_name)
    stayed: list[UnroutedRecord] = []
    if association.previous_domain is not None:
        stayed = follow_instance(
            tx, instance_arn, from_domain=association.previous_domain, to_domain=domain_name
        )
    replayed = replay_unrouted(tx, instance_arn=instance_arn, limit=REPLAY_CHUNK)
    if stayed:
        # Confined to the domain left (contacts.confined): dead-lettered there now.
        add_outcome(replayed, replay(tx, stayed))
    return association, replayed


def replay_unrouted(tx: Tx, *, instance_arn: str, limit: int | None = None) -> BatchOutcome:
    """Send the instance's kept records (the `limit` oldest, when given) through again (after
    it was associated)."""
    return replay(tx, list_unrouted(tx, instance_arn=instance_arn, limit=limit, waiting=False))


def add_outcome(total: BatchOutcome, more: BatchOutcome) -> None:
    """Count `more` into `total` (one run of contacts.sweep `send_kept_on`, chunk after chunk);
    not its `sent` (see BatchOutcome)."""
    total.accepted += more.accepted
    total.rejected.extend(more.rejected)
    total.unchanged += more.unchanged
    total.created_profiles += more.created_profiles
    total.held += more.held
    total.waiting += more.waiting
    for domain_name, n in more.dead_lettered.items():
        total.dead_lettered[domain_name] = total.dead_lettered.get(domain_name, 0) + n
    for instance_arn, n in more.unrouted.items():
        total.unrouted[instance_arn] = total.unrouted.get(instance_arn, 0) + n
    if more.woken is not None:
        # Kept records too, sent on in the same run.
        add_outcome(total, more.woken)


def replay(
    tx: Tx,
    kept: Sequence[UnroutedRecord],
    *,
    hold_unavailable: bool = False,
    waited_until: datetime | None = None,
) -> BatchOutcome:
    """Take kept records out of the store and through the intake again (`ingest_contact_items`,
    the records waiting for the contacts they apply woken): those this transaction took out.
    With `waited_until`: records that waited from when they were kept until then (the time a
    sweep judges them by), which never wait again."""
    outcome, applied = _resend(
        tx, kept, hold_unavailable=hold_unavailable, waited_until=waited_until
    )
    _wake(tx, applied, outcome)
    return outcome


def _resend(
    tx: Tx, kept: Sequence[UnroutedRecord], *, hold_unavailable: bool, waited_until: datetime | None
) -> tuple[BatchOutcome, dict[str, set[bytes]]]:
    """`replay` without the wake. Two replays of one record at once (the connector's
    `replay_held`, contacts.sweep, and an association's) both read it; the second's delete
    waits for the first and then finds it gone, and it is not sent on twice (two dead letters
    of one record)."""
    taken: set[str] = set()
    for chunk in in_chunks([k.message_id for k in kept]):
        taken.update(
            tx.conn.execute(
                delete(unrouted_contact_record)
                .where(unrouted_contact_record.c.message_id.in_(chunk))
                .returning(unrouted_contact_record.c.message_id)
            ).scalars()
        )
    kept = [k for k in kept if k.message_id in taken]
    # Read as the intake reads a record (strict JSON, depth, lone surrogates).
    items: list[Item] = [read_record(k.object_json) for k in kept]
    return _intake(
        tx,
        items,
        hold_unavailable,
        [k.origin for k in kept],
        None if waited_until is None else [waited_until - k.created_at for k in kept],
        hold_left=True,
        sent_as=[k.message_id for k in kept],
        confined=[k.confined_to for k in kept],
    )
