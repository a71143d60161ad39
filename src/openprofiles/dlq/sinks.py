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

A queue's own MaximumMessageSize (1 KiB to 1 MiB) may be below those caps. It is read
(GetQueueAttributes, `_QueueLimits`) when the queue first refuses a send, and from then on caps
that queue's batches and messages: a letter over it goes with the note up front. A batch the
queue refuses as a whole is sent again one letter at a time, so that one letter the queue will
not take does not keep its batch mates out of the queue at every resend.

The local record is written in the caller's transaction; the SQS send waits until that
transaction has committed (`Tx.after_commit`), so a slow or unreachable queue never holds a
transaction open — on SQLite that would stall every write of the server — and a rolled-back
transaction sends nothing. Sends go in SendMessageBatch requests of up to 10 messages
(`deliver`), the one way letters reach SQS, also when dlq.resend sends them again.

The send after a commit runs in the thread that ingested (a Kinesis poll, POST
/contact-records, PutProfileObject), so it must not hold ingestion up: one attempt per request
with short timeouts, and an endpoint that did not answer (`_EndpointHealth`) is not tried by it
again for `SQS_ENDPOINT_DOWN_SECONDS` — its letters are marked failed at once, still kept, and
dlq.resend (which tries every endpoint once per run, and so finds it back) sends them. A slow
endpoint that does answer is bounded too: one send after a commit may make many requests (a
batch per 10 letters; for a batch refused whole, the queue's size read and each letter alone,
some again with the note), and starts none once `SEND_AFTER_COMMIT_SECONDS` have passed
(`Deadline`): the letters not tried are marked pending again, for dlq.resend.

The send after a commit claims its records first (`service.claim_pending`), as dlq.resend does:
neither sends a record the other holds, so a slow send after a commit and a resend never put one
letter in the queue twice. Its outcome lands only on the records it still holds (`settle`).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy.exc import SQLAlchemyError

from openprofiles.context import Services, Tx
from openprofiles.dlq import service
from openprofiles.dlq.models import DeadLetter
from openprofiles.dlq.queue_urls import queue_target
from openprofiles.domains.service import get_domain
from openprofiles.errors import ServiceError
from openprofiles.log_limits import RepeatedLines
from openprofiles.metrics.events import count_queue_sends
from openprofiles.settings import Settings

TEST_MESSAGE = "OpenProfiles dead-letter queue test message"
# Bounds on one SQS call, made once (no retry: what fails is sent again by dlq.resend, and a
# retry would only hold the caller longer). The send after a commit runs in the thread that
# ingested: an endpoint that accepts connections and never answers costs it these, once
# (`_EndpointHealth`), not botocore's 60 s each. SQS answers a send in milliseconds.
SQS_CONNECT_TIMEOUT_SECONDS = 3
SQS_READ_TIMEOUT_SECONDS = 5
# How long the send after a commit leaves an endpoint that did not answer alone (dlq.resend's
# default interval: it tries the endpoint at each run, and marks it up when it answers).
SQS_ENDPOINT_DOWN_SECONDS = 300
# How long the send after a commit may go on starting SQS requests (a request started just
# before may still take the timeouts above): about 30 s at most in all, far within the claim's
# expiry (dlq.resend.CLAIM_EXPIRY_SECONDS). The letters not tried by then wait for dlq.resend.
SEND_AFTER_COMMIT_SECONDS = 20
# How long a queue's MaximumMessageSize, once read, is trusted (an administrator may change it).
QUEUE_LIMIT_CACHE_SECONDS = 600
# SendMessageBatch takes up to 10 messages; their total size is capped too, as is one message's
# (body and attributes). 256 KiB is the smallest cap among SQS (1 MiB since 2025; a queue's
# MaximumMessageSize may be lower) and the SQS-compatible queues; no queue takes over 1 MiB.
SQS_BATCH_ENTRIES = 10
SQS_BATCH_BYTES = 256 * 1024
SQS_MAX_MESSAGE_BYTES = 1024 * 1024
# What a message body may not hold: anything outside #x9, #xA, #xD, #x20-#xD7FF, #xE000-#xFFFD
# and #x10000-#x10FFFF (SendMessage's documented character set), lone surrogates included.
_NOT_SQS_TEXT = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# Error codes that refuse a request for the queue or the caller, whatever its messages hold:
# sending its letters one by one, or reading the queue's size, would be refused the same way.
_QUEUE_WIDE_ERRORS = re.compile(
    "NonExistentQueue|QueueDoesNotExist|QueueDeletedRecently|AccessDenied|Throttl|OverLimit|Kms"
    "|InvalidClientTokenId|UnrecognizedClient|SignatureDoesNotMatch|InvalidSecurity|Expired"
    "|InternalError|InternalFailure|ServiceUnavailable"
)

