"""Dead-letter deliveries that go wrong, on moto's server mode and both databases: an endpoint
that accepts connections and never answers holds up one ingest call, not each one, and loses
nothing; a queue whose MaximumMessageSize is small traps no letter; one domain whose key is
unusable does not stop the resend of the others; a key unusable since the commit does not turn
the committed call into an error."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.support.sqs_relay import Relay
from tests.unit.ingest.conftest import DOMAIN

from openprofiles.app import build_services
from openprofiles.context import Services
from openprofiles.crypto.keyring import Keyring
from openprofiles.dlq import service
from openprofiles.dlq.models import DeadLetter
from openprofiles.dlq.resend import SEND_GRACE_SECONDS, resend_pending
from openprofiles.dlq.sinks import (
    SQS_CONNECT_TIMEOUT_SECONDS,
    SQS_READ_TIMEOUT_SECONDS,
    dead_letter,
    dead_letter_in,
)
from openprofiles.domains.service import create_domain, update_domain
from openprofiles.errors import AccessDenied

from .conftest import REGION, receive_all, sqs
from .test_dlq_after_commit import on_send

pytestmark = pytest.mark.moto

REASON = "No profile matched."


def reject(services_or_tx: Any, body: str, domain_name: str = DOMAIN) -> DeadLetter:
    arguments: dict[str, Any] = {
        "domain_name": domain_name,
        "object_type_name": "Crm",
        "object_json": body,
        "reason": REASON,
        "category": "no_profile",
    }
    if isinstance(services_or_tx, Services):
        return dead_letter(services_or_tx, **arguments)
    return dead_letter_in(services_or_tx, **arguments)


def set_queue(services: Services, url: str, domain_name: str = DOMAIN) -> None:
    with services.write() as tx:
        update_domain(tx, domain_name=domain_name, changes={"DeadLetterQueueUrl": url})


def stored(services: Services, message_id: str, domain_name: str = DOMAIN) -> DeadLetter:
    with services.read() as tx:
        return service.get(tx, domain_name=domain_name, message_id=message_id)


# ---------------------------------------------------------------------------- a black hole


@pytest.fixture
def relay(moto_url: str) -> Iterator[Relay]:
    with Relay(moto_url, black_hole=True) as endpoint:
        yield endpoint


@pytest.fixture
def through_relay(moto_services: Services, relay: Relay) -> Iterator[Services]:
    """The same database, its SQS endpoint the relay in front of moto."""
    built = build_services(
        dataclasses.replace(moto_services.settings, sqs_endpoint_url=relay.url), migrate=False
    )
    try:
        yield built
    finally:
        built.database.dispose()


def test_an_endpoint_that_never_answers_holds_up_one_send_not_every_ingest_call(
    moto_services: Services, through_relay: Services, relay: Relay, moto_url: str
) -> None:
    """Each ingest call that dead-lettered a record used to wait for the send's read timeout
    three times (about 30 s), the list of endpoints that did not answer being forgotten after
    each call."""
    services = through_relay
    client = sqs(moto_url)
    url = client.create_queue(QueueName=f"dlq-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    set_queue(services, url)
    started = time.monotonic()
    first = reject(services, '{"id": "r0"}')
    first_call = time.monotonic() - started
    tried = relay.accepted
    assert tried == 1
    # One attempt, bounded by the client's timeouts (generous bound: a loaded machine).
    assert first_call < 2 * (SQS_CONNECT_TIMEOUT_SECONDS + SQS_READ_TIMEOUT_SECONDS)
    later = [reject(services, json.dumps({"id": f"r{i}"})) for i in range(1, 4)]
    # The endpoint did not answer: the calls after it do not try it (no new connection).
    assert relay.accepted == tried
    letters = [first, *later]
    for letter in letters:
        kept = stored(services, letter.message_id)
        assert kept.object_json == letter.object_json and kept.attempts == 1
        assert kept.sink_error is not None and "could not be reached" in kept.sink_error
    assert receive_all(client, url) == []
    # The endpoint answers again: the background resend delivers every letter, once, and marks
    # the endpoint up, so the next letter goes at once after its commit.
    relay.black_hole = False
    outcome = resend_pending(services)
    assert sorted(outcome.sent) == sorted(x.message_id for x in letters)
    assert outcome.failed == []
    received = receive_all(client, url)
    assert sorted(m["Body"] for m in received) == sorted(x.object_json for x in letters)
    for letter in letters:
        assert stored(services, letter.message_id).sink_error is None
    after = reject(services, '{"id": "after"}')
    assert stored(services, after.message_id).sink_error is None
    assert [m["Body"] for m in receive_all(client, url)] == ['{"id": "after"}']


# ---------------------------------------------------------------------------- a small queue


def test_a_queue_with_a_small_maximum_message_size_traps_no_letter(
    moto_services: Services, moto_url: str
) -> None:
    """A letter over the queue's MaximumMessageSize failed its whole batch, and again at every
    resend (the same batch rebuilt): its batch mates never reached the queue, and it never got
    the note in place of its object."""
    services = moto_services
    client = sqs(moto_url)
    url = client.create_queue(
        QueueName=f"dlq-{uuid.uuid4().hex[:8]}", Attributes={"MaximumMessageSize": "2048"}
    )["QueueUrl"]
    set_queue(services, url)
    big = json.dumps({"id": "big", "notes": "x" * 3000})
    requests: list[list[dict[str, Any]]] = []

    def record(request: Any) -> None:
        requests.append(json.loads(request.body)["Entries"])

    with on_send(services.settings, record):
        with services.write() as tx:
            letters = [
                reject(tx, '{"id": "small1"}'),
                reject(tx, big),
                reject(tx, '{"id": "small2"}'),
            ]
        received = {json.loads(m["Body"]).get("id"): m for m in receive_all(client, url)}
        assert sorted(received, key=str) == sorted(["small1", "small2", None], key=str)
        note = json.loads(received[None]["Body"])
        assert note["DeadLetterMessageId"] == letters[1].message_id
        # The queue's refusal of the batch had its size read: the note says it.
        assert "3160 bytes, over the 2048 its queue takes" in note["ObjectOmitted"]
        for letter in letters:
            kept = stored(services, letter.message_id)
            assert kept.object_json == letter.object_json
        statuses = [service.delivery_status(stored(services, x.message_id)) for x in letters]
        assert statuses[0] == statuses[2] == "Sent"
        assert statuses[1].startswith("Sent without its object (with it the message would be")
        # The queue's size is known now: batches keep within it, and a letter over it goes
        # with the note at once — no request refused.
        requests.clear()
        with services.write() as tx:
            more = [reject(tx, json.dumps({"id": f"m{i}", "pad": "p" * 800})) for i in range(3)]
            over = reject(tx, json.dumps({"id": "over", "notes": "y" * 3000}))
        assert [len(entries) for entries in requests] == [2, 2]
        bodies = [json.loads(m["Body"]) for m in receive_all(client, url)]
        assert sorted(b["id"] for b in bodies if "id" in b) == ["m0", "m1", "m2"]
        (omitted,) = [b for b in bodies if "id" not in b]
        assert omitted["DeadLetterMessageId"] == over.message_id
        assert "over the 2048 its queue takes" in omitted["ObjectOmitted"]
        for letter in more:
            assert stored(services, letter.message_id).sink_error is None
    # Nothing is left for a resend.
    later = datetime.now(UTC) + timedelta(seconds=SEND_GRACE_SECONDS + 1)
    assert resend_pending(services, now=later).sent == []


@pytest.mark.parametrize(
    "reason",
    [
        "The value 'é' of field Notes could not be converted. " * 12,  # 648 characters
        # SQS refuses control characters: each goes as U+FFFD, three bytes for one, which the
        # size was measured before.
        "Control characters: " + "\x01" * 300,
    ],
    ids=["long", "control characters"],
)
def test_on_the_smallest_queue_a_long_reason_still_gets_the_note_through(
    moto_services: Services, moto_url: str, reason: str
) -> None:
    """On a 1 KiB queue (SQS's smallest MaximumMessageSize), the note about a large object was
    itself over the queue's size once the reason was long — SQS counts the attributes too (moto
    counts only the body, so the size is checked here): refused at every resend, the letter
    never reached the queue. The note goes shorter, with the reason cut to fit."""
    services = moto_services
    client = sqs(moto_url)
    url = client.create_queue(
        QueueName=f"dlq-{uuid.uuid4().hex[:8]}", Attributes={"MaximumMessageSize": "1024"}
    )["QueueUrl"]
    set_queue(services, url)
    letter = dead_letter(
        services,
        domain_name=DOMAIN,
        object_type_name="Crm",
        object_json=json.dumps({"id": "big", "notes": "x" * 3000}),
        reason=reason,
        category="no_profile",
    )
    (message,) = receive_all(client, url)
    body = json.loads(message["Body"])
    assert body["DeadLetterMessageId"] == letter.message_id
    assert letter.message_id in body["ObjectOmitted"]
    attributes = {
        name: value["StringValue"] for name, value in message["MessageAttributes"].items()
    }
    # What SQS holds to MaximumMessageSize: the body, and each attribute's name, type and value.
    size = len(message["Body"].encode()) + sum(
        len(name) + len("String") + len(value.encode()) for name, value in attributes.items()
    )
    assert size <= 1024, size
    assert attributes["DomainName"] == DOMAIN and attributes["ObjectTypeName"] == "Crm"
    sent_reason = attributes["Message"]
    sent_as = reason.replace("\x01", "\ufffd")
    assert sent_reason.endswith("\u2026") and sent_as.startswith(sent_reason[:-1])
    assert len(sent_reason) > 100  # cut to what fits, not dropped
    kept = stored(services, letter.message_id)
    assert kept.object_json == letter.object_json and kept.reason == reason
    assert service.delivery_status(kept).startswith("Sent without its object")
    later = datetime.now(UTC) + timedelta(seconds=SEND_GRACE_SECONDS + 1)
    assert resend_pending(services, now=later).sent == []


# ---------------------------------------------------------------------------- unusable keys


@pytest.fixture
def keyed_services(moto_services: Services) -> Iterator[tuple[Services, Keyring, str]]:
    """The same database read with no data key cached (a disabled key shows at once), and a
    domain "a-tenant" under a local key of its own: (services, keyring, the key's id)."""
    settings = moto_services.settings
    built = build_services(
        dataclasses.replace(settings, data_key_cache_seconds=0, aws_region=REGION),
        migrate=False,
    )
    try:
        keyring = Keyring(settings.keyring_path)
        key = keyring.create_key(f"tenant-{uuid.uuid4().hex[:6]}")
        wrapped = built.keys.new_domain_key(
            "a-tenant", key.arn(settings.region, settings.account_id)
        )
        with built.write() as tx:
            create_domain(
                tx,
                domain_name="a-tenant",
                config={"DefaultExpirationDays": 30},
                key_id=wrapped.key_id,
                wrapped_key=wrapped.wrapped,
            )
        yield built, keyring, key.key_id
    finally:
        built.database.dispose()


def test_one_domain_whose_key_is_unusable_does_not_stop_the_resend_of_the_others(
    keyed_services: tuple[Services, Keyring, str], moto_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The resend walks domains in name order: a domain whose key was disabled raised out of it,
    and the domains after it were never resent, at every run."""
    services, keyring, key_id = keyed_services
    client = sqs(moto_url)
    names = {d: f"dlq-{uuid.uuid4().hex[:8]}" for d in ("a-tenant", DOMAIN)}
    letters = {}
    for domain_name, queue_name in names.items():
        # The queue does not exist yet: the send is refused, the letter kept for a resend.
        set_queue(services, f"{moto_url}/123456789012/{queue_name}", domain_name)
        letters[domain_name] = reject(services, '{"email": "ann@example.com"}', domain_name)
        assert "does not exist" in (
            stored(services, letters[domain_name].message_id, domain_name).sink_error or ""
        )
        client.create_queue(QueueName=queue_name)
    assert sorted(names) == ["a-tenant", DOMAIN]  # the unusable one first
    keyring.disable(key_id)
    with caplog.at_level(logging.WARNING, logger="openprofiles.dlq.resend"):
        outcome = resend_pending(services)
    assert outcome.sent == [letters[DOMAIN].message_id]
    assert outcome.skipped == {"a-tenant": "AccessDeniedException"}
    (message,) = receive_all(client, f"{moto_url}/123456789012/{names[DOMAIN]}")
    assert message["Body"] == '{"email": "ann@example.com"}'
    # The resend's own lines (the sends refused before it are logged by dlq.sinks).
    logged = [
        r.getMessage()
        for r in caplog.records
        if "a-tenant" in r.getMessage() and r.name == "openprofiles.dlq.resend"
    ]
    assert logged == [
        "Domain a-tenant: 1 dead letters not resent to SQS (AccessDeniedException); the next "
        "run tries again."
    ]
    # Resending that domain alone says why.
    with pytest.raises(AccessDenied, match="disabled"):
        resend_pending(services, domain_name="a-tenant")
    # Its letter is kept as it was, and sent once its key is usable again.
    keyring.enable(key_id)
    kept = stored(services, letters["a-tenant"].message_id, "a-tenant")
    assert kept.object_json == '{"email": "ann@example.com"}'
    assert "does not exist" in (kept.sink_error or "")
    assert resend_pending(services).sent == [letters["a-tenant"].message_id]
    assert len(receive_all(client, f"{moto_url}/123456789012/{names['a-tenant']}")) == 1


def test_a_key_unusable_since_the_commit_leaves_the_letter_pending_not_the_call_failed(
    keyed_services: tuple[Services, Keyring, str], moto_url: str
) -> None:
    """The send's outcome is sealed with the domain's key after the commit: a key disabled in
    between raised out of the after-commit action (a POST answered an error for records it had
    applied; the Kinesis connector read its committed batch again), and a letter SQS took stayed
    marked as not sent (a second message at the next resend)."""
    services, keyring, key_id = keyed_services
    client = sqs(moto_url)
    queue_name = f"dlq-{uuid.uuid4().hex[:8]}"
    url = f"{moto_url}/123456789012/{queue_name}"
    set_queue(services, url, "a-tenant")
    with on_send(services.settings, lambda _: keyring.disable(key_id)):
        # The queue does not exist: refused, and why cannot be sealed now.
        refused = reject(services, '{"id": "refused"}', "a-tenant")
        client.create_queue(QueueName=queue_name)
        keyring.enable(key_id)
        # The queue takes it: marked sent, which needs no key.
        sent = reject(services, '{"id": "sent"}', "a-tenant")
    keyring.enable(key_id)
    assert stored(services, refused.message_id, "a-tenant").sink_error == service.SQS_PENDING
    assert stored(services, sent.message_id, "a-tenant").sink_error is None
    assert [m["Body"] for m in receive_all(client, url)] == ['{"id": "sent"}']
    # The pending one is the resend's, once its send is taken for lost.
    later = datetime.now(UTC) + timedelta(seconds=SEND_GRACE_SECONDS + 1)
    assert resend_pending(services, now=later).sent == [refused.message_id]
    assert [m["Body"] for m in receive_all(client, url)] == ['{"id": "refused"}']
