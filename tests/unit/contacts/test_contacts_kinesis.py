"""The Kinesis contact-record connector against moto's server mode: records applied, the
checkpoint stored in the database, and a restarted connector resuming after it."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest
from tests.unit.integrations.integ_helpers import associate, ctr, make_domain

from openprofiles.app import build_services
from openprofiles.connectors.kinesis import KinesisContactRecords
from openprofiles.context import Services
from openprofiles.crypto.keyring import Keyring
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


def test_a_batch_that_fails_whole_is_read_again_and_the_connector_goes_on(
    settings: Settings, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A domain's key disabled: the connector used to die with a traceback (an audit). Its
    records now wait at the checkpoint and are applied once the key is enabled again."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    services = build_services(settings.with_overrides(data_key_cache_seconds=0))
    try:
        kinesis = boto3.client("kinesis", endpoint_url=moto_url, region_name="us-east-1")
        stream = f"ctr-{uuid.uuid4().hex[:12]}"
        kinesis.create_stream(StreamName=stream, ShardCount=1)
        keyring = Keyring(settings.keyring_path)
        key = keyring.create_key("tenant")
        make_domain(services, "keyed", key.arn(settings.region, settings.account_id))
        associate(services, "keyed")
        for i in range(2):
            kinesis.put_record(
                StreamName=stream, Data=json.dumps(ctr(f"d{i}")).encode(), PartitionKey="p"
            )
        connector = KinesisContactRecords(services, stream, client=kinesis)
        keyring.disable(key.key_id)

        held = connector.poll_once()

        assert (held.stream_records, held.deferred) == (0, 2)
        keyring.enable(key.key_id)
        done = connector.poll_once()
        assert (done.stream_records, done.accepted, done.deferred) == (2, 2, 0)
    finally:
        services.database.dispose()
