"""Dead-letter sinks: one contract for the local store and SQS (moto's server mode), the SQS
message format (spec §6.1), and a queue that refuses the message (the record is still kept)."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from tests.support.server import run_server
from tests.unit.ingest.conftest import DOMAIN, crm_type

from openprofiles.context import Services
from openprofiles.dlq import service
from openprofiles.dlq.models import DeadLetter
from openprofiles.dlq.resend import resend_pending
from openprofiles.dlq.sinks import LocalStoreSink, SqsSink, dead_letter
from openprofiles.domains.service import update_domain
from openprofiles.settings import Settings

from .conftest import REGION, receive_all, sqs


def letter(services: Services) -> DeadLetter:
    with services.read() as tx:
        now = tx.now
    return DeadLetter(
        message_id=uuid.uuid4().hex,
        domain_name=DOMAIN,
        object_type_name="Crm",
        object_json=json.dumps({"id": "1", "email": "a@x.com"}),
        reason="No profile matched.",
        category="no_profile",
        attempts=1,
        created_at=now,
        last_attempt_at=now,
    )


# ---------------------------------------------------------------------------- the contract


def local_roundtrip(services: Services, moto_url: str) -> Callable[[DeadLetter], dict[str, str]]:
    def run(sent: DeadLetter) -> dict[str, str]:
        with services.write() as tx:
            LocalStoreSink(tx).send(sent)
        with services.read() as tx:
            got = service.get(tx, domain_name=DOMAIN, message_id=sent.message_id)
        return {
            "object": got.object_json,
            "reason": got.reason,
            "domain": got.domain_name,
            "type": got.object_type_name,
        }

    return run


def sqs_roundtrip(services: Services, moto_url: str) -> Callable[[DeadLetter], dict[str, str]]:
    client = sqs(moto_url)
    url = client.create_queue(QueueName=f"dlq-{uuid.uuid4().hex[:8]}")["QueueUrl"]

    def run(sent: DeadLetter) -> dict[str, str]:
        SqsSink(services.settings, url).send(sent)
        (message,) = receive_all(client, url)
        attributes = message["MessageAttributes"]
        assert {a["DataType"] for a in attributes.values()} == {"String"}
        return {
            "object": message["Body"],
            "reason": attributes["Message"]["StringValue"],
            "domain": attributes["DomainName"]["StringValue"],
            "type": attributes["ObjectTypeName"]["StringValue"],
        }

    return run


@pytest.mark.moto
@pytest.mark.parametrize("make_sink", [local_roundtrip, sqs_roundtrip], ids=["local", "sqs"])
def test_sink_contract(moto_services: Services, moto_url: str, make_sink: Any) -> None:
    sent = letter(moto_services)
    assert make_sink(moto_services, moto_url)(sent) == {
        "object": sent.object_json,
        "reason": sent.reason,
        "domain": DOMAIN,
        "type": "Crm",
    }


# ---------------------------------------------------------------------------- forwarding


@pytest.mark.moto
def test_rejected_record_goes_to_sqs_and_the_local_store(
    moto_services: Services, moto_url: str
) -> None:
    client = sqs(moto_url)
    url = client.create_queue(QueueName=f"dlq-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    with moto_services.write() as tx:
        update_domain(tx, domain_name=DOMAIN, changes={"DeadLetterQueueUrl": url})
    sent = dead_letter(
        moto_services,
        domain_name=DOMAIN,
        object_type_name="Crm",
        object_json='{"id": "1"}',
        reason="No profile matched.",
        category="no_profile",
    )
    (message,) = receive_all(client, url)
    assert message["Body"] == '{"id": "1"}'
    # Delivery is at least once: the dead letter's id lets the consumer drop a repeat.
    attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    assert attributes == {
        "Message": "No profile matched.",
        "DomainName": DOMAIN,
        "ObjectTypeName": "Crm",
        "DeadLetterMessageId": sent.message_id,
    }
    with moto_services.read() as tx:
        kept = service.get(tx, domain_name=DOMAIN, message_id=sent.message_id)
    assert kept.sink_error is None


@pytest.mark.moto
def test_a_queue_refusing_the_message_loses_nothing(moto_services: Services, moto_url: str) -> None:
    missing = f"{moto_url}/123456789012/no-such-queue-{uuid.uuid4().hex[:6]}"
    with moto_services.write() as tx:
        update_domain(tx, domain_name=DOMAIN, changes={"DeadLetterQueueUrl": missing})
    sent = dead_letter(
        moto_services,
        domain_name=DOMAIN,
        object_type_name="Crm",
        object_json='{"id": "1"}',
        reason="No profile matched.",
        category="no_profile",
    )
    with moto_services.read() as tx:
        kept = service.get(tx, domain_name=DOMAIN, message_id=sent.message_id)
    assert kept.object_json == '{"id": "1"}'
    assert kept.sink_error is not None and "no-such-queue" in kept.sink_error


# ---------------------------------------------------------------------------- domain settings


@pytest.mark.moto
def test_domain_dead_letter_queue_must_be_writable(
    sqlite_settings: Settings, moto_url: str, aws_env: None
) -> None:
    client_sqs = sqs(moto_url)
    url = client_sqs.create_queue(QueueName=f"dlq-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    missing = f"{moto_url}/123456789012/no-such-queue"
    settings = dataclasses.replace(sqlite_settings, sqs_endpoint_url=moto_url, aws_region=REGION)
    with run_server(settings) as server:
        client = server.client()
        with pytest.raises(ClientError) as exc:
            client.create_domain(
                DomainName="bad", DefaultExpirationDays=30, DeadLetterQueueUrl=missing
            )
        assert exc.value.response["Error"]["Code"] == "BadRequestException"
        assert "DeadLetterQueueUrl" in exc.value.response["Error"]["Message"]
        client.create_domain(DomainName="good", DefaultExpirationDays=30, DeadLetterQueueUrl=url)
        (test_message,) = receive_all(client_sqs, url)
        assert test_message["MessageAttributes"]["DomainName"]["StringValue"] == "good"
        with pytest.raises(ClientError) as exc:
            client.update_domain(DomainName="good", DeadLetterQueueUrl=missing)
        assert exc.value.response["Error"]["Code"] == "BadRequestException"
        assert client.get_domain(DomainName="good")["DeadLetterQueueUrl"] == url
        # A rejected object: 200 for the caller, the original object in the queue.
        client.put_profile_object_type(
            DomainName="good", ObjectTypeName="Crm", **crm_type(AllowProfileCreation=False)
        )
        body = json.dumps({"id": "7", "email": "z@x.com"})
        client.put_profile_object(DomainName="good", ObjectTypeName="Crm", Object=body)
        (message,) = receive_all(client_sqs, url)
        assert message["Body"] == body
        assert message["MessageAttributes"]["ObjectTypeName"]["StringValue"] == "Crm"
        assert "AllowProfileCreation" in message["MessageAttributes"]["Message"]["StringValue"]
        assert (
            client.update_domain(DomainName="good", DeadLetterQueueUrl="").get("DeadLetterQueueUrl")
            is None
        )


# ---------------------------------------------------------------------------- what SQS refuses


def omitted_note(message: dict[str, Any], sent: DeadLetter) -> str:
    """The note a message carries in place of an object SQS cannot take, checked to be in the
    body (JSON) and in the ObjectOmitted attribute alike, with the usual attributes."""
    attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    body = json.loads(message["Body"])
    assert body["DeadLetterMessageId"] == sent.message_id
    assert body["ObjectOmitted"] == attributes["ObjectOmitted"]
    assert (attributes["Message"], attributes["DomainName"]) == (sent.reason, DOMAIN)
    assert attributes["ObjectTypeName"] == "Crm"
    assert sent.message_id in body["ObjectOmitted"]
    return str(body["ObjectOmitted"])


@pytest.mark.moto
def test_objects_sqs_cannot_take_are_announced_and_kept_whole(
    moto_services: Services, moto_url: str
) -> None:
    """SQS refuses a message over the queue's size cap, an empty body, and characters outside
    its set, on every send: such a letter used to be refused at every resend, its queue never
    told."""
    client = sqs(moto_url)
    # The cap of SQS queues made before 2025 (moto's default is the newer 1 MiB).
    url = client.create_queue(
        QueueName=f"dlq-{uuid.uuid4().hex[:8]}", Attributes={"MaximumMessageSize": "262144"}
    )["QueueUrl"]
    with moto_services.write() as tx:
        update_domain(tx, domain_name=DOMAIN, changes={"DeadLetterQueueUrl": url})
    large = json.dumps({"id": "1", "notes": "x" * 300_000})
    fits = json.dumps({"id": "2", "notes": "y" * 200_000})
    cases = [
        (large, "Reason: Message must be shorter than 262144 bytes."),
        (json.dumps({"id": "4", "notes": "z" * 1_100_000}), "over the 1048576 an SQS message"),
        (fits, None),
        ("", "the object is empty"),
        ('{"id": "3", "note": "a\x00b"}', "characters an SQS message cannot carry"),
    ]
    for body, omitted in cases:
        sent = dead_letter(
            moto_services,
            domain_name=DOMAIN,
            object_type_name="Crm",
            object_json=body,
            reason="No profile matched.",
            category="no_profile",
        )
        (message,) = receive_all(client, url)
        with moto_services.read() as tx:
            kept = service.get(tx, domain_name=DOMAIN, message_id=sent.message_id)
        # The local store keeps the record whole, saying what reached the queue.
        assert kept.object_json == body
        status = service.delivery_status(kept)
        if omitted is None:
            assert message["Body"] == body
            assert (status, kept.sink_error) == ("Sent", None)
        else:
            assert omitted in omitted_note(message, sent)
            assert status.startswith("Sent without its object (") and omitted in status
    # Delivered, none of them is due for a resend.
    assert resend_pending(moto_services, now=datetime.now(UTC) + timedelta(hours=1)).sent == []


@pytest.mark.moto
def test_a_reason_quoting_characters_sqs_refuses_is_sent_with_them_replaced(
    moto_services: Services, moto_url: str
) -> None:
    """A reason quotes the refused value, which may hold a character SQS does not allow in an
    attribute (U+FFFF here): it is replaced, so the letter is not refused at every send."""
    client = sqs(moto_url)
    url = client.create_queue(QueueName=f"dlq-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    with moto_services.write() as tx:
        update_domain(tx, domain_name=DOMAIN, changes={"DeadLetterQueueUrl": url})
    reason = 'Field amount: "12\uffff" is not a number (ContentType NUMBER).'
    dead_letter(
        moto_services,
        domain_name=DOMAIN,
        object_type_name="Crm",
        object_json='{"amount": "12"}',
        reason=reason,
        category="invalid_value",
    )
    (message,) = receive_all(client, url)
    assert message["MessageAttributes"]["Message"]["StringValue"] == reason.replace(
        "\uffff", "\ufffd"
    )