logger = logging.getLogger(__name__)


class SinkError(Exception):
    """A sink could not take a message; `message` says why. `unreachable` when the endpoint did
    not answer at all (rather than refusing the message).

    The message quotes the queue's or the network's own error text, which this server does not
    control and which may echo what was sent (the reason quotes a record's value): it is sealed
    where it is stored (dlq.service), and logging_setup withholds it like any other message."""

    def __init__(
        self,
        message: str,
        *,
        unreachable: bool = False,
        code: str | None = None,
        detail: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.unreachable = unreachable
        # The queue's error code, when it refused; the network's error, when unreachable.
        self.code = code
        self.detail = detail

    @property
    def queue_wide(self) -> bool:
        """Whether the refusal is of the queue or the caller, not of what the messages hold
        (so also when SQS was not called at all)."""
        return self.code is None or bool(_QUEUE_WIDE_ERRORS.search(self.code))


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
        self._client = client or sqs_client(settings, queue_url)

    def send(self, letter: DeadLetter) -> None:
        self._send(*_message(letter))

    @property
    def endpoint(self) -> str:
        """Where the client sends its requests (whatever host the queue URL names)."""
        return str(self._client.meta.endpoint_url)

    def send_batch(
        self,
        letters: Sequence[DeadLetter],
        *,
        omitted: Mapping[int, str] | None = None,
        limit: int | None = None,
    ) -> dict[int, SinkError]:
        """Send up to `SQS_BATCH_ENTRIES` letters in one request (a note in place of the objects
        of those in `omitted`, by index, saying why; and of those over `limit`, the queue's
        MaximumMessageSize); returns why, for the ones the queue refused (by their index in
        `letters`). SinkError when the request as a whole failed (none was sent)."""
        omitted = omitted or {}
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
                        _message(letter, omitted.get(index), limit)
                        for index, letter in enumerate(letters)
                    )
                ],
            )
        refused = {
            int(entry["Id"]): SinkError(self._refused(entry), code=entry.get("Code"))
            for entry in response.get("Failed", [])
        }
        answered = set(refused) | {int(entry["Id"]) for entry in response.get("Successful", [])}
        for index in range(len(letters)):
            if index not in answered:
                refused[index] = SinkError(
                    f"SQS did not say whether it took the message ({self.queue_url})"
                )
        return refused

    def maximum_message_size(self) -> int | None:
        """The queue's MaximumMessageSize; None when it would not say (a queue policy may allow
        sqs:SendMessage only). SinkError when the endpoint did not answer."""
        try:
            with self._translated_errors():
                answer = self._client.get_queue_attributes(
                    QueueUrl=self.queue_url, AttributeNames=["MaximumMessageSize"]
                )
        except SinkError as exc:
            if exc.unreachable:
                raise
            return None
        try:
            return int(answer["Attributes"]["MaximumMessageSize"])
        except (KeyError, TypeError, ValueError):
            return None

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
        from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
        from botocore.exceptions import ConnectionError as EndpointNotAnswering

        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise SinkError(self._refused(error), code=error.get("Code") or "error") from exc
        except (EndpointNotAnswering, HTTPClientError) as exc:
            # Refused or timed-out connection, read timeout, connection dropped.
            raise SinkError(
                f"SQS could not be reached at {self.queue_url}: {exc}",
                unreachable=True,
                detail=str(exc),
            ) from exc
        except BotoCoreError as exc:
            # Not sent at all (no credentials, say): the endpoint was not tried.
            raise SinkError(f"SQS could not be called for {self.queue_url}: {exc}") from exc

    def _refused(self, error: dict[str, Any]) -> str:
        """Why the queue refused, from an error (or a failed batch entry): its code and message."""
        return (
            f"SQS refused the message for {self.queue_url}: "
            f"{error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")
        )


