"""Where dead letters go: the `DeadLetterSink` seam, the local store (always) and SQS (when the
domain has a DeadLetterQueueUrl).

The SQS message mirrors what AWS's own consumers expect (spec §6.1): the body is the submitted
object JSON, and String message attributes `Message` (the reason), `DomainName` and
`ObjectTypeName`. A failure to reach SQS never loses the record: it is kept in the local store
with the failure noted, and can be replayed from there.

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
# SendMessageBatch takes up to 10 messages; their total size is capped too. 256 KiB is the
# smallest cap among SQS (1 MiB since 2025) and the SQS-compatible queues.
SQS_BATCH_ENTRIES = 10
SQS_BATCH_BYTES = 256 * 1024

logger = logging.getLogger(__name__)


class SinkError(Exception):
    """A sink could not take a message; `message` says why (no personal data). `unreachable`
    when the endpoint did not answer at all (rather than refusing the message)."""

    # logging_setup prints the message with the exception.
    message_has_no_personal_data = True

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
        )


class SqsSink:
    """An SQS (or SQS-compatible) queue, addressed by its URL."""

    def __init__(self, settings: Settings, queue_url: str, client: Any | None = None) -> None:
        self.queue_url = queue_url
        self._client = client or sqs_client(settings)

    def send(self, letter: DeadLetter) -> None:
        self._send(letter.object_json, _attributes(letter))

    def send_batch(self, letters: Sequence[DeadLetter]) -> dict[int, str]:
        """Send up to `SQS_BATCH_ENTRIES` letters in one request; returns why, for the ones the
        queue refused (by their index in `letters`). SinkError when the request as a whole
        failed (none was sent)."""
        with self._translated_errors():
            response = self._client.send_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {
                        # Entry ids only need to be unique within the request.
                        "Id": str(index),
                        "MessageBody": letter.object_json,
                        "MessageAttributes": _message_attributes(_attributes(letter)),
                    }
                    for index, letter in enumerate(letters)
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
    # SQS refuses an attribute with an empty value.
    return {
        name: {"DataType": "String", "StringValue": value}
        for name, value in attributes.items()
        if value
    }


def _size(letter: DeadLetter) -> int:
    """What the message counts towards SQS's size caps: body, attribute names, types, values."""
    return len(letter.object_json.encode()) + sum(
        len(name) + len("String") + len(value.encode())
        for name, value in _attributes(letter).items()
    )


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
    """What became of some letters' SQS sends, by domain: the message ids sent, and the ids
    not sent by why."""

    sent: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
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
            refused: dict[int, str]
            error = unreachable.get(queue_url)
            if error is not None:
                refused = dict.fromkeys(range(len(batch)), error)
            else:
                try:
                    refused = sink.send_batch(batch)
                except SinkError as exc:
                    refused = dict.fromkeys(range(len(batch)), exc.message)
                    if exc.unreachable:
                        unreachable[queue_url] = exc.message
            for index, letter in enumerate(batch):
                if index in refused:
                    delivery.failed[letter.domain_name][refused[index]].append(letter.message_id)
                else:
                    delivery.sent[letter.domain_name].append(letter.message_id)
    return delivery


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
        )


def dead_letter_in(
    tx: Tx,
    *,
    domain_name: str,
    object_type_name: str,
    object_json: str,
    reason: str,
    category: str,
) -> DeadLetter:
    """Dead-letter inside an open transaction: the local record now, marked `SQS_PENDING` when
    the domain has a queue; the SQS send after the transaction commits (none if it rolls back).
    """
    queue_url = get_domain(tx, domain_name=domain_name).dead_letter_queue_url
    letter = DeadLetter(
        message_id=service.new_message_id(),
        domain_name=domain_name,
        object_type_name=object_type_name,
        object_json=object_json,
        reason=reason,
        category=category,
        attempts=1,
        created_at=tx.now,
        last_attempt_at=tx.now,
        sink_error=service.SQS_PENDING if queue_url else service.NO_QUEUE,
    )
    LocalStoreSink(tx).send(letter)
    if queue_url:
        _send_after_commit(tx, letter, queue_url)
    return letter
