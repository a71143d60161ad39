"""The send of dead letters after their commit puts each letter in the queue once, on moto's
server mode and both databases: a letter sent with a note in place of its object while the
domain's key is unusable is recorded delivered (no resend sends it again); a slow endpoint holds
the send after a commit up for `SEND_AFTER_COMMIT_SECONDS` at most, what it did not try going to
the resend; a resend that runs while that send is still under way leaves its letters alone (and
takes them once the claim of a send that stopped has expired); and a resend run starts no request
once its own claims could expire.

A slow endpoint is a clock: each SQS request moves the sender's clock (`_SqsOutbox.clock`,
`resend_pending`'s `clock`) on, as one that answers just before the client's timeouts would — no
real wait."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.unit.ingest.conftest import DOMAIN

from openprofiles.context import Services
from openprofiles.crypto.keyring import Keyring
from openprofiles.dlq import service
from openprofiles.dlq.resend import (
    CLAIM_EXPIRY_SECONDS,
    RUN_SEND_SECONDS,
    SEND_GRACE_SECONDS,
    resend_pending,
)
from openprofiles.dlq.sinks import (
    SEND_AFTER_COMMIT_SECONDS,
    SQS_CONNECT_TIMEOUT_SECONDS,
    SQS_READ_TIMEOUT_SECONDS,
    _SqsOutbox,
    sqs_client,
)
from openprofiles.settings import Settings

from .conftest import receive_all, sqs
from .test_dlq_after_commit import on_send
from .test_dlq_delivery_faults import keyed_services, reject, set_queue, stored  # noqa: F401
from .test_dlq_resend import committed_not_sent

pytestmark = pytest.mark.moto

# What one request of a slow endpoint costs: it answers just before the client gives up.
SLOW_REQUEST_SECONDS = SQS_CONNECT_TIMEOUT_SECONDS + SQS_READ_TIMEOUT_SECONDS


def later() -> datetime:
    """A resend's clock once the grace of every record written so far is over."""
    return datetime.now(UTC) + timedelta(seconds=SEND_GRACE_SECONDS + 1)


# ---------------------------------------------------------------------------- unusable key