def _attributes(letter: DeadLetter) -> dict[str, str]:
    """The message attributes of a dead letter (spec §6.1), and `DeadLetterMessageId`, as they
    are sent: a character SQS refuses already replaced (`_message_attributes`), so that what is
    measured against the queue's size is what goes (U+FFFD takes three bytes where a control
    character took one).

    Delivery is at least once: a send whose answer never came (a read timeout, the server
    killed between SQS's receipt and the mark) is sent again by dlq.resend, as the message may
    not have arrived. The dead letter's id lets the queue's consumer drop a repeat."""
    return {
        name: _NOT_SQS_TEXT.sub("\ufffd", value)
        for name, value in (
            ("Message", letter.reason),
            ("DomainName", letter.domain_name),
            ("ObjectTypeName", letter.object_type_name),
            ("DeadLetterMessageId", letter.message_id),
        )
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


def _omitted_object(letter: DeadLetter, limit: int | None = None) -> str | None:
    """Why the letter's object can never be the body of its SQS message, when it cannot: SQS
    refuses an empty body, a message over every queue's cap or over `limit` (its queue's
    MaximumMessageSize, when known), and characters outside its set."""
    if not letter.object_json:
        return "the object is empty"
    size = _message_size(letter.object_json, _attributes(letter))
    if size > SQS_MAX_MESSAGE_BYTES:
        return (
            f"with it the message would be {size} bytes, over the {SQS_MAX_MESSAGE_BYTES} an "
            "SQS message may hold"
        )
    if limit is not None and size > limit:
        return (
            f"with it the message would be {size} bytes, over the {limit} its queue takes "
            "(the queue's MaximumMessageSize)"
        )
    if _NOT_SQS_TEXT.search(letter.object_json):
        return "the object holds characters an SQS message cannot carry"
    return None


def _message(
    letter: DeadLetter, omitted: str | None = None, limit: int | None = None
) -> tuple[str, dict[str, str]]:
    """The body and attributes of the letter's SQS message: its object, or a note in its place
    saying `omitted` or why SQS can never take it (see the module docstring)."""
    attributes = _attributes(letter)
    why = omitted or _omitted_object(letter, limit)
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
    noted = {**attributes, "ObjectOmitted": note}
    if limit is not None and _message_size(body, noted) > limit:
        # A small queue (MaximumMessageSize down to 1 KiB) may refuse even the note, at every
        # resend: the letter would never reach it. A shorter note, and the reason cut to what
        # fits — the whole of both stays in the local store, which the note points to.
        return _compact_note(letter, attributes, where, limit)
    return body, noted


def _compact_note(
    letter: DeadLetter, attributes: dict[str, str], where: str, limit: int
) -> tuple[str, dict[str, str]]:
    """The note within `limit` bytes: why left out, and the reason (`Message`) cut to fit."""
    note = f"The object was not sent. OpenProfiles keeps it in {where}."
    body = json.dumps({"ObjectOmitted": note, "DeadLetterMessageId": letter.message_id})
    noted = {**attributes, "ObjectOmitted": note}
    over = _message_size(body, noted) - limit
    if over > 0:
        reason = noted["Message"].encode("utf-8", "surrogatepass")
        cut = "\u2026"  # SQS refuses an empty attribute value: at least the ellipsis goes
        keep = max(0, len(reason) - over - len(cut.encode()))
        noted["Message"] = reason[:keep].decode("utf-8", "ignore") + cut
    return body, noted


def _message_size(body: str, attributes: dict[str, str]) -> int:
    """What a message counts towards SQS's size caps: body, attribute names, types, values."""
    return len(body.encode("utf-8", "surrogatepass")) + sum(
        len(name) + len("String") + len(value.encode("utf-8", "surrogatepass"))
        for name, value in attributes.items()
    )


def _size(letter: DeadLetter, limit: int | None = None) -> int:
    return _message_size(*_message(letter, None, limit))


def _batch_length(letters: Sequence[DeadLetter], limit: int | None = None) -> int:
    """How many of the letters, from the first, go in the next batch: up to SQS_BATCH_ENTRIES,
    within the size cap — SQS_BATCH_BYTES, or the queue's MaximumMessageSize `limit` when lower
    (SQS may hold a batch's total to it) — a letter over it alone."""
    cap = min(SQS_BATCH_BYTES, limit or SQS_BATCH_BYTES)
    size = 0
    for count, letter in enumerate(letters[:SQS_BATCH_ENTRIES]):
        size += _size(letter, limit)
        if count and size > cap:
            return count
    return min(len(letters), SQS_BATCH_ENTRIES)


def sqs_client(settings: Settings, queue_url: str | None = None) -> Any:
    """A boto3 SQS client for the queue's endpoint and region (dlq.queue_urls: an AWS queue in
    its own region), or, without a queue, the settings' (shared: clients are thread-safe, and
    making one costs more than sending a message)."""
    if queue_url is not None:
        return _sqs_client(*queue_target(settings, queue_url))
    return _sqs_client(settings.sqs_endpoint_url, settings.aws_region or settings.region)


def sqs_endpoint(settings: Settings, queue_url: str) -> str:
    """The endpoint the requests about the queue go to."""
    return str(sqs_client(settings, queue_url).meta.endpoint_url)


@functools.lru_cache(maxsize=8)
def _sqs_client(endpoint_url: str | None, region: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "sqs",
        endpoint_url=endpoint_url,
        region_name=region,
        config=Config(
            retries={"mode": "standard", "total_max_attempts": 1},
            connect_timeout=SQS_CONNECT_TIMEOUT_SECONDS,
            read_timeout=SQS_READ_TIMEOUT_SECONDS,
        ),
    )


def check_queue(settings: Settings, queue_url: str, domain_name: str) -> None:
    """SinkError unless a test message can be written to the queue."""
    SqsSink(settings, queue_url).check(domain_name)


class _EndpointHealth:
    """The SQS endpoints this process saw not answering (a refused or timed-out connection, a
    read timeout), and since when. The send after a commit leaves such an endpoint alone for
    `SQS_ENDPOINT_DOWN_SECONDS`, so that it costs one caller the client's timeouts, not every
    ingest call. Then the first send to ask tries it again (the others still see it down until
    that try ends); a send it answers — or dlq.resend's, which tries it at every run — marks it
    up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Endpoint → (monotonic time until which it is left alone, why it is down).
        self._down: dict[str, tuple[float, str]] = {}

    def down(self, endpoint: str) -> str | None:
        """Why the endpoint is not to be tried now; None when it is to be tried."""
        with self._lock:
            entry = self._down.get(endpoint)
            if entry is None:
                return None
            until, why = entry
            now = time.monotonic()
            if now < until:
                return why
            # This caller tries it; the others wait for its outcome (`failed`, `answered`).
            self._down[endpoint] = (now + SQS_ENDPOINT_DOWN_SECONDS, why)
            return None

    def failed(self, endpoint: str, why: str) -> None:
        with self._lock:
            self._down[endpoint] = (time.monotonic() + SQS_ENDPOINT_DOWN_SECONDS, why)

    def answered(self, endpoint: str) -> None:
        with self._lock:
            self._down.pop(endpoint, None)


_ENDPOINTS = _EndpointHealth()


class _QueueLimits:
    """Queues' MaximumMessageSize by URL, read once a queue refused a send (none is read while
    every send gets through) and trusted for `QUEUE_LIMIT_CACHE_SECONDS`; None for a queue that
    would not say, whose sends keep SQS's own caps."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Queue URL → (monotonic time until which it holds, the size or None).
        self._limits: dict[str, tuple[float, int | None]] = {}

    def known(self, queue_url: str) -> tuple[bool, int | None]:
        """Whether the queue's size is known now, and what it is."""
        with self._lock:
            until, limit = self._limits.get(queue_url, (0.0, None))
        return time.monotonic() < until, limit

    def read(self, sink: SqsSink) -> int | None:
        """The queue's size, asked of SQS unless known (SinkError when it did not answer)."""
        fresh, limit = self.known(sink.queue_url)
        if fresh:
            return limit
        limit = sink.maximum_message_size()
        with self._lock:
            self._limits[sink.queue_url] = (time.monotonic() + QUEUE_LIMIT_CACHE_SECONDS, limit)
        return limit


