"""Where dead letters go: the `DeadLetterSink` seam, the local store (always) and SQS (when the
domain has a DeadLetterQueueUrl).

The SQS message mirrors what AWS's own consumers expect (spec §6.1): the body is the submitted
object JSON, and String message attributes `Message` (the reason), `DomainName` and
`ObjectTypeName`. A failure to reach SQS never loses the record: it is kept in the local store
with the failure noted, and can be replayed from there.

An object SQS refuses on every send is not sent as the body: one that is empty, holds
characters a message cannot carry, or makes the message larger than any queue takes
(`SQS_MAX_MESSAGE_BYTES`); and one over `SQS_BATCH_BYTES` (the cap of many queues) that the
queue refused. The message then goes with a JSON note in its place (`{"ObjectOmitted": why,
"DeadLetterMessageId": id}`), the same note in a String attribute `ObjectOmitted`, and the usual
attributes, so that the queue's consumer still learns of the failure and where the object is
kept whole (the local store, which always holds it) — or, for an empty one, that nothing was left
out — instead of the send failing at every resend. The note says what is kept, not "the record":
a dead letter need not hold one (a flow item that could not be read as records holds what was
read of it, or nothing). The record's sink error says it was sent without its object
(`service.SENT_WITHOUT_OBJECT`).

The local record is written in the caller's transaction; the SQS send waits until that
transaction has committed (`Tx.after_commit`), so a slow or unreachable queue never holds a
transaction open — on SQLite that would stall every write of the server — and a rolled-back
transaction sends nothing. Sends go in SendMessageBatch requests of up to 10 messages
(`deliver`), the one way letters reach SQS, also when dlq.resend sends them again.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.exc import SQLAlchemyError

from openprofiles.context import Services, Tx
from openprofiles.dlq import service
from openprofiles.dlq.models import DeadLetter
from openprofiles.domains.service import get_domain
from openprofiles.settings import Settings

TEST_MESSAGE = "OpenProfiles dead-letter queue test message"
# Bounds on one SQS call, so an endpoint that accepts connections and never answers costs
# seconds, not a worker forever (botocore's defaults are 60 s each).
SQS_CONNECT_TIMEOUT_SECONDS = 5
SQS_READ_TIMEOUT_SECONDS = 10
# SendMessageBatch takes up to 10 messages; their total size is capped too, as is one message's
# (body and attributes). 256 KiB is the smallest cap among SQS (1 MiB since 2025; a queue's
# MaximumMessageSize may be lower) and the SQS-compatible queues; no queue takes over 1 MiB.
SQS_BATCH_ENTRIES = 10
SQS_BATCH_BYTES = 256 * 1024
SQS_MAX_MESSAGE_BYTES = 1024 * 1024
# What a message body may not hold: anything outside #x9, #xA, #xD, #x20-#xD7FF, #xE000-#xFFFD
# and #x10000-#x10FFFF (SendMessage's documented character set), lone surrogates included.
_NOT_SQS_TEXT = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

logger = logging.getLogger(__name__)


class SinkError(Exception):
    """A sink could not take a message; `message` says why. `unreachable` when the endpoint did
    not answer at all (rather than refusing the message).

    The message quotes the queue's or the network's own error text, which this server does not
    control and which may echo what was sent (the reason quotes a record's value): it is sealed
    where it is stored (dlq.service), and logging_setup withholds it like any other message."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.unreachable = unreachable


class DeadLetterSink(Protocol):
    def send(self, letter: DeadLetter) -> None:
        """Deliver one dead letter; raise SinkError when it cannot."""


class LocalStoreSink:
    """The database's dlq_message table, inside the caller's transaction."""

    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    def send(self, letter: DeadLetter) -> None:
        service.put(
            self._tx,
            domain_name=letter.domain_name,
            object_type_name=letter.object_type_name,
            object_json=letter.object_json,
            reason=letter.reason,
            category=letter.category,
            sink_error=letter.sink_error,
            message_id=letter.message_id,
            not_retryable=letter.not_retryable,
            origin=letter.origin,
        )


class SqsSink:
    """An SQS (or SQS-compatible) queue, addressed by its URL."""

    def __init__(self, settings: Settings, queue_url: str, client: Any | None = None) -> None:
        self.queue_url = queue_url
        self._client = client or sqs_client(settings)

    def send(self, letter: DeadLetter) -> None:
        self._send(*_message(letter))

    def send_batch(
        self, letters: Sequence[DeadLetter], *, omitted: str | None = None
    ) -> dict[int, str]:
        """Send up to `SQS_BATCH_ENTRIES` letters in one request (with a note in place of their
        objects, saying `omitted`, when given); returns why, for the ones the queue refused (by
        their index in `letters`). SinkError when the request as a whole failed (none was
        sent)."""
        with self._translated_errors():
            response = self._client.send_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {
                        # Entry ids only need to be unique within the request.
                        "Id": str(index),
                        "MessageBody": body,
                        "MessageAttributes": _message_attributes(attributes),
                    }
                    for index, (body, attributes) in enumerate(
                        _message(letter, omitted) for letter in letters
                    )
                ],
            )
        refused = {int(entry["Id"]): self._refused(entry) for entry in response.get("Failed", [])}
        answered = set(refused) | {int(entry["Id"]) for entry in response.get("Successful", [])}
        for index in range(len(letters)):
            if index not in answered:
                refused[index] = f"SQS did not say whether it took the message ({self.queue_url})"
        return refused

    def check(self, domain_name: str) -> None:
        """Send a test message, as Customer Profiles does on CreateDomain (spec §6.1)."""
        self._send(
            json.dumps({"test": TEST_MESSAGE}),
            {"Message": TEST_MESSAGE, "DomainName": domain_name},
        )

    def _send(self, body: str, attributes: dict[str, str]) -> None:
        with self._translated_errors():
            self._client.send_message(
                QueueUrl=self.queue_url,
                MessageBody=body,
                MessageAttributes=_message_attributes(attributes),
            )

    @contextmanager
    def _translated_errors(self) -> Iterator[None]:
        """boto3's errors as SinkError: the queue's refusal, or an unreachable endpoint."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            raise SinkError(self._refused(exc.response.get("Error", {}))) from exc
        except BotoCoreError as exc:
            raise SinkError(
                f"SQS could not be reached at {self.queue_url}: {exc}", unreachable=True
            ) from exc

    def _refused(self, error: dict[str, Any]) -> str:
        """Why the queue refused, from an error (or a failed batch entry): its code and message."""
        return (
            f"SQS refused the message for {self.queue_url}: "
            f"{error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")
        )


def _attributes(letter: DeadLetter) -> dict[str, str]:
    """The message attributes of a dead letter (spec §6.1)."""
    return {
        "Message": letter.reason,
        "DomainName": letter.domain_name,
        "ObjectTypeName": letter.object_type_name,
    }


def _message_attributes(attributes: dict[str, str]) -> dict[str, dict[str, str]]:
    # SQS refuses an attribute with an empty value, and one with a character outside its set
    # (a reason quoting the refused value may hold one): such a character is replaced, or
    # every send of the letter would fail.
    return {
        name: {"DataType": "String", "StringValue": _NOT_SQS_TEXT.sub("\ufffd", value)}
        for name, value in attributes.items()
        if value
    }


def _omitted_object(letter: DeadLetter) -> str | None:
    """Why the letter's object can never be the body of its SQS message, when it cannot: SQS
    refuses an empty body, a message over every queue's cap, and characters outside its set."""
    if not letter.object_json:
        return "the object is empty"
    size = _message_size(letter.object_json, _attributes(letter))
    if size > SQS_MAX_MESSAGE_BYTES:
        return (
            f"with it the message would be {size} bytes, over the {SQS_MAX_MESSAGE_BYTES} an "
            "SQS message may hold"
        )
    if _NOT_SQS_TEXT.search(letter.object_json):
        return "the object holds characters an SQS message cannot carry"
    return None


