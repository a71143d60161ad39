"""The Kinesis contact-record connector against moto's server mode: records applied, the
checkpoint stored in the database, a restarted connector resuming after it, and a domain that
cannot take records (its key disabled) holding up no other domain's."""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3
import pytest
from tests.unit.integrations.integ_helpers import OTHER_INSTANCE, associate, ctr, make_domain

from openprofiles.app import build_services
from openprofiles.connectors.kinesis import KinesisContactRecords
from openprofiles.contacts.kept import list_unrouted
from openprofiles.context import Services
from openprofiles.crypto.keyring import Keyring
from openprofiles.dlq.service import list_messages
from openprofiles.profiles.service import SearchCriterion, search_profiles
from openprofiles.settings import Settings


def test_stream_resumes_from_checkpoint(
    services: Services, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    kinesis = boto3.client("kinesis", endpoint_url=moto_url, region_name="us-east-1")
    stream = f"ctr-{uuid.uuid4().hex[:12]}"
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    make_domain(services, "stream")
    associate(services, "stream")
    for i in range(3):
        kinesis.put_record(
            StreamName=stream, Data=json.dumps(ctr(f"k{i}")).encode(), PartitionKey=f"k{i}"
        )
    kinesis.put_record(StreamName=stream, Data=b"{broken", PartitionKey="x")
    first = KinesisContactRecords(services, stream, client=kinesis).poll_once()
    assert (first.stream_records, first.accepted, first.rejected) == (4, 3, 1)
    # A new connector (a restart) reads only what arrived after the checkpoint.
    kinesis.put_record(StreamName=stream, Data=json.dumps(ctr("k9")).encode(), PartitionKey="k9")
    restarted = KinesisContactRecords(services, stream, client=kinesis)
    second = restarted.poll_once()
    assert (second.stream_records, second.accepted) == (1, 1)
    assert restarted.poll_once().stream_records == 0
    with services.read() as tx:
        page, _ = search_profiles(
            tx, domain_name="stream", criteria=[SearchCriterion("_ctrContactId", ("k9",))]
        )
    assert len(page) == 1


def stream_with(moto_url: str, *records: dict[str, Any]) -> tuple[Any, str]:
    """A one-shard stream holding `records`, in order; (client, stream name)."""
    kinesis = boto3.client("kinesis", endpoint_url=moto_url, region_name="us-east-1")
    stream = f"ctr-{uuid.uuid4().hex[:12]}"
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    for record in records:
        kinesis.put_record(StreamName=stream, Data=json.dumps(record).encode(), PartitionKey="p")
    return kinesis, stream


def found(services: Services, domain: str, contact_id: str) -> int:
    with services.read() as tx:
        page, _ = search_profiles(
            tx, domain_name=domain, criteria=[SearchCriterion("_ctrContactId", (contact_id,))]
        )
    return len(page)


def test_a_domain_that_cannot_take_records_does_not_hold_up_the_others(
    settings: Settings, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One domain's key disabled: the whole shard batch used to wait, the other domain's records
    with it (an audit). They are applied now; the keyed domain's are held, and sent on once its
    key is enabled again."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    services = build_services(settings.with_overrides(data_key_cache_seconds=0))
    try:
        keyring = Keyring(settings.keyring_path)
        key = keyring.create_key("tenant")
        make_domain(services, "keyed", key.arn(settings.region, settings.account_id))
        associate(services, "keyed")
        make_domain(services, "open")
        associate(services, "open", OTHER_INSTANCE)
        kinesis, stream = stream_with(
            moto_url,
            ctr("k0"),
            ctr("o0", instance=OTHER_INSTANCE),
            ctr("k1", CustomerEndpoint={"Address": "n/a", "Type": "TELEPHONE_NUMBER"}),
            ctr("o1", instance=OTHER_INSTANCE),
        )
        connector = KinesisContactRecords(services, stream, client=kinesis, retry_held_seconds=0)
        keyring.disable(key.key_id)

        first = connector.poll_once()

        assert (first.stream_records, first.accepted, first.held, first.deferred) == (4, 2, 2, 0)
        assert found(services, "open", "o0") == found(services, "open", "o1") == 1
        with services.read() as tx:
            kept = list_unrouted(tx)
        assert sorted(json.loads(k.object_json)["ContactId"] for k in kept) == ["k0", "k1"]
        assert all("disabled" in k.reason and "is kept" in k.reason for k in kept)
        # Still disabled: the held records stay as they are, and the stream is drained.
        second = connector.poll_once()
        assert (second.stream_records, second.replayed) == (0, 0)
        with services.read() as tx:
            assert [k.message_id for k in list_unrouted(tx)] == [k.message_id for k in kept]

        keyring.enable(key.key_id)
        third = connector.poll_once()

        assert third.replayed == 2
        assert found(services, "keyed", "k0") == 1
        with services.read() as tx:
            assert list_unrouted(tx) == []
            [letter] = list_messages(tx, domain_name="keyed")
        assert json.loads(letter.object_json)["ContactId"] == "k1"
        assert "cannot be read as a telephone number" in letter.reason
    finally:
        services.database.dispose()


# A lost race needs PostgreSQL's concurrency (SQLite has one writer).
@pytest.mark.parametrize("settings", ["postgres"], indirect=True)
def test_a_batch_that_lost_a_race_is_applied_again_and_the_connector_goes_on(
    services: Services, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: a deadlock with a server's writes rolled the batch back; it used to escape
    poll_once and stop the connector. Its transaction runs again (store.conflicts)."""
    from tests.support.lost_races import attempts, deadlock_once_on

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    make_domain(services, "raced")
    associate(services, "raced")
    kinesis, stream = stream_with(moto_url, ctr("r1"), ctr("r2"))
    deadlock_once_on(services, "profile", "INSERT")

    result = KinesisContactRecords(services, stream, client=kinesis).poll_once()

    assert (result.stream_records, result.accepted, result.deferred) == (2, 2, 0)
    assert found(services, "raced", "r1") == 1 and found(services, "raced", "r2") == 1
    assert attempts(services) > 1


def test_records_a_batch_sends_on_with_their_contact_are_counted_as_sent_on(
    services: Services, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task kept waiting by one poll's batch for the call it continues, sent on by the next
    poll's batch that applies the call (BatchOutcome.woken): the poll said nothing of it."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    make_domain(services, "stream")
    associate(services, "stream")
    task = ctr("task-1", channel="TASK", address=None, PreviousContactId="call-1")
    kinesis, stream = stream_with(moto_url, task)
    # The held records' sweep only at the first poll: the batch, not it, sends the task on.
    connector = KinesisContactRecords(services, stream, client=kinesis, retry_held_seconds=3600)
    first = connector.poll_once()
    assert (first.stream_records, first.held, first.replayed) == (1, 1, 0)
    kinesis.put_record(StreamName=stream, Data=json.dumps(ctr("call-1")).encode(), PartitionKey="p")

    second = connector.poll_once()

    assert (second.stream_records, second.accepted, second.replayed) == (1, 1, 1)
    with services.read() as tx:
        assert list_unrouted(tx) == []
    assert found(services, "stream", "task-1") == 1
