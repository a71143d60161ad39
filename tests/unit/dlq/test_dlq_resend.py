"""Dead letters whose SQS send failed or never happened reach the queue later (dlq.resend), on
moto's server mode and both databases: a record refused for a missing queue is delivered once
the queue exists, in the message format of spec §6.1; a record just committed (its send may still
be under way) or held by another run is not sent twice; an endpoint still down leaves the record
with the new error; a domain without a queue is left alone; the CLI and the server's task."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from tests.support.ports import free_port
from tests.unit.ingest.conftest import DOMAIN, make_domain

from openprofiles.app import background_tasks, build_services
from openprofiles.cli import main
from openprofiles.context import Services
from openprofiles.dlq import service
from openprofiles.dlq.models import DeadLetter
from openprofiles.dlq.resend import (
    CLAIM_EXPIRY_SECONDS,
    SEND_GRACE_SECONDS,
    resend_pending,
    resend_task,
)
from openprofiles.dlq.sinks import LocalStoreSink, dead_letter
from openprofiles.domains.service import update_domain
from openprofiles.errors import BadRequest
from openprofiles.settings import Settings

from .conftest import REGION, receive_all, sqs

pytestmark = pytest.mark.moto

REASON = "No profile matched."


def set_queue(services: Services, url: str, domain_name: str = DOMAIN) -> None:
    with services.write() as tx:
        update_domain(tx, domain_name=domain_name, changes={"DeadLetterQueueUrl": url})


def missing_queue(moto_url: str) -> tuple[str, str]:
    """The name and URL of a queue that does not exist (yet)."""
    name = f"dlq-{uuid.uuid4().hex[:8]}"
    return name, f"{moto_url}/123456789012/{name}"


def reject(services: Services, record_id: str, domain_name: str = DOMAIN) -> DeadLetter:
    """Dead-letter a record the ordinary way (local record, then the send after commit)."""
    return dead_letter(
        services,
        domain_name=domain_name,
        object_type_name="Crm",
        object_json=json.dumps({"id": record_id, "email": f"{record_id}@x.com"}),
        reason=REASON,
        category="no_profile",
    )


def committed_not_sent(services: Services, record_id: str) -> DeadLetter:
    """A record as it is between its commit and its send (marked `SQS_PENDING`): the state a
    send still under way, or a process that stopped before sending, leaves behind."""
    with services.write() as tx:
        letter = DeadLetter(
            message_id=service.new_message_id(),
            domain_name=DOMAIN,
            object_type_name="Crm",
            object_json=json.dumps({"id": record_id}),
            reason=REASON,
            category="no_profile",
            attempts=1,
            created_at=tx.now,
            last_attempt_at=tx.now,
            sink_error=service.SQS_PENDING,
        )
        LocalStoreSink(tx).send(letter)
    return stored(services, letter.message_id)


def stored(services: Services, message_id: str, domain_name: str = DOMAIN) -> DeadLetter:
    with services.read() as tx:
        return service.get(tx, domain_name=domain_name, message_id=message_id)


def kept_intact(services: Services, letter: DeadLetter) -> DeadLetter:
    """The stored record, checked to be the one dead-lettered (only its mark may change)."""
    with services.read() as tx:
        records = service.list_messages(tx, domain_name=letter.domain_name)
    (kept,) = [x for x in records if x.message_id == letter.message_id]
    assert (kept.object_json, kept.reason, kept.attempts, kept.created_at) == (
        letter.object_json,
        letter.reason,
        letter.attempts,
        letter.created_at,
    )
    return kept


def assert_message_of(message: dict[str, Any], letter: DeadLetter) -> None:
    """The SQS message of a dead letter (spec §6.1): the object as submitted, and String
    attributes Message, DomainName, ObjectTypeName, and the dead letter's id (for the consumer
    to drop a repeat: delivery is at least once)."""
    assert message["Body"] == letter.object_json
    assert {
        name: (value["DataType"], value["StringValue"])
        for name, value in message["MessageAttributes"].items()
    } == {
        "Message": ("String", letter.reason),
        "DomainName": ("String", letter.domain_name),
        "ObjectTypeName": ("String", letter.object_type_name),
        "DeadLetterMessageId": ("String", letter.message_id),
    }


def test_a_record_refused_for_a_missing_queue_is_delivered_once_the_queue_exists(
    moto_services: Services, moto_url: str
) -> None:
    name, url = missing_queue(moto_url)
    set_queue(moto_services, url)
    letters = [reject(moto_services, f"r{i}") for i in range(12)]
    refused = kept_intact(moto_services, letters[0]).sink_error
    assert refused is not None and "The specified queue does not exist" in refused
    # Still missing: the records stay, with why.
    still = resend_pending(moto_services)
    assert (still.sent, sorted(still.failed)) == ([], sorted(x.message_id for x in letters))
    client = sqs(moto_url)
    assert client.create_queue(QueueName=name)["QueueUrl"] == url
    done = resend_pending(moto_services)
    assert sorted(done.sent) == sorted(x.message_id for x in letters)
    assert (done.failed, done.waiting, done.more) == ([], 0, False)
    received = {json.loads(m["Body"])["id"]: m for m in receive_all(client, url)}
    assert sorted(received) == sorted(f"r{i}" for i in range(12))
    for letter in letters:
        assert_message_of(received[json.loads(letter.object_json)["id"]], letter)
        assert kept_intact(moto_services, letter).sink_error is None
    # Delivered once: nothing more goes to the queue.
    assert resend_pending(moto_services).sent == []
    assert receive_all(client, url) == []


def test_a_record_just_committed_is_not_sent_twice(moto_services: Services, moto_url: str) -> None:
    client = sqs(moto_url)
    url = client.create_queue(QueueName=f"dlq-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    set_queue(moto_services, url)
    # Sent after its commit, as usual: nothing left to resend.
    sent = reject(moto_services, "sent")
    assert len(receive_all(client, url)) == 1
    pending = committed_not_sent(moto_services, "pending")
    within_grace = pending.created_at + timedelta(seconds=SEND_GRACE_SECONDS - 1)
    early = resend_pending(moto_services, now=within_grace)
    assert (early.sent, early.failed, early.waiting) == ([], [], 1)
    assert receive_all(client, url) == []
    assert kept_intact(moto_services, pending).sink_error == service.SQS_PENDING
    # Past the grace period its send is taken for lost: sent once, and only it.
    late = pending.created_at + timedelta(seconds=SEND_GRACE_SECONDS + 1)
    assert resend_pending(moto_services, now=late).sent == [pending.message_id]
    (message,) = receive_all(client, url)
    assert_message_of(message, pending)
    assert resend_pending(moto_services, now=late).sent == []
    assert receive_all(client, url) == []
    assert kept_intact(moto_services, pending).sink_error is None
    assert kept_intact(moto_services, sent).sink_error is None


def test_a_record_held_by_another_run_is_not_sent_twice(
    moto_services: Services, moto_url: str
) -> None:
    name, url = missing_queue(moto_url)
    set_queue(moto_services, url)
    letter = reject(moto_services, "r1")
    client = sqs(moto_url)
    client.create_queue(QueueName=name)
    now = datetime.now(UTC)
    # Another run looked at the record, then this one took it first.
    with moto_services.read() as tx:
        other = service.due_sends(
            tx,
            domain_name=DOMAIN,
            pending_before=now,
            resending_before=now,
            after=None,
            limit=10,
        )
    assert list(other.due) == [letter.message_id]
    other_mark = service.resend_mark(now - timedelta(seconds=1))
    with moto_services.write() as tx:
        taken = service.claim_sends(tx, domain_name=DOMAIN, marks=other.due, claim=other_mark)
    assert [x.message_id for x in taken] == [letter.message_id]
    # While that run holds it, this one leaves it alone.
    held = resend_pending(moto_services, now=now)
    assert (held.sent, held.waiting) == ([], 1)
    assert receive_all(client, url) == []
    # A run that looked at it too but claims after: gets nothing.
    with moto_services.write() as tx:
        assert service.claim_sends(tx, domain_name=DOMAIN, marks=other.due, claim="late") == []
    # A hold older than CLAIM_EXPIRY_SECONDS belongs to a run that stopped: taken over.
    later = now + timedelta(seconds=CLAIM_EXPIRY_SECONDS + 1)
    assert resend_pending(moto_services, now=later).sent == [letter.message_id]
    (message,) = receive_all(client, url)
    assert_message_of(message, letter)
    # The stopped run's outcome, if it ever comes, no longer lands on the record.
    with moto_services.write() as tx:
        service.settle_sends(
            tx,
            domain_name=DOMAIN,
            sent=[],
            failed={"stale outcome": [letter.message_id]},
            marked=other_mark,
        )
    assert kept_intact(moto_services, letter).sink_error is None


@pytest.fixture
def unreachable(moto_services: Services) -> Iterator[Services]:
    """The same database, with an SQS endpoint that is a closed port on this machine."""
    built = build_services(
        dataclasses.replace(
            moto_services.settings, sqs_endpoint_url=f"http://127.0.0.1:{free_port()}"
        ),
        migrate=False,
    )
    try:
        yield built
    finally:
        built.database.dispose()


def test_an_endpoint_still_down_keeps_the_record_with_the_new_error(
    moto_services: Services, unreachable: Services, moto_url: str
) -> None:
    _, url = missing_queue(moto_url)
    set_queue(moto_services, url)
    letters = [reject(moto_services, f"r{i}") for i in range(3)]
    assert "The specified queue does not exist" in (
        kept_intact(moto_services, letters[0]).sink_error or ""
    )
    outcome = resend_pending(unreachable)
    assert outcome.sent == [] and sorted(outcome.failed) == sorted(x.message_id for x in letters)
    for letter in letters:
        error = kept_intact(moto_services, letter).sink_error
        assert error is not None and "could not be reached" in error
    # Failed records have no grace period: the next run tries again.
    assert len(resend_pending(unreachable).failed) == 3


def test_a_domain_without_a_queue_is_left_alone(moto_services: Services, moto_url: str) -> None:
    name, url = missing_queue(moto_url)
    set_queue(moto_services, url)
    letter = reject(moto_services, "r1")
    refused = kept_intact(moto_services, letter).sink_error
    set_queue(moto_services, "")
    assert resend_pending(moto_services) == resend_pending(moto_services, limit=1)
    assert resend_pending(moto_services).sent == []
    assert kept_intact(moto_services, letter).sink_error == refused
    with pytest.raises(BadRequest, match="no DeadLetterQueueUrl"):
        resend_pending(moto_services, domain_name=DOMAIN)
    # A queue set again: the record reaches it.
    client = sqs(moto_url)
    client.create_queue(QueueName=name)
    set_queue(moto_services, url)
    assert resend_pending(moto_services, domain_name=DOMAIN).sent == [letter.message_id]
    assert len(receive_all(client, url)) == 1


def test_a_record_dead_lettered_without_a_queue_is_never_sent_to_a_later_one(
    moto_services: Services, moto_url: str
) -> None:
    """A record rejected while the domain had no queue was only ever for the local store: a
    queue set afterwards does not get it, and it is never shown as sent."""
    letter = reject(moto_services, "r1")
    assert stored(moto_services, letter.message_id).sink_error == service.NO_QUEUE
    assert service.delivery_status(letter) == "No queue (kept here only)"
    name, url = missing_queue(moto_url)
    client = sqs(moto_url)
    client.create_queue(QueueName=name)
    set_queue(moto_services, url)
    outcome = resend_pending(moto_services, domain_name=DOMAIN)
    assert (outcome.sent, outcome.failed, outcome.waiting) == ([], [], 0)
    assert receive_all(client, url) == []
    kept = kept_intact(moto_services, letter)
    assert service.delivery_status(kept) == "No queue (kept here only)"
    # A record rejected now that the queue exists is sent, and shown so.
    sent = reject(moto_services, "r2")
    assert service.delivery_status(stored(moto_services, sent.message_id)) == "Sent"
    assert len(receive_all(client, url)) == 1


def test_the_limit_stops_a_run_and_the_next_run_goes_on(
    moto_services: Services, moto_url: str
) -> None:
    name, url = missing_queue(moto_url)
    set_queue(moto_services, url)
    make_domain(moto_services, "second")
    set_queue(moto_services, url, "second")
    letters = [reject(moto_services, f"r{i}") for i in range(3)]
    letters.append(reject(moto_services, "s1", "second"))
    client = sqs(moto_url)
    client.create_queue(QueueName=name)
    first = resend_pending(moto_services, limit=2)
    assert (first.sent, first.more) == ([x.message_id for x in letters[:2]], True)
    second = resend_pending(moto_services, limit=2)
    assert (second.sent, second.more) == ([x.message_id for x in letters[2:]], False)
    assert len(receive_all(client, url)) == 4


def storage(settings: Settings) -> list[str]:
    given = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        given += ["--database-url", settings.database_url]
    return given


def test_cli_resend_and_delivery_status(moto_services: Services, moto_url: str) -> None:
    name, url = missing_queue(moto_url)
    set_queue(moto_services, url)
    letters = [reject(moto_services, f"r{i}") for i in range(2)]
    runner = CliRunner(
        env={"OPENPROFILES_SQS_ENDPOINT_URL": moto_url, "OPENPROFILES_AWS_REGION": REGION}
    )
    base = [*storage(moto_services.settings), "--domain", DOMAIN]
    listed = runner.invoke(main, ["dlq", "list", *base])
    assert listed.exit_code == 0, listed.output
    assert listed.output.count("[SQS: Not sent: SQS refused the message") == 2
    failing = runner.invoke(main, ["dlq", "resend", *base])
    assert failing.exit_code == 0, failing.output
    assert "0 sent to SQS, 2 still failing." in failing.output
    client = sqs(moto_url)
    client.create_queue(QueueName=name)
    sent = runner.invoke(main, ["dlq", "resend", *base, "--json"])
    assert sent.exit_code == 0, sent.output
    assert json.loads(sent.output) == {
        "Sent": [x.message_id for x in letters],
        "Failed": [],
        "Waiting": 0,
        "More": False,
    }
    assert len(receive_all(client, url)) == 2
    shown = runner.invoke(main, ["dlq", "show", *base, "--json", letters[0].message_id])
    assert json.loads(shown.output)["Delivery"] == "Sent"
    # As text, what a sent letter of no file or flow lacks is left out, not shown as None.
    assert json.loads(shown.output)["SinkError"] is None
    assert json.loads(shown.output)["Origin"] is None
    as_text = runner.invoke(main, ["dlq", "show", *base, letters[0].message_id]).output
    assert "Delivery:       Sent" in as_text
    assert "None" not in as_text and "Origin:" not in as_text and "SinkError:" not in as_text
    listed = runner.invoke(main, ["dlq", "list", *base, "--json"])
    assert [x["Delivery"] for x in json.loads(listed.output)] == ["Sent", "Sent"]
    set_queue(moto_services, "")
    refused = runner.invoke(main, ["dlq", "resend", *base])
    assert refused.exit_code != 0 and "has no DeadLetterQueueUrl" in refused.output
    # The status is the record's own history: removing the queue does not unsend them.
    listed = runner.invoke(main, ["dlq", "list", *base])
    assert listed.output.count("[SQS: Sent]") == 2


def test_the_server_resends_in_the_background(
    moto_services: Services, moto_url: str, settings: Settings
) -> None:
    name, url = missing_queue(moto_url)
    set_queue(moto_services, url)
    refused = reject(moto_services, "refused")
    client = sqs(moto_url)
    client.create_queue(QueueName=name)
    tasks = {t.name: t for t in background_tasks(moto_services)}
    task = tasks["resend dead letters to SQS"]
    assert task.interval_seconds == settings.dlq_resend_interval_seconds == 300.0
    task.run()  # what the server's loop calls, at the current time
    assert kept_intact(moto_services, refused).sink_error is None
    assert len(receive_all(client, url)) == 1
    # The task reads its clock at each run: a record just committed waits out the grace period.
    pending = committed_not_sent(moto_services, "pending")
    clock = [pending.created_at + timedelta(seconds=1)]
    timed = resend_task(moto_services, clock=lambda: clock[0])
    timed.run()
    assert kept_intact(moto_services, pending).sink_error == service.SQS_PENDING
    clock[0] += timedelta(seconds=SEND_GRACE_SECONDS)
    timed.run()
    assert kept_intact(moto_services, pending).sink_error is None
    (message,) = receive_all(client, url)
    assert_message_of(message, pending)
    off = build_services(
        moto_services.settings.with_overrides(dlq_resend_interval_seconds=0), migrate=False
    )
    try:
        assert {t.name: t.interval_seconds for t in background_tasks(off)}[
            "resend dead letters to SQS"
        ] == 0
    finally:
        off.database.dispose()


def test_settings_read_the_resend_interval() -> None:
    env = {"OPENPROFILES_DLQ_RESEND_INTERVAL_SECONDS": "30"}
    assert Settings.from_env(env).dlq_resend_interval_seconds == 30.0
    assert Settings.from_env({}).dlq_resend_interval_seconds == 300.0
