"""A turn's PutProfileObject batch answers its accepted records once their write has committed:
they do not wait for the dead letters of the batch's rejected records to reach the domain's SQS
queue (a slow or unreachable queue costs its timeouts, up to half a minute), as a request of its
own never did. Through the real ASGI app on SQLite with signed requests; SQS is moto's."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.credentials import Credentials
from tests.support.event_loop import run_in_fresh_thread
from tests.unit.app.test_put_object_batches import CONTACTS, DOMAIN, Api, record

from openprofiles.app import create_app
from openprofiles.auth.credentials import create_credential
from openprofiles.dlq.sinks import sqs_client
from openprofiles.settings import Settings

pytestmark = pytest.mark.moto

REGION = "us-east-1"
# Bounds on waits for what should happen at once; not synchronisation sleeps.
ANSWER_DEADLINE_SECONDS = 10
SEND_HELD_AT_MOST_SECONDS = 30


@pytest.fixture
def queued(
    sqlite_settings: Settings, moto_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[Api, Settings]]:
    """The app, its domain's DeadLetterQueueUrl a moto queue."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    settings = dataclasses.replace(sqlite_settings, sqs_endpoint_url=moto_url, aws_region=REGION)
    queue_url = boto3.client("sqs", endpoint_url=moto_url, region_name=REGION).create_queue(
        QueueName=f"dlq-{tmp_path.name[-20:]}"
    )["QueueUrl"]
    app = create_app(settings)
    services = app.state.services
    with services.write() as tx:
        issued = create_credential(tx, role="admin")
    api = Api(app, Credentials(issued.access_key_id, issued.secret_access_key))

    async def setup() -> None:
        status, _ = await api.call(
            "POST",
            f"/domains/{DOMAIN}",
            {"DefaultExpirationDays": 30, "DeadLetterQueueUrl": queue_url},
        )
        assert status == 200
        status, _ = await api.call("PUT", f"/domains/{DOMAIN}/object-types/Contacts", CONTACTS)
        assert status == 200

    run_in_fresh_thread(setup())
    try:
        yield api, settings
    finally:
        services.database.dispose()


def test_accepted_records_are_answered_while_the_batchs_dead_letters_are_sent(
    queued: tuple[Api, Settings],
) -> None:
    api, settings = queued
    release = threading.Event()
    sending = threading.Event()

    def hold_the_send(**_: Any) -> None:
        # The send runs in a worker thread: holding it there stalls no event loop.
        sending.set()
        release.wait(SEND_HELD_AT_MOST_SECONDS)

    client = sqs_client(settings)
    client.meta.events.register("before-send.sqs.SendMessageBatch", hold_the_send)

    async def scenario() -> tuple[bool, list[tuple[int, Any]]]:
        try:
            # One turn: the three requests reach the handler before any of them is applied.
            first = asyncio.ensure_future(api.put(record("c-1", "+12065550101")))
            rejected = asyncio.ensure_future(api.put({"Note": "no keys at all"}))
            second = asyncio.ensure_future(api.put(record("c-2", "+12065550102")))
            done, _ = await asyncio.wait({first, second}, timeout=ANSWER_DEADLINE_SECONDS)
            answered_while_sending = done == {first, second}
        finally:
            release.set()
        return answered_while_sending, [await first, await rejected, await second]

    try:
        answered_while_sending, answers = run_in_fresh_thread(scenario())
    finally:
        release.set()
        client.meta.events.unregister("before-send.sqs.SendMessageBatch", hold_the_send)
    # The record with no key is refused (objects.answers), and still kept and sent.
    assert [status for status, _ in answers] == [200, 400, 200]
    assert sending.is_set()  # the rejected record's letter did go to SQS
    assert answered_while_sending
