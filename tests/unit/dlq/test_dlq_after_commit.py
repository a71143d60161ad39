"""The SQS send of a dead letter happens after its transaction commits (moto's server mode, both
databases): the record is committed and the database free for other writers while SQS is called;
a rolled-back transaction or savepoint sends nothing; an unreachable endpoint delays nothing
and leaves the records marked as not sent."""

from __future__ import annotations

import dataclasses
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from tests.support.ports import free_port
from tests.unit.ingest.conftest import DOMAIN, make_domain

from openprofiles.app import build_services
from openprofiles.context import Services
from openprofiles.dlq import service
from openprofiles.dlq.models import DeadLetter
from openprofiles.dlq.sinks import (
    SQS_BATCH_BYTES,
    SQS_BATCH_ENTRIES,
    LocalStoreSink,
    dead_letter,
    dead_letter_in,
    sqs_client,
)
from openprofiles.domains.service import update_domain
from openprofiles.settings import Settings

from .conftest import REGION, receive_all, sqs

pytestmark = pytest.mark.moto

# Bounds a wait for a thread that should finish at once; not a synchronisation sleep.
THREAD_DEADLINE_SECONDS = 20


def new_queue(services: Services, moto_url: str) -> tuple[Any, str]:
    client = sqs(moto_url)
    url = client.create_queue(QueueName=f"dlq-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    with services.write() as tx:
        update_domain(tx, domain_name=DOMAIN, changes={"DeadLetterQueueUrl": url})
    return client, url


def reject(services_or_tx: Any, record_id: str) -> DeadLetter:
    arguments: dict[str, Any] = {
        "domain_name": DOMAIN,
        "object_type_name": "Crm",
        "object_json": json.dumps({"id": record_id}),
        "reason": "No profile matched.",
        "category": "no_profile",
    }
    if isinstance(services_or_tx, Services):
        return dead_letter(services_or_tx, **arguments)
    return dead_letter_in(services_or_tx, **arguments)


@contextmanager
def on_send(settings: Settings, handler: Callable[[Any], None]) -> Iterator[None]:
    """Call `handler(request)` just before the SQS client sends a SendMessageBatch request
    (botocore's own event hook on the shared client the sinks use)."""
    client = sqs_client(settings)

    def hook(request: Any, **_: Any) -> None:
        handler(request)

    client.meta.events.register("before-send.sqs.SendMessageBatch", hook)
    try:
        yield
    finally:
        client.meta.events.unregister("before-send.sqs.SendMessageBatch", hook)


def stored(services: Services, message_id: str) -> DeadLetter | None:
    """The record as another connection sees it (committed data only)."""
    with services.read() as tx:
        found = [
            x for x in service.list_messages(tx, domain_name=DOMAIN) if x.message_id == message_id
        ]
    return found[0] if found else None


def write_from_another_thread(services: Services) -> bool:
    """Whether another writer gets the database now (a real write, in its own thread)."""
    done = threading.Event()

    def write() -> None:
        with services.write() as tx:
            LocalStoreSink(tx).send(
                DeadLetter(
                    message_id=service.new_message_id(),
                    domain_name=DOMAIN,
                    object_type_name="Crm",
                    object_json="{}",
                    reason="another writer",
                    category="invalid_value",
                    attempts=1,
                    created_at=tx.now,
                    last_attempt_at=tx.now,
                )
            )
        done.set()

    threading.Thread(target=write, daemon=True).start()
    return done.wait(THREAD_DEADLINE_SECONDS)


def test_the_record_is_committed_before_sqs_is_called(
    moto_services: Services, moto_url: str
) -> None:
    client, url = new_queue(moto_services, moto_url)
    seen: list[tuple[DeadLetter | None, bool]] = []
    message_ids: list[str] = []

    def check(request: Any) -> None:
        seen.append(
            (stored(moto_services, message_ids[0]), write_from_another_thread(moto_services))
        )

    with on_send(moto_services.settings, check), moto_services.write() as tx:
        message_ids.append(reject(tx, "r1").message_id)
        # Still inside the transaction: nothing has been sent.
        assert seen == []
    (during_send, other_writer_went_through) = seen[0]
    # Committed, and claimed by the send (so that no resend sends it meanwhile).
    assert during_send is not None
    assert (during_send.sink_error or "").startswith(service.SQS_SENDING)
    assert other_writer_went_through
    (message,) = receive_all(client, url)
    assert json.loads(message["Body"]) == {"id": "r1"}
    after = stored(moto_services, message_ids[0])
    assert after is not None and after.sink_error is None


def test_a_rolled_back_transaction_sends_nothing(moto_services: Services, moto_url: str) -> None:
    client, url = new_queue(moto_services, moto_url)
    requests: list[Any] = []
    with on_send(moto_services.settings, requests.append):
        with pytest.raises(RuntimeError), moto_services.write() as tx:
            rolled_back = reject(tx, "r1")
            raise RuntimeError("the batch failed")
        # A savepoint undone inside a committed transaction: its letter is not sent either.
        with moto_services.write() as tx:
            with pytest.raises(RuntimeError), tx.conn.begin_nested():
                undone = reject(tx, "r2")
                raise RuntimeError("the run failed")
            kept = reject(tx, "r3")
    assert len(requests) == 1
    assert [json.loads(m["Body"]) for m in receive_all(client, url)] == [{"id": "r3"}]
    assert stored(moto_services, rolled_back.message_id) is None
    assert stored(moto_services, undone.message_id) is None
    sent = stored(moto_services, kept.message_id)
    assert sent is not None and sent.sink_error is None


@pytest.fixture
def unreachable_services(settings: Settings, aws_env: None) -> Iterator[Services]:
    """Services whose SQS endpoint is a closed port on this machine."""
    built = build_services(
        dataclasses.replace(
            settings,
            sqs_endpoint_url=f"http://127.0.0.1:{free_port()}",
            aws_region=REGION,
        )
    )
    try:
        make_domain(built)
        yield built
    finally:
        built.database.dispose()


def test_an_unreachable_queue_keeps_the_records_marked_as_not_sent(
    unreachable_services: Services,
) -> None:
    services = unreachable_services
    url = f"{services.settings.sqs_endpoint_url}/123456789012/dlq"
    with services.write() as tx:
        update_domain(tx, domain_name=DOMAIN, changes={"DeadLetterQueueUrl": url})
    bodies: set[bytes] = set()
    committed: list[bool] = []

    def check(request: Any) -> None:
        bodies.add(bytes(request.body))
        committed.append(stored(services, letters[0].message_id) is not None)

    letters: list[DeadLetter] = []
    with on_send(services.settings, check), services.write() as tx:
        # More than one batch's worth.
        letters += [reject(tx, f"r{i}") for i in range(12)]
    # The write committed before the (failing) send, and the endpoint was tried for one batch
    # only: each further try could have cost the client's full timeouts.
    assert committed and all(committed)
    assert len(bodies) == 1
    for letter in letters:
        kept = stored(services, letter.message_id)
        assert kept is not None and kept.object_json == letter.object_json
        assert kept.sink_error is not None and "could not be reached" in kept.sink_error
    # The synchronous path (PutProfileObject's) keeps the record just the same.
    one = reject(services, "r9")
    kept_one = stored(services, one.message_id)
    assert kept_one is not None and "could not be reached" in (kept_one.sink_error or "")


def test_letters_go_in_batches_within_the_caps_of_sqs(
    moto_services: Services, moto_url: str
) -> None:
    client, url = new_queue(moto_services, moto_url)
    requests: list[list[dict[str, Any]]] = []

    def record(request: Any) -> None:
        requests.append(json.loads(request.body)["Entries"])

    with on_send(moto_services.settings, record), moto_services.write() as tx:
        letters = [reject(tx, f"r{i}") for i in range(12)]
        # Over the batch size cap on its own: it goes alone.
        letters.append(reject(tx, "big-" + "x" * SQS_BATCH_BYTES))
        letters += [reject(tx, f"s{i}") for i in range(3)]
    assert [len(entries) for entries in requests] == [10, 2, 1, 3]
    assert all(len(e) <= SQS_BATCH_ENTRIES for e in requests)
    received = receive_all(client, url)
    assert sorted(m["Body"] for m in received) == sorted(x.object_json for x in letters)
    for message in received:
        attributes = message["MessageAttributes"]
        assert attributes["Message"]["StringValue"] == "No profile matched."
        assert attributes["DomainName"]["StringValue"] == DOMAIN
        assert attributes["ObjectTypeName"]["StringValue"] == "Crm"
    for letter in letters:
        kept = stored(moto_services, letter.message_id)
        assert kept is not None and kept.sink_error is None


def test_a_send_that_fails_is_logged_when_it_happens(
    unreachable_services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    # Before, nothing was logged: only `dlq list` and the resend task's count minutes later
    # said that the queue did not get the domain's dead letters.
    from openprofiles.dlq import sinks

    # A fresh window: an earlier test's failure may have been logged for the same domain.
    lines_limiter = getattr(sinks, "_failed_send_lines", None)
    if lines_limiter is not None:
        lines_limiter.clear()
    services = unreachable_services
    url = f"{services.settings.sqs_endpoint_url}/123456789012/dlq"
    with services.write() as tx:
        update_domain(tx, domain_name=DOMAIN, changes={"DeadLetterQueueUrl": url})
    secret_id = f"customer-{uuid.uuid4().hex}"
    with caplog.at_level("WARNING", logger="openprofiles.dlq.sinks"):
        with services.write() as tx:
            reject(tx, secret_id)
            reject(tx, f"{secret_id}-2")
        # The same failure again within the window: counted, not logged twice.
        reject(services, f"{secret_id}-3")
    lines = [r.getMessage() for r in caplog.records if "could not be sent" in r.getMessage()]
    assert len(lines) == 1, lines
    assert f"Domain {DOMAIN}: 2 dead letters could not be sent" in lines[0]
    assert "did not answer" in lines[0]
    assert "dlq list --domain" in lines[0]
    # The records' content is never in the log.
    assert all(secret_id not in r.getMessage() for r in caplog.records)


class _Raw:
    """The body of an answer made up by a botocore hook (AWSResponse reads it by `stream`)."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def test_the_log_line_of_a_refused_send_says_its_code_never_its_text(
    moto_services: Services, moto_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # SQS's (or a compatible endpoint's) message for a refused entry is text this server does
    # not control, and may quote what was sent: the log line says the error code only.
    from botocore.awsrequest import AWSResponse

    from openprofiles.dlq import sinks

    lines_limiter = getattr(sinks, "_failed_send_lines", None)
    if lines_limiter is not None:
        lines_limiter.clear()
    services = moto_services
    new_queue(services, moto_url)
    email = f"ann.{uuid.uuid4().hex[:8]}@example.org"

    def refuse(request: Any) -> AWSResponse:
        entries = json.loads(request.body)["Entries"]
        failed = [
            {
                "Id": entry["Id"],
                "SenderFault": True,
                "Code": "InvalidParameterValue",
                "Message": f"Value {email} for parameter MessageAttribute.Message is invalid.",
            }
            for entry in entries
        ]
        body = json.dumps({"Successful": [], "Failed": failed}).encode()
        return AWSResponse(
            request.url, 200, {"Content-Type": "application/x-amz-json-1.0"}, _Raw(body)
        )

    client = sqs_client(services.settings)

    def hook(request: Any, **_: Any) -> AWSResponse:
        return refuse(request)

    client.meta.events.register("before-send.sqs.SendMessageBatch", hook)
    try:
        with caplog.at_level("WARNING", logger="openprofiles.dlq.sinks"):
            letter = reject(services, "r1")
    finally:
        client.meta.events.unregister("before-send.sqs.SendMessageBatch", hook)
    kept = stored(services, letter.message_id)
    # The refusal was met (and its text kept, sealed, with the record)...
    assert kept is not None and email in (kept.sink_error or "")
    lines = [r.getMessage() for r in caplog.records if "could not be sent" in r.getMessage()]
    assert lines and "SQS refused them (InvalidParameterValue)" in lines[0], lines
    # ...but not logged.
    assert all(email not in r.getMessage() for r in caplog.records)
