"""Where dead letters go: the `DeadLetterSink` seam, the local store (always) and SQS (when the
domain has a DeadLetterQueueUrl).

The SQS message mirrors what AWS's own consumers expect (spec §6.1): the body is the submitted
object JSON, and String message attributes `Message` (the reason), `DomainName` and
`ObjectTypeName`. A failure to reach SQS never loses the record: it is kept in the local store
with the failure noted, and can be replayed from there.
"""

from __future__ import annotations

import functools
import json
from dataclasses import replace
from typing import Any, Protocol

from openprofiles.context import Services, Tx
from openprofiles.dlq import service
from openprofiles.dlq.models import DeadLetter
from openprofiles.domains.service import get_domain
from openprofiles.settings import Settings

TEST_MESSAGE = "OpenProfiles dead-letter queue test message"


class SinkError(Exception):
    """A sink could not take a message; `message` says why (no personal data)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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
        self._send(
            letter.object_json,
            {
                "Message": letter.reason,
                "DomainName": letter.domain_name,
                "ObjectTypeName": letter.object_type_name,
            },
        )

    def check(self, domain_name: str) -> None:
        """Send a test message, as Customer Profiles does on CreateDomain (spec §6.1)."""
        self._send(
            json.dumps({"test": TEST_MESSAGE}),
            {"Message": TEST_MESSAGE, "DomainName": domain_name},
        )

    def _send(self, body: str, attributes: dict[str, str]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.send_message(
                QueueUrl=self.queue_url,
                MessageBody=body,
                MessageAttributes={
                    name: {"DataType": "String", "StringValue": value}
                    for name, value in attributes.items()
                    if value
                },
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise SinkError(
                f"SQS refused the message for {self.queue_url}: "
                f"{error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")
            ) from exc
        except BotoCoreError as exc:
            raise SinkError(f"SQS could not be reached at {self.queue_url}: {exc}") from exc


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
        config=Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=10),
    )


def check_queue(settings: Settings, queue_url: str, domain_name: str) -> None:
    """SinkError unless a test message can be written to the queue."""
    SqsSink(settings, queue_url).check(domain_name)


def forward(letter: DeadLetter, queue_url: str | None, settings: Settings) -> DeadLetter:
    """Send to the domain's SQS queue when it has one; the letter comes back with the failure
    noted when the send failed. Never raises for a sink failure."""
    if not queue_url:
        return letter
    try:
        SqsSink(settings, queue_url).send(letter)
    except SinkError as exc:
        return replace(letter, sink_error=exc.message)
    return letter


def dead_letter(
    services: Services,
    *,
    domain_name: str,
    object_type_name: str,
    object_json: str,
    reason: str,
    category: str,
) -> DeadLetter:
    """Dead-letter a rejected record in its own transaction: SQS first (outside any database
    transaction: it is a network call), then the local store, always."""
    with services.read() as tx:
        queue_url = get_domain(tx, domain_name=domain_name).dead_letter_queue_url
        now = tx.now
    letter = DeadLetter(
        message_id=service.new_message_id(),
        domain_name=domain_name,
        object_type_name=object_type_name,
        object_json=object_json,
        reason=reason,
        category=category,
        attempts=1,
        created_at=now,
        last_attempt_at=now,
    )
    letter = forward(letter, queue_url, services.settings)
    with services.write() as tx:
        LocalStoreSink(tx).send(letter)
    return letter


def dead_letter_in(
    tx: Tx,
    *,
    domain_name: str,
    object_type_name: str,
    object_json: str,
    reason: str,
    category: str,
) -> DeadLetter:
    """Dead-letter inside an open transaction (bulk ingestion's batches)."""
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
    )
    queue_url = get_domain(tx, domain_name=domain_name).dead_letter_queue_url
    letter = forward(letter, queue_url, tx.settings)
    LocalStoreSink(tx).send(letter)
    return letter