def _message(letter: DeadLetter, omitted: str | None = None) -> tuple[str, dict[str, str]]:
    """The body and attributes of the letter's SQS message: its object, or a note in its place
    saying `omitted` or why SQS can never take it (see the module docstring)."""
    attributes = _attributes(letter)
    why = omitted or _omitted_object(letter)
    if why is None:
        return letter.object_json, attributes
    where = f"dead letter {letter.message_id} of domain {letter.domain_name}"
    if letter.object_json:
        note = f"The object was not sent: {why}. OpenProfiles keeps it whole in {where}."
    else:
        note = (
            f"Nothing was left out: {why}, and SQS takes no empty message. OpenProfiles keeps "
            f"{where}, with its reason."
        )
    body = json.dumps({"ObjectOmitted": note, "DeadLetterMessageId": letter.message_id})
    return body, {**attributes, "ObjectOmitted": note}


def _message_size(body: str, attributes: dict[str, str]) -> int:
    """What a message counts towards SQS's size caps: body, attribute names, types, values."""
    return len(body.encode("utf-8", "surrogatepass")) + sum(
        len(name) + len("String") + len(value.encode()) for name, value in attributes.items()
    )


def _size(letter: DeadLetter) -> int:
    return _message_size(*_message(letter))


def _batches(letters: Sequence[DeadLetter]) -> list[list[DeadLetter]]:
    """The letters in order, in batches within SQS's caps (a letter over the size cap alone)."""
    batches: list[list[DeadLetter]] = []
    size = 0
    for letter in letters:
        grows = _size(letter)
        if not batches or len(batches[-1]) == SQS_BATCH_ENTRIES or size + grows > SQS_BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(letter)
        size += grows
    return batches