_LIMITS = _QueueLimits()


@dataclass(frozen=True)
class Deadline:
    """A time after which a delivery starts no SQS request, read on `clock` (seconds, as
    time.monotonic counts them)."""

    until: float
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def after(cls, seconds: float, clock: Callable[[], float] = time.monotonic) -> Deadline:
        return cls(clock() + seconds, clock)

    def passed(self) -> bool:
        return self.clock() >= self.until


@dataclass
class Delivery:
    """What became of some letters' SQS sends, by domain: the message ids sent, those of them
    sent with a note in place of their object (message id → why), the ids not sent by why, and
    those not tried, the deadline passed."""

    sent: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    without_object: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    failed: dict[str, dict[str, list[str]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    left: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    # Why sends failed, by domain, in words fit for the operator's log (`_log_failed_sends`):
    # the endpoint or the queue's error code, never the error's own text, which may quote
    # what was sent (SinkError).
    failed_as_logged: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))


def deliver(
    settings: Settings,
    letters: Sequence[tuple[DeadLetter, str]],
    unreachable: dict[str, str] | None = None,
    deadline: Deadline | None = None,
) -> Delivery:
    """Send letters to their queue URLs in batches; none once `deadline` has passed (they are
    `left`).

    The send after a commit passes no `unreachable`: an endpoint the process saw not answering
    lately (`_EndpointHealth`) is not tried, its letters failed at once. A resend passes its
    run's `unreachable` (endpoint → why): it tries every endpoint once per run whatever the
    process saw, and an endpoint that did not answer no more in that run (each try may cost
    the client's timeouts)."""
    by_queue: dict[str, list[DeadLetter]] = defaultdict(list)
    for letter, queue_url in letters:
        by_queue[queue_url].append(letter)
    delivery = Delivery()
    for queue_url, queued in by_queue.items():
        _ToQueue(SqsSink(settings, queue_url), delivery, unreachable, deadline).send(queued)
    count_queue_sends(
        sent=sum(map(len, delivery.sent.values())),
        failed=sum(len(ids) for by_why in delivery.failed.values() for ids in by_why.values()),
    )
    return delivery