def test_a_letter_sent_with_a_note_while_the_key_is_unusable_is_not_sent_again(
    keyed_services: tuple[Services, Keyring, str],  # noqa: F811
    moto_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Why a letter went with a note in place of its object is sealed with the domain's key: a
    key disabled since the commit left the letter marked as not sent although SQS had it, and
    the resend sent it a second time (only letters sent with their object were marked)."""
    services, keyring, key_id = keyed_services
    client = sqs(moto_url)
    url = client.create_queue(QueueName=f"dlq-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    set_queue(services, url, "a-tenant")
    with (
        caplog.at_level(logging.WARNING, logger="openprofiles.dlq.sinks"),
        on_send(services.settings, lambda _: keyring.disable(key_id)),
        services.write() as tx,
    ):
        # An empty object: SQS gets the note. A whole one: SQS gets it.
        noted = reject(tx, "", "a-tenant")
        whole = reject(tx, '{"id": "whole"}', "a-tenant")
    keyring.enable(key_id)
    first = receive_all(client, url)
    assert len(first) == 2
    (note,) = [json.loads(m["Body"]) for m in first if m["Body"] != '{"id": "whole"}']
    assert note["DeadLetterMessageId"] == noted.message_id
    # Both are recorded delivered; why the one went without its object could not be sealed.
    kept = stored(services, noted.message_id, "a-tenant")
    assert kept.sink_error == service.SENT_WITHOUT_OBJECT + service.WHY_NOT_RECORDED
    assert service.delivery_status(kept).startswith("Sent without its object (why was not")
    assert stored(services, whole.message_id, "a-tenant").sink_error is None
    # The warning says what happened: no send failed here.
    (warning,) = [r.getMessage() for r in caplog.records if "a-tenant" in r.getMessage()]
    assert "failed SQS sends" not in warning
    assert "those delivered are marked so" in warning
    # Nothing is left for a resend: the queue gets no second message.
    assert resend_pending(services, now=later()).sent == []
    assert receive_all(client, url) == []


# ---------------------------------------------------------------------------- slow endpoint


class SlowEndpoint:
    """A clock that each SQS request of the sinks' client moves on by `seconds`; `requests`
    holds the (operation, clock reading when it started) of each."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.now = 0.0
        self.requests: list[tuple[str, float]] = []

    def clock(self) -> float:
        return self.now

    def hook(self, model: Any, **_: Any) -> None:
        self.requests.append((model.name, self.now))
        self.now += self.seconds


@contextmanager
def slow_endpoint(settings: Settings, seconds: float) -> Iterator[SlowEndpoint]:
    endpoint = SlowEndpoint(seconds)
    events = sqs_client(settings).meta.events
    events.register("before-call.sqs", endpoint.hook)
    try:
        yield endpoint
    finally:
        events.unregister("before-call.sqs", endpoint.hook)


def test_a_slow_endpoint_holds_the_send_after_a_commit_up_for_a_bounded_time(
    moto_services: Services, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch the queue refuses whole is sent again one letter at a time, after its
    MaximumMessageSize is read: 12 requests and more, each up to the client's timeouts (over
    90 s, past the resend's grace) in the ingesting thread. The send now stops starting requests
    after SEND_AFTER_COMMIT_SECONDS, and the resend sends the rest, each letter once."""
    services = moto_services
    client = sqs(moto_url)
    url = client.create_queue(
        QueueName=f"dlq-{uuid.uuid4().hex[:8]}", Attributes={"MaximumMessageSize": "2048"}
    )["QueueUrl"]
    set_queue(services, url)
    with slow_endpoint(services.settings, SLOW_REQUEST_SECONDS) as endpoint:
        monkeypatch.setattr(_SqsOutbox, "clock", staticmethod(endpoint.clock), raising=False)
        with services.write() as tx:
            # The first over the queue's size: the batch of ten is refused whole.
            letters = [reject(tx, json.dumps({"id": "big", "notes": "x" * 3000}))]
            letters += [reject(tx, json.dumps({"id": f"r{i}"})) for i in range(1, 10)]
    # The batch, the queue's size, one letter alone (with the note): no request started after
    # the deadline, and the whole send within it and one request's timeouts.
    assert [name for name, _ in endpoint.requests] == [
        "SendMessageBatch",
        "GetQueueAttributes",
        "SendMessageBatch",
    ]
    assert all(started < SEND_AFTER_COMMIT_SECONDS for _, started in endpoint.requests)
    (note,) = [json.loads(m["Body"]) for m in receive_all(client, url)]
    assert note["DeadLetterMessageId"] == letters[0].message_id
    assert service.delivery_status(stored(services, letters[0].message_id)).startswith(
        "Sent without its object"
    )
    # The letters not tried are pending again: the resend's once their grace is over.
    for letter in letters[1:]:
        assert stored(services, letter.message_id).sink_error == service.SQS_PENDING
    outcome = resend_pending(services, now=later())
    assert sorted(outcome.sent) == sorted(x.message_id for x in letters[1:])
    bodies = sorted(json.loads(m["Body"])["id"] for m in receive_all(client, url))
    assert bodies == [f"r{i}" for i in range(1, 10)]
    for letter in letters[1:]:
        assert stored(services, letter.message_id).sink_error is None


def test_a_resend_while_the_send_after_a_commit_is_under_way_sends_nothing_twice(
    moto_services: Services, moto_url: str
) -> None:
    """The resend took a record marked pending once its grace was over, whether or not the send
    after its commit was still under way (a slow endpoint, a long transaction): both sent it.
    That send claims its records first now, and the resend leaves them alone."""
    services = moto_services
    client = sqs(moto_url)
    url = client.create_queue(QueueName=f"dlq-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    set_queue(services, url)
    during: list[Any] = []

    def resend_meanwhile(_: Any) -> None:
        # Just before the send after the commit reaches SQS, past the records' grace.
        if not during:
            during.append(None)
            during[0] = resend_pending(services, now=later())

    with on_send(services.settings, resend_meanwhile), services.write() as tx:
        letters = [reject(tx, json.dumps({"id": f"r{i}"})) for i in range(3)]
    assert during[0].sent == []
    assert during[0].waiting == len(letters)
    bodies = sorted(json.loads(m["Body"])["id"] for m in receive_all(client, url))
    assert bodies == ["r0", "r1", "r2"]
    for letter in letters:
        assert stored(services, letter.message_id).sink_error is None
    assert resend_pending(services, now=later()).sent == []
    assert receive_all(client, url) == []


def test_the_claim_of_a_send_after_a_commit_that_stopped_is_taken_over(
    moto_services: Services, moto_url: str
) -> None:
    """A process that stopped while sending after a commit leaves its records claimed: the
    resend takes them once the claim is older than CLAIM_EXPIRY_SECONDS, not before."""
    services = moto_services
    client = sqs(moto_url)
    url = client.create_queue(QueueName=f"dlq-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    set_queue(services, url)
    # As the send after its commit leaves it, claimed, when its process stops.
    letter = committed_not_sent(services, "stopped")
    started = datetime.now(UTC)
    with services.write() as tx:
        assert service.claim_pending(
            tx,
            domain_name=DOMAIN,
            message_ids=[letter.message_id],
            claim=service.sending_mark(started),
        ) == {letter.message_id}
    soon = started + timedelta(seconds=CLAIM_EXPIRY_SECONDS - 1)
    assert resend_pending(services, now=soon).waiting == 1
    assert receive_all(client, url) == []
    expired = started + timedelta(seconds=CLAIM_EXPIRY_SECONDS + 1)
    assert resend_pending(services, now=expired).sent == [letter.message_id]
    assert [m["Body"] for m in receive_all(client, url)] == ['{"id": "stopped"}']


def test_a_resend_run_starts_no_request_once_its_claims_could_expire(
    moto_services: Services, moto_url: str
) -> None:
    """A run claims its records with its start time and sent them whatever the time it took: on
    a slow endpoint their claims expired while it sent, and another run took them again. It now
    starts no request after RUN_SEND_SECONDS; what it did not try is pending again, for the
    next run."""
    services = moto_services
    client = sqs(moto_url)
    url = client.create_queue(QueueName=f"dlq-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    set_queue(services, url)
    letters = [committed_not_sent(services, f"r{i}") for i in range(25)]
    with slow_endpoint(services.settings, RUN_SEND_SECONDS / 2) as endpoint:
        first = resend_pending(services, now=later(), clock=endpoint.clock)
    # Three batches: two sent, the third not started, the run's time being up.
    assert [started for _, started in endpoint.requests] == [0, RUN_SEND_SECONDS / 2]
    assert first.more
    assert sorted(first.sent) == sorted(x.message_id for x in letters[:20])
    for letter in letters[20:]:
        assert stored(services, letter.message_id).sink_error == service.SQS_PENDING
    second = resend_pending(services, now=later())
    assert sorted(second.sent) == sorted(x.message_id for x in letters[20:])
    bodies = sorted(json.loads(m["Body"])["id"] for m in receive_all(client, url))
    assert bodies == sorted(f"r{i}" for i in range(25))