def sqs_client(settings: Settings) -> Any:
    """A boto3 SQS client for the settings' endpoint and region (shared: clients are
    thread-safe, and making one costs more than sending a message)."""
    return _sqs_client(settings.sqs_endpoint_url, settings.aws_region or settings.region)


@functools.lru_cache(maxsize=8)
def _sqs_client(endpoint_url: str | None, region: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "sqs",
        endpoint_url=endpoint_url,
        region_name=region,
        config=Config(
            retries={"max_attempts": 2},
            connect_timeout=SQS_CONNECT_TIMEOUT_SECONDS,
            read_timeout=SQS_READ_TIMEOUT_SECONDS,
        ),
    )


def check_queue(settings: Settings, queue_url: str, domain_name: str) -> None:
    """SinkError unless a test message can be written to the queue."""
    SqsSink(settings, queue_url).check(domain_name)


@dataclass
class Delivery:
    """What became of some letters' SQS sends, by domain: the message ids sent, those of them
    sent with a note in place of their object (message id → why), and the ids not sent by
    why."""

    sent: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    without_object: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    failed: dict[str, dict[str, list[str]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )


def deliver(
    settings: Settings,
    letters: Sequence[tuple[DeadLetter, str]],
    unreachable: dict[str, str] | None = None,
) -> Delivery:
    """Send letters to their queue URLs in batches. An endpoint that did not answer is not
    tried again for the rest of the letters (each try may cost the client's full timeouts):
    `unreachable` (queue URL → why) collects those, and may come filled from earlier calls."""
    unreachable = {} if unreachable is None else unreachable
    by_queue: dict[str, list[DeadLetter]] = defaultdict(list)
    for letter, queue_url in letters:
        by_queue[queue_url].append(letter)
    delivery = Delivery()
    for queue_url, queued in by_queue.items():
        sink = SqsSink(settings, queue_url)
        for batch in _batches(queued):
            refused = _send_batch(sink, batch, unreachable)
            omitted = {i: why for i, x in enumerate(batch) if (why := _omitted_object(x))}
            if refused and queue_url not in unreachable and _size(batch[0]) > SQS_BATCH_BYTES:
                # Over the cap of many queues (and so alone in its batch): the queue may well
                # have refused it for its size, and would at every resend. The note goes
                # instead; if the queue refuses that too, the letter was not sent.
                omitted[0] = f"the queue refused the message with it ({refused[0]})"
                refused = _send_batch(sink, batch, unreachable, omitted=omitted[0])
            for index, letter in enumerate(batch):
                if index in refused:
                    delivery.failed[letter.domain_name][refused[index]].append(letter.message_id)
                else:
                    delivery.sent[letter.domain_name].append(letter.message_id)
                    if index in omitted:
                        delivery.without_object[letter.domain_name][letter.message_id] = omitted[
                            index
                        ]
    return delivery


def _send_batch(
    sink: SqsSink, batch: list[DeadLetter], unreachable: dict[str, str], omitted: str | None = None
) -> dict[int, str]:
    """`sink.send_batch`, with why for every letter when the request failed as a whole (and the
    endpoint noted in `unreachable` when it did not answer, or is noted there already)."""
    error = unreachable.get(sink.queue_url)
    if error is None:
        try:
            return sink.send_batch(batch, omitted=omitted)
        except SinkError as exc:
            error = exc.message
            if exc.unreachable:
                unreachable[sink.queue_url] = exc.message
    return dict.fromkeys(range(len(batch)), error)


def settle(services: Services, delivery: Delivery, *, marked: str = service.SQS_PENDING) -> None:
    """Record the outcomes in the local store, on the records still marked `marked` (the mark
    the sender saw: a record settled, purged or taken over meanwhile is left as it is)."""
    domains = set(delivery.sent) | set(delivery.failed)
    if not domains:
        return
    with services.write() as tx:
        for domain_name in sorted(domains):
            service.settle_sends(
                tx,
                domain_name=domain_name,
                sent=delivery.sent.get(domain_name, []),
                failed=delivery.failed.get(domain_name, {}),
                without_object=delivery.without_object.get(domain_name, {}),
                marked=marked,
            )


class _SqsOutbox:
    """The dead letters of one transaction that wait for their SQS send; registered once per
    transaction with `Tx.after_commit`."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self.letters: list[tuple[DeadLetter, str]] = []

    def __call__(self) -> None:
        try:
            self._flush()
        except SQLAlchemyError as exc:
            # The caller's transaction has committed: raising would read as its failure (and
            # bulk ingestion would run the batch again). The records stay marked as not sent;
            # dlq.resend sends them later.
            logger.warning(
                "Could not settle the SQS sends of %d dead letters (%s); they stay marked "
                "as not sent.",
                len(self.letters),
                type(exc).__name__,
            )

    def _flush(self) -> None:
        by_domain: dict[str, list[str]] = defaultdict(list)
        for letter, _ in self.letters:
            by_domain[letter.domain_name].append(letter.message_id)
        # Only records that were committed: a savepoint rolled back may have undone some.
        with self._services.read() as tx:
            stored = {
                (domain_name, message_id)
                for domain_name, ids in by_domain.items()
                for message_id in service.awaiting_send(
                    tx, domain_name=domain_name, message_ids=ids
                )
            }
        settle(
            self._services,
            deliver(
                self._services.settings,
                [
                    (letter, queue_url)
                    for letter, queue_url in self.letters
                    if (letter.domain_name, letter.message_id) in stored
                ],
            ),
        )


def _send_after_commit(tx: Tx, letter: DeadLetter, queue_url: str) -> None:
    for action in tx.after_commit_actions:
        if isinstance(action, _SqsOutbox):
            action.letters.append((letter, queue_url))
            return
    outbox = _SqsOutbox(tx.services)
    outbox.letters.append((letter, queue_url))
    tx.after_commit(outbox)


def dead_letter(
    services: Services,
    *,
    domain_name: str,
    object_type_name: str,
    object_json: str,
    reason: str,
    category: str,
    not_retryable: str | None = None,
    origin: str | None = None,
) -> DeadLetter:
    """Dead-letter a rejected record in its own transaction (see `dead_letter_in`); the SQS
    send, when the domain has a queue, has happened when this returns. The letter comes back as
    it was first stored (its sink error is the pending mark, not the send's outcome)."""
    with services.write() as tx:
        return dead_letter_in(
            tx,
            domain_name=domain_name,
            object_type_name=object_type_name,
            object_json=object_json,
            reason=reason,
            category=category,
            not_retryable=not_retryable,
            origin=origin,
        )


def dead_letter_in(
    tx: Tx,
    *,
    domain_name: str,
    object_type_name: str,
    object_json: str,
    reason: str,
    category: str,
    not_retryable: str | None = None,
    origin: str | None = None,
) -> DeadLetter:
    """Dead-letter inside an open transaction: the local record now, marked `SQS_PENDING` when
    the domain has a queue; the SQS send after the transaction commits (none if it rolls back).
    `not_retryable` says why a retry cannot ingest the letter, when it cannot; `origin` names
    where the record came from ("Flow crm"), first in the letter's reason and in the reason of
    a retry that fails again (dlq.service).
    """
    if origin is not None:
        # The same record from the same place (a file or flow item read again): one letter.
        again = service.attempt_again(
            tx,
            domain_name=domain_name,
            object_type_name=object_type_name,
            object_json=object_json,
            reason=reason,
            category=category,
            not_retryable=not_retryable,
            origin=origin,
        )
        if again is not None:
            return again
    queue_url = get_domain(tx, domain_name=domain_name).dead_letter_queue_url
    letter = DeadLetter(
        message_id=service.new_message_id(),
        domain_name=domain_name,
        object_type_name=object_type_name,
        object_json=object_json,
        reason=service.origin_reason(origin, reason),
        category=category,
        attempts=1,
        created_at=tx.now,
        last_attempt_at=tx.now,
        sink_error=service.SQS_PENDING if queue_url else service.NO_QUEUE,
        not_retryable=not_retryable,
        origin=origin,
    )
    LocalStoreSink(tx).send(letter)
    if queue_url:
        _send_after_commit(tx, letter, queue_url)
    return letter