class _ToQueue:
    """The sends of one `deliver` call to one queue, their outcomes noted in `delivery`."""

    def __init__(
        self,
        sink: SqsSink,
        delivery: Delivery,
        unreachable: dict[str, str] | None,
        deadline: Deadline | None,
    ) -> None:
        self._sink = sink
        self._delivery = delivery
        self._run = unreachable
        self._deadline = deadline
        fresh, limit = _LIMITS.known(sink.queue_url)
        self._limit = limit if fresh else None

    def send(self, letters: Sequence[DeadLetter]) -> None:
        while letters:
            # Batch by batch: a size learnt from a refusal caps the batches after it.
            length = _batch_length(letters, self._limit)
            self._send(letters[:length])
            letters = letters[length:]

    def _send(self, batch: Sequence[DeadLetter], note: str | None = None) -> None:
        """Send the batch (with a note saying `note` in place of its one letter's object, when
        given), and what it refused again in another form when that may get through."""
        if self._out_of_time():
            for letter in batch:
                self._delivery.left[letter.domain_name].append(letter.message_id)
            return
        down = self._down()
        if down is not None:
            self._failed(batch, down, self._unreachable_words())
            return
        omitted = {
            index: why
            for index, letter in enumerate(batch)
            if (why := note or _omitted_object(letter, self._limit))
        }
        try:
            refused = self._sink.send_batch(batch, omitted=omitted, limit=self._limit)
        except SinkError as exc:
            if exc.unreachable:
                self._not_answering(exc)
                self._failed(batch, exc.message, self._unreachable_words())
                return
            _ENDPOINTS.answered(self._sink.endpoint)
            if len(batch) > 1 and not exc.queue_wide:
                # One letter the queue will not take (over its MaximumMessageSize, say) fails
                # the whole request, and would at every resend: one by one, the others get
                # through.
                self._learn_limit()
                for letter in batch:
                    self._send([letter])
                return
            refused = dict.fromkeys(range(len(batch)), exc)
        else:
            _ENDPOINTS.answered(self._sink.endpoint)
        for index, letter in enumerate(batch):
            error = refused.get(index)
            if error is None:
                self._delivery.sent[letter.domain_name].append(letter.message_id)
                if index in omitted:
                    self._delivery.without_object[letter.domain_name][letter.message_id] = omitted[
                        index
                    ]
            elif index not in omitted and self._too_large(letter, error):
                # The queue may well have refused it for its size, and would at every resend:
                # the note goes instead. If the queue refuses that too, the letter was not sent.
                self._send([letter], f"the queue refused the message with it ({error.message})")
            else:
                self._failed([letter], error.message, _refusal_words(error))

    def _too_large(self, letter: DeadLetter, error: SinkError) -> bool:
        """Whether a letter the queue refused is over its size: its MaximumMessageSize, or,
        when the queue would not say, the cap of many queues (SQS_BATCH_BYTES)."""
        if error.queue_wide:
            return False
        self._learn_limit()
        return _size(letter) > (self._limit or SQS_BATCH_BYTES)

    def _learn_limit(self) -> None:
        if self._out_of_time():
            # Not worth the request: the letters after it would not be sent anyway.
            return
        try:
            self._limit = _LIMITS.read(self._sink)
        except SinkError as exc:
            self._not_answering(exc)

    def _out_of_time(self) -> bool:
        return self._deadline is not None and self._deadline.passed()

    def _down(self) -> str | None:
        """Why the queue's endpoint is not to be tried now, in the words of a letter's sink
        error; None when it is to be tried."""
        endpoint = self._sink.endpoint
        detail = _ENDPOINTS.down(endpoint) if self._run is None else self._run.get(endpoint)
        if detail is None:
            return None
        return (
            f"SQS could not be reached at {self._sink.queue_url}: not tried, as its endpoint "
            f"did not answer lately ({detail})"
        )

    def _not_answering(self, exc: SinkError) -> None:
        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        detail = f"{exc.detail}, at {when}"
        _ENDPOINTS.failed(self._sink.endpoint, detail)
        if self._run is not None:
            self._run[self._sink.endpoint] = detail

    def _unreachable_words(self) -> str:
        return f"its endpoint {self._sink.endpoint} did not answer"

    def _failed(self, letters: Sequence[DeadLetter], why: str, as_logged: str) -> None:
        for letter in letters:
            self._delivery.failed[letter.domain_name][why].append(letter.message_id)
            self._delivery.failed_as_logged[letter.domain_name][as_logged] += 1


