"""The Kinesis connector across a reshard, against moto's server mode behind a relay that
answers as Kinesis does at a reshard (tests/support/kinesis_reshard.py): a child shard is read
only once its parents are read to their end (or expired), so the records of one contact are
applied in the stream's order; and a shard read to its end is checkpointed SHARD_END and never
read again, by the connector that read it or by one started after it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from tests.support.kinesis_reshard import ReshardRelay, reshard_relay
from tests.unit.integrations.integ_helpers import ctr, make_domain

from openprofiles.connectors.kinesis import (
    KinesisContactRecords,
    describe_identity,
    load_checkpoints,
    save_checkpoint,
)
from openprofiles.context import Services
from openprofiles.dlq.service import list_messages
from openprofiles.integrations.service import associate_instance
from openprofiles.profiles.service import SearchCriterion, search_profiles

INSTANCE = "arn:aws:connect:us-east-1:111122223333:instance/1d908e11-3d5f-4cfb-b34d-1e7e0f216898"
S0, S1, S2 = (f"shardId-00000000000{n}" for n in range(3))
# The checkpoint of a shard read to its end, as stored (the KCL's sentinel).
SHARD_END = "SHARD_END"
# Versions of one contact that its LastUpdateTimestamp cannot order (it has none): the first
# applied is kept, a different one after it is rejected (contacts.service._verdict).
V1: dict[str, Any] = {"LastUpdateTimestamp": None}
V2: dict[str, Any] = {
    "LastUpdateTimestamp": None,
    "Agent": {"Username": "second", "AgentInteractionDuration": 9},
}


@pytest.fixture(autouse=True)
def _aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")


@pytest.fixture
def relay(moto_url: str) -> Iterator[ReshardRelay]:
    with reshard_relay(moto_url) as started:
        yield started


@pytest.fixture
def domain(services: Services) -> str:
    make_domain(services, "stream")
    with services.write() as tx:
        associate_instance(tx, domain_name="stream", instance_arn=INSTANCE, move=False)
    return "stream"


def new_stream(moto_url: str) -> tuple[Any, str]:
    """A stream of three shards (moto's; the relay says which exist and which are children)."""
    kinesis = boto3.client("kinesis", endpoint_url=moto_url, region_name="us-east-1")
    stream = f"ctr-{uuid.uuid4().hex[:12]}"
    kinesis.create_stream(StreamName=stream, ShardCount=3)
    return kinesis, stream


def put(kinesis: Any, stream: str, shard: int, *records: dict[str, Any]) -> None:
    """Put records on shard 0, 1 or 2 (moto splits the hash key range in three)."""
    key = str(shard * (2**128 // 3))
    for record in records:
        kinesis.put_record(
            StreamName=stream,
            Data=json.dumps(record).encode(),
            PartitionKey="p",
            ExplicitHashKey=key,
        )


def connector(services: Services, stream: str, relay: ReshardRelay) -> KinesisContactRecords:
    # One record a page: a shard with several records takes several polls.
    return KinesisContactRecords(services, stream, client=relay.client(), limit=1)


def poll(conn: KinesisContactRecords, times: int) -> int:
    """Poll `times` times; the stream records applied."""
    return sum(conn.poll_once().stream_records for _ in range(times))


def found(services: Services, contact_id: str) -> int:
    with services.read() as tx:
        page, _ = search_profiles(
            tx, domain_name="stream", criteria=[SearchCriterion("_ctrContactId", (contact_id,))]
        )
    return len(page)


def rejected_agents(services: Services) -> list[str]:
    with services.read() as tx:
        letters = list_messages(tx, domain_name="stream")
    return [json.loads(x.object_json)["Agent"]["Username"] for x in letters]


def split(kinesis: Any, stream: str, relay: ReshardRelay) -> None:
    """Shard 0 holds two records and then contact x's first version; a split closes it and
    opens shards 1 and 2, and x's second version goes to shard 1."""
    relay.hold_back(S1, S2)
    put(kinesis, stream, 0, ctr("f0"), ctr("f1"), ctr("x", **V1))
    relay.reshard(stream, (S0,), (S1, S2))
    put(kinesis, stream, 1, ctr("x", **V2))


def test_a_child_shard_is_read_after_its_parent_is_read_to_its_end(
    services: Services, domain: str, moto_url: str, relay: ReshardRelay
) -> None:
    """Children used to be read beside their parent: shard 1's version of x was applied while
    shard 0 still held the one before it, which was then rejected in its place (the newest
    LastUpdateTimestamp orders only the versions that have one). The parent is read to its
    end first, as the KCL does, and x's versions are applied in the stream's order."""
    kinesis, stream = new_stream(moto_url)
    split(kinesis, stream, relay)
    conn = connector(services, stream, relay)

    assert poll(conn, 8) == 4

    reads = relay.reads()
    end_of_parent = reads.index(S0) + 4  # three records, one a page, then the end
    assert reads[:end_of_parent] == [S0] * 4
    assert S0 not in reads[end_of_parent:] and {S1, S2} <= set(reads[end_of_parent:])
    assert found(services, "f0") == found(services, "x") == 1
    # x's first version applied, the second rejected (not the other way round).
    assert rejected_agents(services) == ["second"]


def test_the_page_that_ends_a_shard_may_hold_its_last_records(
    services: Services, domain: str, moto_url: str, relay: ReshardRelay
) -> None:
    """Kinesis may answer a null NextShardIterator with the shard's last records: they are
    applied, and the shard checkpointed SHARD_END, in one transaction."""
    relay.end_with_last_records = True
    kinesis, stream = new_stream(moto_url)
    split(kinesis, stream, relay)
    conn = connector(services, stream, relay)

    assert poll(conn, 6) == 4

    reads = relay.reads()
    assert reads[:3] == [S0] * 3 and S0 not in reads[3:]
    assert rejected_agents(services) == ["second"]
    with services.read() as tx:
        assert load_checkpoints(tx, describe_identity(kinesis, stream))[S0] == SHARD_END


def test_a_merged_shard_waits_for_both_parents_and_not_for_an_expired_one(
    services: Services, domain: str, moto_url: str, relay: ReshardRelay
) -> None:
    kinesis, stream = new_stream(moto_url)
    relay.hold_back(S2)
    put(kinesis, stream, 0, ctr("a0"), ctr("a1"), ctr("a2"))
    put(kinesis, stream, 1, ctr("b0"))
    relay.reshard(stream, (S0, S1), (S2,))
    put(kinesis, stream, 2, ctr("c0"))
    conn = connector(services, stream, relay)

    assert poll(conn, 8) == 5

    reads = relay.reads()
    first_child_read = reads.index(S2)
    assert reads[first_child_read:].count(S0) == reads[first_child_read:].count(S1) == 0
    # Both parents were read to their end (an empty page each) before: shard 1 long before.
    assert reads[:first_child_read].count(S0) == 4 and reads[:first_child_read].count(S1) == 2

    # A parent past the stream's retention is no longer listed: its child does not wait for it.
    kinesis, stream = new_stream(moto_url)
    relay.hold_back(S2)
    put(kinesis, stream, 0, ctr("e0"))
    relay.reshard(stream, (S0, S1), (S2,))
    relay.expire(S0)
    put(kinesis, stream, 2, ctr("e1"))
    before = len(relay.reads())
    later = connector(services, stream, relay)

    assert later.poll_once().stream_records == 1  # e1: shard 1 is empty and ends at once
    assert relay.reads()[before:] == [S1, S2]
    assert found(services, "e1") == 1


def test_a_shard_read_to_its_end_is_never_read_again(
    services: Services, domain: str, moto_url: str, relay: ReshardRelay
) -> None:
    """A closed shard read to its end was read again by every connector started after (a new
    iterator from its checkpoint, a GetRecords): nothing said it had ended. Its checkpoint is
    SHARD_END: neither the connector that read it nor one started later asks for it again."""
    kinesis, stream = new_stream(moto_url)
    split(kinesis, stream, relay)
    conn = connector(services, stream, relay)
    assert poll(conn, 8) == 4
    with services.read() as tx:
        assert load_checkpoints(tx, describe_identity(kinesis, stream))[S0] == SHARD_END
    calls = len(relay.calls)
    put(kinesis, stream, 2, ctr("y0"))

    assert poll(conn, 3) == 1
    restarted = connector(services, stream, relay)
    put(kinesis, stream, 1, ctr("y1"))
    assert poll(restarted, 3) == 1

    assert [shard for _, shard in relay.calls[calls:] if shard == S0] == []
    assert found(services, "y0") == found(services, "y1") == 1


def test_a_shard_another_connector_read_to_its_end_is_not_read_on(
    services: Services, domain: str, moto_url: str, relay: ReshardRelay
) -> None:
    """Two connectors on the stream: the one that is behind on a shard the other read to its
    end applies none of its records again, and stops reading it."""
    kinesis, stream = new_stream(moto_url)
    split(kinesis, stream, relay)
    behind = connector(services, stream, relay)
    assert behind.poll_once().stream_records == 1  # f0; its iterator stands after it
    ahead = connector(services, stream, relay)
    assert poll(ahead, 8) == 3  # f1, x and x's second version (f0 was applied)
    calls = len(relay.calls)

    assert poll(behind, 3) == 0

    # One page of shard 0 read with the iterator it had (f1, skipped), then none.
    assert [shard for _, shard in relay.calls[calls:]].count(S0) == 1
    assert rejected_agents(services) == ["second"]


def test_shard_end_is_past_every_sequence_number(services: Services, moto_url: str) -> None:
    """Forward only: SHARD_END replaces any sequence number (56 digits on AWS), and none
    replaces it, on both databases (PostgreSQL compares the others as NUMERIC)."""
    kinesis, stream = new_stream(moto_url)
    identity = describe_identity(kinesis, stream)
    big = "49590338271490256608559692538361571095921575989136588898"
    with services.write() as tx:
        assert save_checkpoint(tx, S0, big, identity)
        assert save_checkpoint(tx, S0, SHARD_END, identity)
        assert not save_checkpoint(tx, S0, big + "0", identity)
        assert not save_checkpoint(tx, S0, SHARD_END, identity)
        assert save_checkpoint(tx, S1, SHARD_END, identity)
    with services.read() as tx:
        assert load_checkpoints(tx, identity) == {S0: SHARD_END, S1: SHARD_END}
