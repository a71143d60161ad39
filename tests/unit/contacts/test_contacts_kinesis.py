"""The Kinesis contact-record connector against moto's server mode: records applied, the
checkpoint stored in the database, and a restarted connector resuming after it."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest
from tests.unit.integrations.integ_helpers import associate, ctr, make_domain

from openprofiles.connectors.kinesis import KinesisContactRecords
from openprofiles.context import Services
from openprofiles.profiles.service import SearchCriterion, search_profiles


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
