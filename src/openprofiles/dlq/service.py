"""The local dead-letter store: put, list, get, retry, purge.

Every rejected record lands here (whether or not the domain also has an SQS queue), sealed:
the object and the reason are personal data. `retry` runs a message through the ingestion
pipeline again — after the object type or the data was fixed — and removes what now succeeds;
a contact record goes through the contact-record intake, so it is checked again and one older
than the version of its contact already applied is removed as superseded, changing nothing. So
is any other record whose object (its type's, with its UNIQUE key value) was written after the
letter's last attempt: a file fixed and loaded again put a newer version there, which a retry
must not overwrite with the old one. A message that holds no record a retry can ingest
(`not_retryable`: a flow item that could not be read as records, say) is not tried: it keeps
its reason, and the outcome says why and what to do instead. A record whose reason names
where it came from first (its `origin`: "Flow crm" in "Flow crm: why") keeps that name first
in the reason of a retry that fails again.

A record dead-lettered while its domain has no queue is marked `NO_QUEUE` and stays here only.
One stored by a version that did not record whether it was sent (before `NO_QUEUE` existed, no
sink error meant either) is marked `NOT_RECORDED` by migration 0014: shown so, never sent.
A record bound for the domain's SQS queue is written with `SQS_PENDING` as its sink error and
sent after its transaction commits (dlq.sinks); `settle_sends` then clears the mark, or replaces
it with why the send failed. The send after the commit first claims the record (`claim_pending`:
`SQS_SENDING`, with when it began), as dlq.resend does (`due_sends`, `claim_sends`:
`SQS_RESENDING`), so that the two never send one record both; a record still marked was never
delivered to SQS, and dlq.resend sends it again. One whose message reached SQS with a note in
place of an object SQS could not take is marked `SENT_WITHOUT_OBJECT`: delivered, it is never
sent again.

Only those fixed marks are stored in clear (`sink_error`), `SQS_FAILED` standing for any failure:
the text saying why a send failed, or why the object went without, is sealed with the domain's
key beside it (`sink_sealed`). That text names the queue and quotes the queue's or the network's
own error message, which this server does not control and which may echo what was sent, such as
the reason quoting a record's value. A `DeadLetter`'s `sink_error` is the whole text again. What
needs no key is recorded even when the domain's key cannot be used (`settle_unsealed`): a
delivered record is marked so, never left to be sent twice.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import bindparam, case, delete, func, insert, select, tuple_, update

from openprofiles.context import Services, Tx
from openprofiles.crypto.domain_keys import DomainCipher
from openprofiles.dlq.models import DeadLetter, RetryOutcome
from openprofiles.domains.service import register_domain_table
from openprofiles.errors import NotFound, ServiceError
from openprofiles.held_values import HeldValue, ids_holding
from openprofiles.object_types.models import ObjectType
from openprofiles.store.advisory import take_locks
from openprofiles.store.in_lists import in_chunks
from openprofiles.store.schema import dlq_message, domain

DLQ_TABLE = "dlq_message"
# What a sealed sink error is bound to (with the domain and message id): not DLQ_TABLE, so it
# cannot stand in for the record's own sealed payload.
SINK_TABLE = "dlq_message_sink"

register_domain_table(dlq_message)

# The sink error of a record whose SQS send has not happened yet (shown as "Not sent: ...").
SQS_PENDING = (
    "the send to SQS has not happened yet (it follows the commit of the record's transaction)"
)
# The stored sink error of a record whose send failed; why is sealed beside it.
SQS_FAILED = "the send to SQS failed"
# The sink error of a record dead-lettered while its domain had no queue: kept here only, and
# not sent to a queue the domain gets later (it was never bound for one; dlq.resend skips it).
NO_QUEUE = "the domain had no dead-letter queue when the record was dead-lettered"
# The sink error of a record stored by a version that left it empty both when it was sent and
# when its domain had no queue (migration 0014 marks them, and keeps its own copy of this text):
# whether it reached a queue is not known, so it is not shown as sent, and dlq.resend never
# sends it (it never did: it may be in the queue already, or never have been bound for one).
NOT_RECORDED = (
    "whether the record reached SQS was not recorded (it was dead-lettered by a version from "
    "before 2026-11-29 00:38 UTC)"
)
# The sink error of a record whose message reached SQS with a note in place of its object, which
# SQS could not take (dlq.sinks), followed by why: delivered, so never sent again.
SENT_WITHOUT_OBJECT = "sent to SQS with a note in place of its object: "
# What follows SENT_WITHOUT_OBJECT when why could not be sealed (the domain's key was unusable
# when the send was recorded): stored as the mark alone.
WHY_NOT_RECORDED = "why was not recorded (the domain's key could not be used then)"
# The sink error of a record the send after its commit is sending, followed by when it began
# (ISO 8601): a claim, as SQS_RESENDING is, so that dlq.resend leaves the record alone until the
# claim expires (the send after a commit is over long before: dlq.sinks.SEND_AFTER_COMMIT_SECONDS).
SQS_SENDING = "the send to SQS after the commit is under way, started at "
# The sink error of a record dlq.resend is sending again, followed by when it began (ISO 8601):
# unique to that run, so its outcome only lands on records it still holds.
SQS_RESENDING = "a resend to SQS is under way, started at "
# The origin of a flow's record as its reason named it before the origin was kept on its own:
# "Flow NAME: " first, NAME as the model's FlowName pattern allows.
_LEGACY_FLOW_ORIGIN = re.compile(r"(Flow [a-zA-Z0-9][\w!@#.-]+): ")


def new_message_id() -> str:
    """32 hex digits that sort in creation order (the time first), so records dead-lettered in
    one transaction list in the order they were rejected."""
    return f"{time.time_ns():016x}{secrets.token_hex(8)}"


def put(
    tx: Tx,
    *,
    domain_name: str,
    object_type_name: str,
    object_json: str,
    reason: str,
    category: str,
    sink_error: str | None = None,
    message_id: str | None = None,
    not_retryable: str | None = None,
    origin: str | None = None,
) -> DeadLetter:
    """Store a dead letter; `reason` is the whole reason, its `origin` (when given) first. A
    letter with an origin carries its `repeat_digest`: a second one of the same record from the
    same place is refused by the store's unique index (dead_letter_in counts an attempt on the
    first instead, `attempt_again`)."""
    cipher = tx.cipher(domain_name)
    message_id = message_id or new_message_id()
    repeat = (
        None if origin is None else repeat_digest(cipher, object_type_name, origin, object_json)
    )
    tx.conn.execute(
        insert(dlq_message).values(
            domain_name=domain_name,
            message_id=message_id,
            object_type_name=object_type_name,
            sealed=cipher.seal_record(
                DLQ_TABLE, message_id, _payload(object_json, reason, not_retryable, origin)
            ),
            reason_category=category,
            attempts=1,
            **_stored_sink(cipher, message_id, sink_error),
            created_at=tx.now,
            last_attempt_at=tx.now,
            repeat_digest=repeat,
        )
    )
    return get(tx, domain_name=domain_name, message_id=message_id)


# The blind-index key name of dead letters' repeat digests (never a profile key's name).
REPEAT_KEY_NAME = "@deadLetterRepeat"
# The advisory lock (store.advisory) of a record's repeat digest, taken by `attempt_again`.
REPEAT_LOCK = "dlq-repeat"


def repeat_digest(
    cipher: DomainCipher, object_type_name: str, origin: str, object_json: str
) -> bytes:
    """Keyed digest of a record from a place ("File a.jsonl, line 3"): reading the same file or
    flow item again gives the same digest; nothing of the record can be read from it."""
    return cipher.digest(REPEAT_KEY_NAME, "\x00".join((object_type_name, origin, object_json)))


def attempt_again(
    tx: Tx,
    *,
    domain_name: str,
    object_type_name: str,
    object_json: str,
    reason: str,
    category: str,
    not_retryable: str | None,
    origin: str,
) -> DeadLetter | None:
    """When the record from `origin` already has a letter (the file or flow item was read
    again), count another attempt on it, with this reason, and return it; None otherwise. Its
    SQS message is not sent again: the queue has it."""
    cipher = tx.cipher(domain_name)
    digest = repeat_digest(cipher, object_type_name, origin, object_json)
    # Two writers dead-lettering the same record at once (the same file or flow item read by
    # two runs) both found no letter under READ COMMITTED and both inserted one: the second
    # met the unique index (ux_dlq_message_repeat), and store.conflicts ran its whole
    # transaction again (a batch's records ingested anew) only to count the attempt then. With
    # the lock held from before the look-up, the second waits for the first to end and finds
    # its letter. Not an INSERT .. ON CONFLICT: a letter's sealed payload is bound to its own
    # message id, which a conflicting insert does not know, and only a new letter is sent to
    # SQS. The lock waits where the index or the letter's row made the writers wait already
    # (the same point of the transaction), so it adds no new order between locks; a no-op on
    # SQLite, whose one writer serialises them.
    take_locks(tx, [(REPEAT_LOCK, domain_name, digest)])
    message_id = tx.conn.execute(
        select(dlq_message.c.message_id).where(
            dlq_message.c.domain_name == domain_name, dlq_message.c.repeat_digest == digest
        )
    ).scalar()
    if message_id is None:
        return None
    if not _record_attempt(
        tx,
        domain_name,
        message_id,
        category,
        _payload(object_json, origin_reason(origin, reason), not_retryable, origin),
    ):
        # Deleted since it was found (purged, retried away, expired): a new letter then.
        return None
    return get(tx, domain_name=domain_name, message_id=message_id)


def _record_attempt(
    tx: Tx, domain_name: str, message_id: str, category: str, payload: dict[str, str]
) -> bool:
    """Another failed attempt on a stored letter: its count, when, and the new reason; False
    when the letter is no longer stored."""
    result = tx.conn.execute(
        update(dlq_message)
        .where(dlq_message.c.domain_name == domain_name, dlq_message.c.message_id == message_id)
        .values(
            attempts=dlq_message.c.attempts + 1,
            last_attempt_at=tx.now,
            reason_category=category,
            sealed=tx.cipher(domain_name).seal_record(DLQ_TABLE, message_id, payload),
        )
    )
    return bool(result.rowcount)


def origin_reason(origin: str | None, reason: str) -> str:
    """The reason of a dead letter from `origin` ("Flow crm: why"); `reason` alone without one."""
    return f"{origin}: {reason}" if origin else reason


def _payload(
    object_json: str, reason: str, not_retryable: str | None, origin: str | None
) -> dict[str, str]:
    """What is sealed of a record: the object, the reason, why it cannot be retried when it
    cannot (absent from records written before that was kept: they can all be retried), and its
    origin when it has one."""
    payload = {"object": object_json, "reason": reason}
    if not_retryable is not None:
        payload["not_retryable"] = not_retryable
    if origin is not None:
        payload["origin"] = origin
    return payload


def _origin(payload: Mapping[str, str]) -> str | None:
    """The letter's origin: kept on its own, or read from the reason of a flow's record written
    before it was."""
    if "origin" in payload:
        return payload["origin"]
    legacy = _LEGACY_FLOW_ORIGIN.match(payload["reason"])
    return legacy.group(1) if legacy else None


def _stored_sink(cipher: DomainCipher, message_id: str, sink_error: str | None) -> dict[str, Any]:
    """The stored columns of a record's sink error: its fixed mark in clear, and any text beyond
    the marks sealed (see the module docstring)."""
    if sink_error is None or sink_error in (SQS_PENDING, NO_QUEUE, SQS_FAILED, NOT_RECORDED):
        return {"sink_error": sink_error, "sink_sealed": None}
    if sink_error.startswith((SQS_RESENDING, SQS_SENDING)):
        # The rest is when the send began: a time, no data.
        return {"sink_error": sink_error, "sink_sealed": None}
    if sink_error.startswith(SENT_WITHOUT_OBJECT):
        mark, detail = SENT_WITHOUT_OBJECT, sink_error[len(SENT_WITHOUT_OBJECT) :]
    else:
        mark, detail = SQS_FAILED, sink_error
    return {
        "sink_error": mark,
        "sink_sealed": cipher.seal_record(SINK_TABLE, message_id, {"detail": detail}),
    }


def _sink_error(cipher: DomainCipher, row: Any) -> str | None:
    """The whole sink error of a stored record (its mark, and the sealed text opened)."""
    if row.sink_sealed is None:
        if row.sink_error == SENT_WITHOUT_OBJECT:
            return SENT_WITHOUT_OBJECT + WHY_NOT_RECORDED
        return row.sink_error
    detail = cipher.open_record(SINK_TABLE, row.message_id, bytes(row.sink_sealed))["detail"]
    return f"{SENT_WITHOUT_OBJECT}{detail}" if row.sink_error == SENT_WITHOUT_OBJECT else detail


def _record(tx: Tx, row: Any) -> DeadLetter:
    cipher = tx.cipher(row.domain_name)
    payload = cipher.open_record(DLQ_TABLE, row.message_id, bytes(row.sealed))
    return DeadLetter(
        message_id=row.message_id,
        domain_name=row.domain_name,
        object_type_name=row.object_type_name,
        object_json=payload["object"],
        reason=payload["reason"],
        category=row.reason_category,
        attempts=row.attempts,
        created_at=row.created_at,
        last_attempt_at=row.last_attempt_at,
        sink_error=_sink_error(cipher, row),
        not_retryable=payload.get("not_retryable"),
        origin=_origin(payload),
    )


def get(tx: Tx, *, domain_name: str, message_id: str) -> DeadLetter:
    tx.cipher(domain_name)
    row = tx.conn.execute(
        select(dlq_message).where(
            dlq_message.c.domain_name == domain_name, dlq_message.c.message_id == message_id
        )
    ).first()
    if row is None:
        raise NotFound(
            f"The dead-letter message {message_id} does not exist in domain {domain_name}."
        )
    return _record(tx, row)


def list_messages(
    tx: Tx, *, domain_name: str, limit: int | None = None, after: str | None = None
) -> list[DeadLetter]:
    """Messages oldest first (the order they would be replayed in)."""
    tx.cipher(domain_name)
    query = (
        select(dlq_message)
        .where(dlq_message.c.domain_name == domain_name)
        .order_by(dlq_message.c.created_at, dlq_message.c.message_id)
    )
    if after is not None:
        query = query.where(dlq_message.c.message_id > after)
    if limit is not None:
        query = query.limit(limit)
    return [_record(tx, r) for r in tx.conn.execute(query)]


def count(tx: Tx, *, domain_name: str) -> int:
    return int(
        tx.conn.execute(
            select(func.count()).where(dlq_message.c.domain_name == domain_name)
        ).scalar_one()
    )


def letter_ids(tx: Tx, *, domain_name: str, through: str | None = None) -> list[str]:
    """The message ids of the domain's dead letters (those up to and including message id
    `through` when given), without opening them: what `openprofiles dlq purge --all` counts for
    its question and then purges (`purge`), so that a letter dead-lettered while the question
    waited is not purged unseen."""
    query = select(dlq_message.c.message_id).where(dlq_message.c.domain_name == domain_name)
    if through is not None:
        query = query.where(dlq_message.c.message_id <= through)
    return list(tx.conn.execute(query).scalars())


def letter_bound(tx: Tx, *, domain_name: str) -> tuple[int, str | None]:
    """How many dead letters the domain has, and the greatest message id among them (None when
    it has none), read in one statement so that the two agree: what the admin page's "Purge
    all" counts for its confirmation and then purges (`purge_through`). A page cannot carry
    thousands of ids, as the CLI does (`letter_ids`); the greatest is enough, because message
    ids sort in the order records are dead-lettered (`new_message_id`)."""
    row = tx.conn.execute(
        select(func.count(), func.max(dlq_message.c.message_id)).where(
            dlq_message.c.domain_name == domain_name
        )
    ).one()
    return int(row[0]), row[1]


# How letters counted for a purge may be gone before it purges them: its result says so, in the
# CLI's and the web page's words alike (cli_support.gone_meanwhile).
GONE_BEFORE_PURGE = "retried, expired or purged meanwhile"


def purge_through(tx: Tx, *, domain_name: str, through: str | None, counted: int) -> int | None:
    """Purge the domain's dead letters that `letter_bound` counted: those up to and including
    message id `through` (none when None). Returns how many: fewer than `counted` when some were
    retried, expired or purged meanwhile. Letters dead-lettered after the count sort after
    `through` and stay. None, purging nothing, when more than `counted` are up to `through`: a
    letter's id is taken when it is dead-lettered, so one whose transaction committed only
    after the count can sort before `through`, and no one has seen it. (Should as many others
    have gone meanwhile, the count cannot tell: that would take every id counted.)"""
    tx.cipher(domain_name)  # an unknown domain is its own error, as `purge` says it
    ids = [] if through is None else letter_ids(tx, domain_name=domain_name, through=through)
    if len(ids) > counted:
        return None
    # The ids read in this transaction, not a range: one committed in between is not deleted.
    return purge(tx, domain_name=domain_name, message_ids=ids)


@dataclass(frozen=True)
class LetterCounts:
    """Dead letters of every domain, without opening them: by (domain, reason category), and by
    domain those whose send to the domain's queue failed, waiting for the resend (their mark
    SQS_FAILED)."""

    by_category: dict[tuple[str, str], int]
    unsent: dict[str, int]


def count_letters(tx: Tx) -> LetterCounts:
    """Both counts of LetterCounts in one pass (GET /metrics' state read), over the index of
    the columns it reads (ix_dlq_message_category, migration 0043), not the table: that holds
    every dead letter's sealed record."""
    unsent = func.sum(case((dlq_message.c.sink_error == SQS_FAILED, 1), else_=0))
    query = select(
        dlq_message.c.domain_name, dlq_message.c.reason_category, func.count(), unsent
    ).group_by(dlq_message.c.domain_name, dlq_message.c.reason_category)
    by_category: dict[tuple[str, str], int] = {}
    by_domain: dict[str, int] = {}
    for domain_name, category, letters, failed in tx.conn.execute(query):
        by_category[(domain_name, category)] = int(letters)
        if failed:
            by_domain[domain_name] = by_domain.get(domain_name, 0) + int(failed)
    return LetterCounts(by_category=by_category, unsent=by_domain)


def retry(
    tx: Tx,
    *,
    domain_name: str,
    message_ids: Sequence[str] | None = None,
    gone_ok: bool = False,
) -> RetryOutcome:
    """Run messages through ingestion again; remove the ones that now succeed, count another
    attempt (with the new reason, after the letter's origin) on the others.

    Each object is parsed once, strictly, as it was first read (ingest.bulk.parse_record): one
    that is not a JSON object stays with that reason (it used to be retried as {} and get a
    misleading one). A contact record goes through the contact-record intake (contacts.service),
    not the plain pipeline: it is checked again, and applied only when it is newer than the
    version of its contact already applied — otherwise a retry would put an old or invalid
    record back over a newer one, and later deliveries of that newer one would count as
    repeats. Any other record whose object was written after the letter's last attempt is
    superseded likewise (`_superseded`). The other records' locks are all taken before the
    first is applied, in the pipeline's one global order (`_hold`), as a batch of `ingest`
    takes its own: taken letter by letter, they deadlocked with such a batch (PostgreSQL).

    `gone_ok`: a message id given that is no longer in the store (another retry removed it
    meanwhile) is skipped instead of NotFound."""
    from openprofiles.contacts.history import contact_object_types
    from openprofiles.contacts.service import retry_contact_record
    from openprofiles.ingest.bulk import parse_record
    from openprofiles.ingest.pipeline import IngestRejected, ingest_object

    contact_types = set(contact_object_types(tx, domain_name=domain_name))

    def plain_of(letters: list[DeadLetter]) -> dict[str, tuple[DeadLetter, Mapping[str, Any]]]:
        return {
            letter.message_id: (letter, source)
            for letter in letters
            if letter.not_retryable is None
            and not isinstance(source := sources[letter.message_id], IngestRejected)
            and not _is_contact_record(letter.object_type_name, source, contact_types)
        }

    # The letters' key locks before their rows: a load of `ingest` takes its records' keys,
    # then the row of a letter it counts another attempt on; a retry that held the row while
    # it waited for the keys deadlocked with it. So the letters are read, their keys taken,
    # and then their rows claimed (read again: another retry may have removed some).
    read = _claim(tx, domain_name, message_ids, gone_ok=gone_ok, lock=False)
    sources = {letter.message_id: parse_record(letter.object_json) for letter in read}
    unique_digests = _hold(tx, domain_name, list(plain_of(read).values()))
    ids = [r.message_id for r in read]
    letters = _claim(tx, domain_name, ids, gone_ok=gone_ok or message_ids is None)
    plain = plain_of(letters)
    # Told before any letter is applied: a letter applied here writes its object too, which
    # does not make a newer letter of the same object superseded.
    stale = {
        message_id
        for message_id, (letter, _) in plain.items()
        if _superseded(tx, letter, unique_digests.get(message_id))
    }
    outcome = RetryOutcome(succeeded=[], failed=[])
    for letter in letters:
        if letter.not_retryable is not None:
            # Not an attempt: its reason and attempts stay as they are.
            outcome.failed.append(letter.message_id)
            outcome.not_retried[letter.message_id] = letter.not_retryable
            continue
        reason: str | None = None
        category = letter.category
        source = sources[letter.message_id]
        if isinstance(source, IngestRejected):
            reason, category = source.reason, source.category
        elif _is_contact_record(letter.object_type_name, source, contact_types):
            done = retry_contact_record(
                tx,
                domain_name=domain_name,
                object_type_name=letter.object_type_name,
                parsed=source,
                raw=letter.object_json,
            )
            if isinstance(done, IngestRejected):
                reason, category = done.reason, done.category
            elif not done.changed:
                outcome.superseded.append(letter.message_id)
        elif letter.message_id in stale:
            # Nothing applied: the object stored is newer than the letter's record.
            outcome.superseded.append(letter.message_id)
        else:
            try:
                ingest_object(
                    tx,
                    domain_name=domain_name,
                    object_type_name=letter.object_type_name,
                    source=source,
                    raw=letter.object_json,
                )
            except IngestRejected as exc:
                reason, category = exc.reason, exc.category
            except ServiceError as exc:
                # e.g. the object type no longer exists: the record stays for a later retry.
                reason, category = exc.message, "invalid_value"
        if reason is None:
            _delete(tx, domain_name, [letter.message_id])
            outcome.succeeded.append(letter.message_id)
            continue
        _record_attempt(
            tx,
            domain_name,
            letter.message_id,
            category,
            _payload(letter.object_json, origin_reason(letter.origin, reason), None, letter.origin),
        )
        outcome.failed.append(letter.message_id)
    return outcome


def _hold(
    tx: Tx, domain_name: str, plain: Sequence[tuple[DeadLetter, Mapping[str, Any]]]
) -> dict[str, bytes]:
    """The UNIQUE key digest of each plain (not contact) letter's record, by message id, for
    those whose object type exists and whose record maps; holding (PostgreSQL) their object
    types, shared, then every key and UNIQUE value of them all in one `take_locks`, as
    ingest.pipeline.ingest_batch takes them for a batch: the one order every writer keeps
    (store.advisory). The pipeline takes them again per letter, which waits for nothing then."""
    from openprofiles.ingest.pipeline import IngestRejected, _lock, _locks_of, _prepare
    from openprofiles.object_types.service import get_object_type, lock_object_types

    if not tx.services.database.is_sqlite:
        names = sorted({letter.object_type_name for letter, _ in plain})
        lock_object_types(tx, domain_name=domain_name, names=names, shared=True)
    cipher = tx.cipher(domain_name)
    region = tx.settings.default_phone_region
    types: dict[str, ObjectType | None] = {}
    digests: dict[str, bytes] = {}
    locks: list[tuple[str, str, bytes]] = []
    for letter, source in plain:
        name = letter.object_type_name
        if name not in types:
            try:
                types[name] = get_object_type(tx, domain_name=domain_name, name=name)
            except ServiceError:
                types[name] = None  # the retry itself says why
        if (object_type := types[name]) is None:
            continue
        try:
            item = _prepare(object_type, cipher, 0, source, letter.object_json, region)
        except IngestRejected:
            continue  # as above: nothing to lock, the retry rejects it again
        digests[letter.message_id] = item.unique_digest
        locks.extend(_locks_of(name, item))
    _lock(tx, domain_name, locks)
    return digests


def _superseded(tx: Tx, letter: DeadLetter, unique_digest: bytes | None) -> bool:
    """Whether the letter's object (its type's, with the record's UNIQUE digest) was written
    after the letter's last attempt: by a later load of the fixed file, a later API call. That
    version is newer than the letter's record, which a retry must not put back over it."""
    from openprofiles.objects.service import find_object

    if unique_digest is None:
        return False
    stored = find_object(
        tx,
        domain_name=letter.domain_name,
        object_type_name=letter.object_type_name,
        unique_digest=unique_digest,
    )
    return stored is not None and stored.updated_at > letter.last_attempt_at


def _claim(
    tx: Tx,
    domain_name: str,
    message_ids: Sequence[str] | None,
    *,
    gone_ok: bool = False,
    lock: bool = True,
) -> list[DeadLetter]:
    """The letters to retry, oldest first, their rows locked until the transaction ends
    (PostgreSQL; SQLite's one writer serialises retries already). Two retries of one queue at
    once used to both apply every letter: the second now waits for the first, and then finds
    the letters it removed gone. NotFound names a message id given that is not (or no longer)
    in the store, unless `gone_ok`. Not `lock`: read only (`retry` reads them before it takes
    their key locks)."""
    tx.cipher(domain_name)
    query = (
        select(dlq_message)
        .where(dlq_message.c.domain_name == domain_name)
        .order_by(dlq_message.c.created_at, dlq_message.c.message_id)
    )
    if lock:
        query = query.with_for_update()
    if message_ids is None:
        return [_record(tx, r) for r in tx.conn.execute(query)]
    found = {
        r.message_id: r
        for chunk in in_chunks(list(dict.fromkeys(message_ids)))
        for r in tx.conn.execute(query.where(dlq_message.c.message_id.in_(chunk)))
    }
    for message_id in message_ids:
        if message_id not in found and not gone_ok:
            raise NotFound(
                f"The dead-letter message {message_id} does not exist in domain {domain_name}."
            )
    rows = sorted(found.values(), key=lambda r: (r.created_at, r.message_id))
    return [_record(tx, r) for r in rows]


# Letters retried per write transaction by `retry_in_batches`: on SQLite a retry holds the one
# writer lock, and 10,000 letters in one transaction held every API write for seconds.
RETRY_BATCH = 200


def retry_in_batches(
    services: Services, *, domain_name: str, message_ids: Sequence[str] | None = None
) -> RetryOutcome:
    """`retry` the letters (all, or `message_ids`) RETRY_BATCH at a time, oldest first, each
    batch in a write transaction of its own (run again when it lost a race, store.conflicts):
    other writes go between batches, and what a batch did stays done if a later one fails."""
    from openprofiles.store.conflicts import retrying

    total = RetryOutcome(succeeded=[], failed=[])
    if message_ids is not None:
        wanted = list(dict.fromkeys(message_ids))
        # Every id checked before any batch commits: an unknown one fails the whole command,
        # as it did when the retry was one transaction, rather than after some were applied.
        with services.read() as tx:
            tx.cipher(domain_name)
            unknown = missing(tx, domain_name=domain_name, message_ids=wanted)
        if unknown:
            raise NotFound(
                f"The dead-letter message {unknown[0]} does not exist in domain {domain_name}."
            )
        for start in range(0, len(wanted), RETRY_BATCH):
            batch = wanted[start : start + RETRY_BATCH]
            _add(total, retrying(partial(_retry_batch, services, domain_name, batch)))
        return total
    after: tuple[datetime, str] | None = None
    while True:

        def attempt(after: tuple[datetime, str] | None = after) -> tuple[RetryOutcome, Any]:
            with services.write() as tx:
                ids = _next_batch(tx, domain_name, after)
                if not ids:
                    return RetryOutcome(succeeded=[], failed=[]), None
                # Another retry may have removed some meanwhile: they are done, not missing.
                outcome = retry(
                    tx, domain_name=domain_name, message_ids=[i for _, i in ids], gone_ok=True
                )
                return outcome, ids[-1]

        outcome, last = retrying(attempt)
        if last is None:
            return total
        _add(total, outcome)
        after = last


def _retry_batch(services: Services, domain_name: str, message_ids: list[str]) -> RetryOutcome:
    with services.write() as tx:
        # Removed since the ids were checked (another retry, a purge): done, not missing.
        return retry(tx, domain_name=domain_name, message_ids=message_ids, gone_ok=True)


def _next_batch(
    tx: Tx, domain_name: str, after: tuple[datetime, str] | None
) -> list[tuple[datetime, str]]:
    """(created_at, message id) of the next RETRY_BATCH letters after `after`, oldest first: the
    letters that still fail stay, so the batches walk past them."""
    query = (
        select(dlq_message.c.created_at, dlq_message.c.message_id)
        .where(dlq_message.c.domain_name == domain_name)
        .order_by(dlq_message.c.created_at, dlq_message.c.message_id)
        .limit(RETRY_BATCH)
    )
    if after is not None:
        query = query.where(tuple_(dlq_message.c.created_at, dlq_message.c.message_id) > after)
    return [(r.created_at, r.message_id) for r in tx.conn.execute(query)]


def _add(total: RetryOutcome, outcome: RetryOutcome) -> None:
    total.succeeded.extend(outcome.succeeded)
    total.failed.extend(outcome.failed)
    total.superseded.extend(outcome.superseded)
    total.not_retried.update(outcome.not_retried)


def _is_contact_record(
    object_type_name: str, record: Mapping[str, object], contact_types: set[str]
) -> bool:
    """Whether a letter's record is a contact record: of one of the domain's contact-record
    object types (contacts.history.contact_object_types) and naming an InstanceARN, as every
    record the contact intake dead-letters does (it routes records by it). Other objects of
    those types (PutProfileObject) keep the plain pipeline."""
    return object_type_name in contact_types and "InstanceARN" in record


def purge(tx: Tx, *, domain_name: str, message_ids: Sequence[str] | None = None) -> int:
    """Delete the given messages (all of the domain's when None); returns how many: fewer
    than given when some were gone already."""
    tx.erased()
    tx.cipher(domain_name)
    return _delete(tx, domain_name, message_ids)


def holding(tx: Tx, *, domain_name: str, value: HeldValue) -> list[str]:
    """The ids of the domain's dead letters whose record or reason holds a customer's value
    (openprofiles.held_values), in id order: each is opened, a page at a time. A dead letter's
    record failed, so no profile links to it and DeleteProfile leaves it: this finds it for
    `purge` (`openprofiles dlq purge --matching`)."""
    cipher = tx.cipher(domain_name)
    return ids_holding(
        value,
        lambda after, limit: tx.conn.execute(
            select(dlq_message.c.message_id, dlq_message.c.sealed)
            .where(dlq_message.c.domain_name == domain_name, dlq_message.c.message_id > after)
            .order_by(dlq_message.c.message_id)
            .limit(limit)
        ).all(),
        lambda row: cipher.open_record(DLQ_TABLE, row.message_id, bytes(row.sealed)),
    )


# Expired dead letters deleted per transaction: the first purge after an upgrade may find every
# letter ever kept past retention, and on SQLite API writes wait while a transaction deletes.
PURGE_BATCH = 1000


def purge_expired(tx: Tx, now: datetime, *, limit: int | None = None) -> int:
    """Delete up to `limit` dead letters (all domains) older than their domain's
    DefaultExpirationDays; how many (fewer than `limit`: none is left). A dead letter holds a
    whole record, personal data a domain keeps no longer than it keeps its objects. Counted
    from when the record was first dead-lettered, as an object's retention is fixed when it is
    ingested (spec §1.9): a retry does not extend it. `limit` defaults to PURGE_BATCH."""
    limit = PURGE_BATCH if limit is None else limit
    purged = 0
    for name, config in tx.conn.execute(select(domain.c.name, domain.c.config)).all():
        days = config.get("DefaultExpirationDays") if isinstance(config, Mapping) else None
        if not isinstance(days, int) or days <= 0 or purged >= limit:
            continue
        expired = (
            select(dlq_message.c.message_id)
            .where(
                dlq_message.c.domain_name == name,
                dlq_message.c.created_at <= now - timedelta(days=days),
            )
            .limit(limit - purged)
        )
        ids = list(tx.conn.execute(expired).scalars())
        if ids:
            purged += _delete(tx, name, ids)
    if purged:
        tx.erased()
    return purged


def missing(tx: Tx, *, domain_name: str, message_ids: Sequence[str]) -> list[str]:
    """Those of the message ids that are not in the domain's store, in the order given."""
    found = {
        r.message_id
        for chunk in in_chunks(list(message_ids))
        for r in tx.conn.execute(
            select(dlq_message.c.message_id).where(
                dlq_message.c.domain_name == domain_name, dlq_message.c.message_id.in_(chunk)
            )
        )
    }
    return [m for m in message_ids if m not in found]


def claim_pending(tx: Tx, *, domain_name: str, message_ids: Sequence[str], claim: str) -> set[str]:
    """Take for the send after their commit those of the messages stored and still marked
    `SQS_PENDING` (not rolled back with a savepoint, purged, or taken by dlq.resend meanwhile):
    they carry `claim` (`sending_mark`) now. Returns their message ids."""
    _remark(tx, domain_name, message_ids, SQS_PENDING, claim)
    return {
        r.message_id
        for chunk in in_chunks(list(message_ids))
        for r in tx.conn.execute(
            select(dlq_message.c.message_id).where(
                dlq_message.c.domain_name == domain_name,
                dlq_message.c.message_id.in_(chunk),
                dlq_message.c.sink_error == claim,
            )
        )
    }


def _remark(
    tx: Tx, domain_name: str, message_ids: Sequence[str], marked: str, mark: str | None
) -> None:
    """Give the records still marked `marked` the sink error `mark` (a fixed one, not sealed)."""
    for chunk in in_chunks(list(message_ids)):
        tx.conn.execute(
            update(dlq_message)
            .where(
                dlq_message.c.domain_name == domain_name,
                dlq_message.c.message_id.in_(chunk),
                dlq_message.c.sink_error == marked,
            )
            .values(sink_error=mark, sink_sealed=None)
        )


def settle_sends(
    tx: Tx,
    *,
    domain_name: str,
    sent: Sequence[str],
    failed: Mapping[str, Sequence[str]],
    without_object: Mapping[str, str] | None = None,
    released: Sequence[str] = (),
    marked: str = SQS_PENDING,
) -> None:
    """Record the SQS sends' outcomes: no sink error for the `sent` message ids, unless they
    were sent `without_object` (message id → why: `SENT_WITHOUT_OBJECT` and why); for `failed`
    (why → message ids), why the send failed; `SQS_PENDING` again for those `released` (not
    tried: dlq.resend sends them). Only records still marked `marked` (what the sender saw when
    it took them, or its claim) change."""
    without_object = without_object or {}
    _remark(tx, domain_name, [m for m in sent if m not in without_object], marked, None)
    _remark(tx, domain_name, released, marked, SQS_PENDING)
    # Sealed per record (bound to its message id): one executemany. Only these need the key;
    # `settle_unsealed` records the rest when it cannot be used.
    to_note = [
        (message_id, error)
        for error, message_ids in (
            *failed.items(),
            *((SENT_WITHOUT_OBJECT + why, [m]) for m, why in without_object.items()),
        )
        for message_id in message_ids
    ]
    if to_note:
        cipher = tx.cipher(domain_name)
        noted = [{"m": m, **_stored_sink(cipher, m, error)} for m, error in to_note]
        tx.conn.execute(
            update(dlq_message)
            .where(
                dlq_message.c.domain_name == domain_name,
                dlq_message.c.message_id == bindparam("m"),
                dlq_message.c.sink_error == marked,
            )
            .values(sink_error=bindparam("e"), sink_sealed=bindparam("s")),
            [{"m": n["m"], "e": n["sink_error"], "s": n["sink_sealed"]} for n in noted],
        )


def settle_unsealed(
    tx: Tx,
    *,
    domain_name: str,
    sent: Sequence[str],
    without_object: Collection[str],
    not_sent: Sequence[str],
    marked: str,
) -> None:
    """Record what needs no key of the SQS sends' outcomes, when the domain's key cannot be used
    (`settle_sends` could not seal why): the `sent` message ids delivered — those sent
    `without_object` marked `SENT_WITHOUT_OBJECT` alone, why not kept — so that no resend sends
    them again; and those `not_sent` (failed or not tried) `SQS_PENDING` again, for dlq.resend,
    why they failed being lost. Only records still marked `marked` change."""
    _remark(tx, domain_name, [m for m in sent if m not in without_object], marked, None)
    _remark(tx, domain_name, [m for m in sent if m in without_object], marked, SENT_WITHOUT_OBJECT)
    _remark(tx, domain_name, not_sent, marked, SQS_PENDING)


def resend_mark(now: datetime) -> str:
    """The `SQS_RESENDING` mark of a resend run that starts at `now`."""
    return f"{SQS_RESENDING}{now.astimezone(UTC).isoformat()}"


def sending_mark(now: datetime) -> str:
    """The `SQS_SENDING` mark of a send after a commit that starts at `now`."""
    return f"{SQS_SENDING}{now.astimezone(UTC).isoformat()}"


def _claim_started(mark: str) -> datetime | None:
    """When the send or resend that claimed a record with `mark` started; None for other sink
    errors. A mark that cannot be read counts as long ago, so its record is not stuck."""
    prefix = next((p for p in (SQS_RESENDING, SQS_SENDING) if mark.startswith(p)), None)
    if prefix is None:
        return None
    try:
        return datetime.fromisoformat(mark[len(prefix) :])
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class SendScan:
    # Message id → its sink error as seen (the claim's expected value), oldest first.
    due: dict[str, str]
    # Records not delivered but not due yet: a send or resend may still be under way.
    waiting: int
    # The last message id looked at, to go on from; None when there are no more.
    next_after: str | None


def due_sends(
    tx: Tx,
    *,
    domain_name: str,
    pending_before: datetime,
    resending_before: datetime,
    after: str | None,
    limit: int,
) -> SendScan:
    """Look at up to `limit` records not delivered to SQS (oldest first, after message id
    `after`) and say which are due for a send: those whose send failed; those `SQS_PENDING`
    since before `pending_before` (the send after their commit would have claimed them by then,
    unless its process stopped, or it left them for a resend); those claimed (by a resend, or
    by the send after their commit) before `resending_before` (their sender may have
    stopped)."""
    rows = tx.conn.execute(
        select(dlq_message.c.message_id, dlq_message.c.sink_error, dlq_message.c.created_at)
        .where(
            *_undelivered(domain_name),
            *([dlq_message.c.message_id > after] if after is not None else []),
        )
        .order_by(dlq_message.c.message_id)
        .limit(limit)
    ).all()
    due: dict[str, str] = {}
    for row in rows:
        started = _claim_started(row.sink_error)
        if row.sink_error == SQS_PENDING:
            is_due = row.created_at < pending_before
        elif started is not None:
            is_due = started < resending_before
        else:
            is_due = True
        if is_due:
            due[row.message_id] = row.sink_error
    return SendScan(
        due=due,
        waiting=len(rows) - len(due),
        next_after=rows[-1].message_id if len(rows) == limit else None,
    )


def _undelivered(domain_name: str) -> tuple[Any, ...]:
    """The conditions of the domain's records bound for its queue and not delivered to it: not
    those never bound for one (`NO_QUEUE`), nor those whose delivery was not recorded
    (`NOT_RECORDED`: perhaps delivered)."""
    return (
        dlq_message.c.domain_name == domain_name,
        dlq_message.c.sink_error.is_not(None),
        dlq_message.c.sink_error.not_in([NO_QUEUE, NOT_RECORDED, SENT_WITHOUT_OBJECT]),
    )


def count_undelivered(tx: Tx, *, domain_name: str) -> int:
    """How many of the domain's records bound for its queue were not delivered to it yet."""
    return int(tx.conn.execute(select(func.count()).where(*_undelivered(domain_name))).scalar_one())


def claim_sends(
    tx: Tx, *, domain_name: str, marks: Mapping[str, str], claim: str
) -> list[DeadLetter]:
    """Take records for a send: each whose sink error is still the one seen (`marks`: message
    id → sink error) now carries `claim`. Returns those records, in `marks`' order. A record
    another sender took, settled, retried away or purged meanwhile is left out — so two
    processes resending at once never send one record twice. (A failed send's mark is
    `SQS_FAILED` whatever the failure: a record whose send failed again meanwhile is taken, and
    that sends nothing twice, as it was not delivered.)"""
    taken: list[DeadLetter] = []
    for message_id, seen in marks.items():
        result = tx.conn.execute(
            update(dlq_message)
            .where(
                dlq_message.c.domain_name == domain_name,
                dlq_message.c.message_id == message_id,
                dlq_message.c.sink_error == seen,
            )
            .values(sink_error=claim, sink_sealed=None)
        )
        if result.rowcount == 1:
            taken.append(get(tx, domain_name=domain_name, message_id=message_id))
    return taken


def delivery_status(letter: DeadLetter) -> str:
    """What became of the record's send to its domain's SQS queue, in words: its own history,
    whatever the domain's queue is now. A record without a sink error was sent."""
    if letter.sink_error == NO_QUEUE:
        return "No queue (kept here only)"
    if letter.sink_error == NOT_RECORDED:
        return (
            "Not recorded (stored by a version from before 2026-11-29 00:38 UTC; it may or may "
            "not have reached a queue)"
        )
    if letter.sink_error and letter.sink_error.startswith(SENT_WITHOUT_OBJECT):
        return f"Sent without its object ({letter.sink_error[len(SENT_WITHOUT_OBJECT) :]})"
    if letter.sink_error:
        return f"Not sent: {letter.sink_error}"
    return "Sent"


def _delete(tx: Tx, domain_name: str, message_ids: Sequence[str] | None) -> int:
    statement = delete(dlq_message).where(dlq_message.c.domain_name == domain_name)
    if message_ids is None:
        return int(tx.conn.execute(statement).rowcount or 0)
    return sum(
        int(tx.conn.execute(statement.where(dlq_message.c.message_id.in_(chunk))).rowcount or 0)
        for chunk in in_chunks(list(message_ids))
    )
