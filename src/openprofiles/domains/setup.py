"""Setting a domain up: obtaining its data key (shared by the CreateDomain/UpdateDomain API and
the "Enable customer profiles" pages) and checking a dead-letter queue before it is configured.

Obtaining a key may call KMS, so it happens before the write transaction that stores the domain.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from openprofiles.arns import domain_arn
from openprofiles.context import Services
from openprofiles.crypto.errors import KeyUnusable
from openprofiles.dlq.queue_urls import aws_queue_region, queue_target
from openprofiles.errors import BadRequest
from openprofiles.settings import Settings

# https://sqs.REGION.amazonaws.com/ACCOUNT/NAME (also the legacy REGION.queue.amazonaws.com).
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}(\.fifo)?$")


def new_domain_key(services: Services, domain_name: str, key_id: str | None) -> tuple[str, bytes]:
    """A data key for the domain under `key_id` (the server default when None), proven usable.

    Returns (the key id it is wrapped under, the wrapped data key); BadRequest when the key
    cannot be used, with the provider's explanation of what to do.
    """
    with key_refusal("DefaultEncryptionKey"):
        wrapped = services.keys.new_domain_key(domain_name, key_id)
    return wrapped.key_id, wrapped.wrapped


def check_encryption_key(services: Services, domain_name: str, key_id: str, member: str) -> None:
    """BadRequest, as for a domain's DefaultEncryptionKey, unless `key_id` could protect the
    domain's data (the same resolver and proof: a data key generated and unwrapped again).
    For a key given where it is kept but seals nothing (PutProfileObjectType's EncryptionKey):
    a key the domain itself would refuse must not be accepted there either."""
    with key_refusal(member):
        services.keys.check_key(domain_name, key_id)


@contextmanager
def key_refusal(member: str) -> Iterator[None]:
    """A key that cannot be used, as the request's error: BadRequest naming the member, with
    the key provider's explanation of what to do for the operator (the CLI, the pages, the
    logs) and what is wrong with the key for an API caller (no server path or command)."""
    try:
        yield
    except KeyUnusable as exc:
        raise BadRequest(
            f"{member} cannot be used: {exc.message}",
            caller_message=f"{member} cannot be used: {exc.caller_message}",
        ) from exc


@dataclass(frozen=True)
class QueueRef:
    url: str
    region: str
    account_id: str
    name: str

    @property
    def arn(self) -> str:
        return f"arn:aws:sqs:{self.region}:{self.account_id}:{self.name}"


def parse_queue_url(settings: Settings, url: str) -> QueueRef:
    """The queue an SQS queue URL names; BadRequest when the URL is not one.

    A queue of a local SQS-compatible endpoint (http://host:port/ACCOUNT/NAME) is read as
    being in the server's region.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise BadRequest(
            "The dead-letter queue URL must be an SQS queue URL such as "
            "https://sqs.us-east-1.amazonaws.com/123456789012/my-queue."
        )
    path = [p for p in parts.path.split("/") if p]
    if len(path) != 2 or not path[0].isdigit() or not _QUEUE_NAME.match(path[1]):
        raise BadRequest(
            "The dead-letter queue URL must end with /ACCOUNT-ID/QUEUE-NAME, as in "
            "https://sqs.us-east-1.amazonaws.com/123456789012/my-queue."
        )
    if path[1].endswith(".fifo"):
        # A FIFO queue takes only messages with a MessageGroupId; dead letters have no order
        # to keep, so they are sent without one, and every send would be refused.
        raise BadRequest(
            f"The dead-letter queue {path[1]} is a FIFO queue; use a standard queue: dead "
            "letters are sent without a message group."
        )
    region = aws_queue_region(url) or settings.region
    return QueueRef(url=url.strip(), region=region, account_id=path[0], name=path[1])


def queue_policy_statement(settings: Settings, queue: QueueRef, domain_name: str) -> str:
    """The statement the queue's resource policy needs so the service may send to it (§6.1)."""
    statement: dict[str, Any] = {
        "Sid": "Customer Profiles SQS policy",
        "Effect": "Allow",
        "Principal": {"Service": "profile.amazonaws.com"},
        "Action": ["sqs:SendMessage"],
        "Resource": queue.arn,
        "Condition": {
            "StringEquals": {"aws:SourceAccount": settings.account_id},
            "ArnEquals": {"aws:SourceArn": domain_arn(settings, domain_name or "DOMAIN-NAME")},
        },
    }
    return json.dumps(statement, indent=2)


def check_queue_reachable(settings: Settings, queue: QueueRef) -> None:
    """BadRequest unless the queue answers GetQueueAttributes (it exists and we may use it)."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    endpoint, region = queue_target(settings, queue.url)
    client = boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name=region,
        config=Config(connect_timeout=3, read_timeout=5, retries={"max_attempts": 1}),
    )
    try:
        client.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["QueueArn"])
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise BadRequest(
            f"The queue {queue.url} answered {code}: check that it exists and that the "
            "credentials OpenProfiles runs with may use it (sqs:GetQueueAttributes, "
            "sqs:SendMessage)."
        ) from exc
    except BotoCoreError as exc:
        raise BadRequest(
            f"The queue {queue.url} cannot be reached ({exc}); check the URL, the network and "
            "the credentials OpenProfiles runs with."
        ) from exc