def _refusal_words(error: SinkError) -> str:
    """A refusal as the operator's log says it: the queue's error code, not its text."""
    return f"SQS refused them ({error.code})" if error.code else "SQS could not be called"


def settle(
    services: Services, delivery: Delivery, *, marked: str = service.SQS_PENDING
) -> dict[str, ServiceError]:
    """Record the outcomes in the local store, on the records still marked `marked` (the mark
    the sender saw, or its claim: a record settled, purged or taken over meanwhile is left as
    it is). Letters `left` (not tried) are marked `SQS_PENDING` again, for dlq.resend.

    Each domain in a transaction of its own. Why a send failed, or why a letter went without
    its object, is sealed with the domain's key. A domain whose key cannot be used now
    (disabled, KMS unreachable) is returned with the error, and what needs no key is recorded
    (`service.settle_unsealed`): every letter delivered — with its object or with the note — is
    marked so, or a resend would send it again (a second message in the queue); the others are
    `SQS_PENDING` again, for a resend."""
    unsettled: dict[str, ServiceError] = {}
    for domain_name in sorted(set(delivery.sent) | set(delivery.failed) | set(delivery.left)):
        sent = delivery.sent.get(domain_name, [])
        without_object = delivery.without_object.get(domain_name, {})
        failed = delivery.failed.get(domain_name, {})
        left = delivery.left.get(domain_name, [])
        try:
            with services.write() as tx:
                service.settle_sends(
                    tx,
                    domain_name=domain_name,
                    sent=sent,
                    failed=failed,
                    without_object=without_object,
                    released=left,
                    marked=marked,
                )
        except ServiceError as exc:
            unsettled[domain_name] = exc
            with services.write() as tx:
                service.settle_unsealed(
                    tx,
                    domain_name=domain_name,
                    sent=sent,
                    without_object=set(without_object),
                    not_sent=[*(m for ids in failed.values() for m in ids), *left],
                    marked=marked,
                )
    return unsettled


class _SqsOutbox:
    """The dead letters of one transaction that wait for their SQS send; registered once per
    transaction with `Tx.after_commit`."""

    # What the send's deadline (`SEND_AFTER_COMMIT_SECONDS`) is measured on; tests set theirs.
    clock: Callable[[], float] = staticmethod(time.monotonic)

    def __init__(self, services: Services) -> None:
        self._services = services
        self.letters: list[tuple[DeadLetter, str]] = []

    def __call__(self) -> None:
        try:
            unsettled = self._flush()
        except (SQLAlchemyError, ServiceError) as exc:
            # The caller's transaction has committed: raising would read as its failure (the
            # Kinesis connector would read its batch again, an HTTP client would retry what was
            # applied, each time with new letters). The records stay marked as not sent;
            # dlq.resend sends them later.
            logger.warning(
                "Could not settle the SQS sends of %d dead letters (%s); they stay marked "
                "as not sent.",
                len(self.letters),
                type(exc).__name__,
            )
            return
        for domain_name, error in unsettled.items():
            # A key unusable since the commit (disabled, KMS out of reach) cannot seal why a
            # send failed or went without its object: the letters delivered are marked so all
            # the same, and the others pending again, for dlq.resend.
            logger.warning(
                "Domain %s: could not record why SQS sends of its dead letters failed or went "
                "without their object (%s); those delivered are marked so, the others stay "
                "marked as not sent.",
                domain_name,
                error.code,
            )

    def _flush(self) -> dict[str, ServiceError]:
        deadline = Deadline.after(SEND_AFTER_COMMIT_SECONDS, self.clock)
        by_domain: dict[str, list[str]] = defaultdict(list)
        for letter, _ in self.letters:
            by_domain[letter.domain_name].append(letter.message_id)
        # Only records that were committed (a savepoint rolled back may have undone some), and
        # not taken by a resend meanwhile (one that committed long ago, say); claimed, so that
        # no resend takes them while they are sent.
        claim = service.sending_mark(datetime.now(UTC))
        with self._services.write() as tx:
            claimed = {
                (domain_name, message_id)
                for domain_name, ids in by_domain.items()
                for message_id in service.claim_pending(
                    tx, domain_name=domain_name, message_ids=ids, claim=claim
                )
            }
        delivery = deliver(
            self._services.settings,
            [
                (letter, queue_url)
                for letter, queue_url in self.letters
                if (letter.domain_name, letter.message_id) in claimed
            ],
            deadline=deadline,
        )
        _log_failed_sends(delivery)
        return settle(self._services, delivery, marked=claim)


def _log_failed_sends(delivery: Delivery) -> None:
    """Say in the operator's log, when it happens, that dead letters could not be sent to their
    domain's queue: else only `dlq list` and the resend task's count minutes later told. Once
    per domain in SEND_FAILURE_LOG_WINDOW_SECONDS (a queue that refuses, or an endpoint that is
    down, meets every batch). It says the endpoint or SQS's error code (`failed_as_logged`),
    never an error's text: SQS's message may quote what was sent (a record's value)."""
    # (A domain is there only once a send of its failed: `_failed` counts it.)
    for domain_name, reasons in delivery.failed_as_logged.items():
        left_out = _failed_send_lines.admit(domain_name)
        if left_out is None:
            continue
        logger.warning(
            "Domain %s: %d dead letters could not be sent to its SQS queue: %s. They are kept, "
            "and sent again by the resend task (openprofiles dlq list --domain %s).%s",
            domain_name,
            sum(reasons.values()),
            "; ".join(reasons),
            domain_name,
            _failed_send_lines.left_out_note(left_out, "batches of dead letters"),
        )


def _report_failed_sends_left_out(domain_name: str, left_out: int) -> None:
    logger.warning(
        "Domain %s: dead letters could not be sent to its SQS queue.%s",
        domain_name,
        _failed_send_lines.left_out_note(left_out, "batches of dead letters"),
    )


# A failed send is logged at most once per domain in this many seconds.
SEND_FAILURE_LOG_WINDOW_SECONDS = 60.0
_failed_send_lines: RepeatedLines[str] = RepeatedLines(
    SEND_FAILURE_LOG_WINDOW_SECONDS, report=_report_failed_sends_left_out
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
    send, when the domain has a queue, has been tried (or not, its endpoint down) when this
    returns. The letter comes back as it was first stored (its sink error is the pending mark,
    not the send's outcome)."""
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
