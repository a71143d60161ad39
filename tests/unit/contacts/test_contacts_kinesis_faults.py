"""The Kinesis connector when the stream misbehaves, against moto's server mode (through a relay
that answers what moto never does: throttling, expired iterators, empty pages): a failed call
backs off its shard and the others go on, iterators are kept between polls, empty pages are
followed, a re-created stream is read from its start, two connectors on one stream neither move
its checkpoint back nor dead-letter a record twice, data that is not UTF-8 is kept as it came,
and a poll the database failed stops `run` no more."""

from __future__ import annotations

import base64
import codecs
import gzip
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest
from sqlalchemy import insert, select
from tests.support.aws_faults import FaultRelay, fault_relay
from tests.unit.integrations.integ_helpers import ctr, make_domain

from openprofiles.app import build_services
from openprofiles.connectors.kinesis import (
    BACKOFF_MAX_SECONDS,
    BLANK,
    NOT_UTF8,
    REFRESH_SECONDS,
    KinesisContactRecords,
    describe_identity,
    load_checkpoints,
    save_checkpoint,
)
from openprofiles.contacts.kept import list_unrouted
from openprofiles.context import Services
from openprofiles.dlq.service import list_messages
from openprofiles.integrations.service import associate_instance
from openprofiles.profiles.service import SearchCriterion, search_profiles
from openprofiles.settings import Settings
from openprofiles.store.schema import stream_checkpoint, stream_checkpoint_by_name

INSTANCE = "arn:aws:connect:us-east-1:111122223333:instance/1d908e11-3d5f-4cfb-b34d-1e7e0f216898"
SHARD0, SHARD1 = "shardId-000000000000", "shardId-000000000001"
# An invalid record (its endpoint cannot be a phone number), dead-lettered in its domain.
BAD = {"CustomerEndpoint": {"Address": "n/a", "Type": "TELEPHONE_NUMBER"}}


class Clock:
    """Monotonic seconds the test moves on itself."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")


@pytest.fixture
def relay(moto_url: str) -> Iterator[FaultRelay]:
    with fault_relay(moto_url) as started:
        yield started


@pytest.fixture
def domain(services: Services) -> str:
    make_domain(services, "stream")
    with services.write() as tx:
        associate_instance(tx, domain_name="stream", instance_arn=INSTANCE, move=False)
    return "stream"


def new_stream(moto_url: str, shards: int = 1) -> tuple[Any, str]:
    kinesis = boto3.client("kinesis", endpoint_url=moto_url, region_name="us-east-1")
    stream = f"ctr-{uuid.uuid4().hex[:12]}"
    kinesis.create_stream(StreamName=stream, ShardCount=shards)
    return kinesis, stream


def put(kinesis: Any, stream: str, *records: dict[str, Any], shard: int = 0) -> None:
    """Put records on one shard (of a stream of at most two: its hash key range halved)."""
    key = str(shard * 2**127)
    for record in records:
        kinesis.put_record(
            StreamName=stream,
            Data=json.dumps(record).encode(),
            PartitionKey="p",
            ExplicitHashKey=key,
        )


def found(services: Services, contact_id: str) -> int:
    with services.read() as tx:
        page, _ = search_profiles(
            tx, domain_name="stream", criteria=[SearchCriterion("_ctrContactId", (contact_id,))]
        )
    return len(page)


def connector(services: Services, stream: str, client: Any, **kw: Any) -> KinesisContactRecords:
    # jitter 0.5: each wait is three quarters of its ceiling.
    return KinesisContactRecords(services, stream, client=client, jitter=lambda: 0.5, **kw)


# --- 1. failed calls back off their shard; iterators are kept --------------------------------


def test_a_throttled_shard_backs_off_and_the_other_shards_go_on(
    services: Services, domain: str, moto_url: str, relay: FaultRelay
) -> None:
    """A ProvisionedThroughputExceededException used to escape poll_once and stop the
    connector (`openprofiles connectors kinesis` exited 1). The shard waits (doubling, jittered,
    bounded) and is read again from its checkpoint; the other shard is read meanwhile."""
    kinesis, stream = new_stream(moto_url, shards=2)
    put(kinesis, stream, ctr("a0"), ctr("a1"), shard=0)
    put(kinesis, stream, ctr("b0"), shard=1)
    clock = Clock()
    conn = connector(services, stream, relay.client(), clock=clock)
    relay.fail("GetRecords", "ProvisionedThroughputExceededException")

    first = conn.poll_once()

    assert (first.stream_records, first.accepted, first.failed) == (1, 1, 1)
    assert found(services, "b0") == 1 and found(services, "a0") == 0
    # Backing off: not asked at all before its wait (3/4 of 1 s) is over.
    reads = relay.calls["GetRecords"]
    clock.now += 0.5
    assert conn.poll_once().stream_records == 0
    assert relay.calls["GetRecords"] == reads + 1  # shard 1 only
    clock.now += 0.25
    second = conn.poll_once()
    assert (second.stream_records, second.failed) == (2, 0)
    assert found(services, "a0") == found(services, "a1") == 1


def test_the_wait_doubles_with_each_failure_in_a_row_up_to_a_bound(
    services: Services, domain: str, moto_url: str, relay: FaultRelay
) -> None:
    kinesis, stream = new_stream(moto_url)
    put(kinesis, stream, ctr("w0"))
    clock = Clock()
    conn = connector(services, stream, relay.client(), clock=clock)
    relay.fail("GetRecords", "ProvisionedThroughputExceededException", times=8)
    assert conn.poll_once().failed == 1
    waits = []
    for _ in range(8):
        # The test's clock in quarter seconds until the shard is asked again.
        calls, start = relay.calls["GetRecords"], clock.now
        while relay.calls["GetRecords"] == calls:
            clock.now += 0.25
            conn.poll_once()
            assert clock.now - start <= BACKOFF_MAX_SECONDS, "the wait is not bounded"
        waits.append(clock.now - start)
    # 3/4 of 1, 2, 4, ... s (jitter 0.5), at most 3/4 of BACKOFF_MAX_SECONDS (30 s).
    assert waits == [0.75, 1.5, 3.0, 6.0, 12.0, 22.5, 22.5, 22.5]
    assert found(services, "w0") == 1


def test_each_kind_of_failed_call_is_caught_and_tried_again(
    services: Services, domain: str, moto_url: str, relay: FaultRelay
) -> None:
    """ListShards, GetShardIterator and a network error (a 500 botocore does not retry here)
    fail a poll without stopping the connector; once the wait is over all is read, once."""
    kinesis, stream = new_stream(moto_url)
    put(kinesis, stream, ctr("c0"), ctr("c1"))
    clock = Clock()
    conn = connector(services, stream, relay.client(), clock=clock)
    relay.fail("ListShards", "LimitExceededException")
    assert (conn.poll_once().failed, found(services, "c0")) == (1, 0)
    clock.now += 1
    relay.fail("GetShardIterator", "ProvisionedThroughputExceededException")
    assert (conn.poll_once().failed, found(services, "c0")) == (1, 0)
    clock.now += 1
    relay.fail("GetRecords", "InternalFailure", status=500)
    assert conn.poll_once().failed == 1
    clock.now += 2
    done = conn.poll_once()
    assert (done.stream_records, done.accepted, done.failed) == (2, 2, 0)


def test_iterators_are_kept_between_polls(
    services: Services, domain: str, moto_url: str, relay: FaultRelay
) -> None:
    """Every poll used to call ListShards and GetShardIterator for every shard (4.4 calls/s on
    a one-shard stream; Kinesis allows 5 GetShardIterator a second a shard). A shard's
    NextShardIterator is kept; the shards are listed again only now and then."""
    kinesis, stream = new_stream(moto_url)
    conn = connector(services, stream, relay.client(), clock=Clock())
    for n in range(5):
        put(kinesis, stream, ctr(f"i{n}"))
        assert conn.poll_once().accepted == 1
    assert relay.calls["GetRecords"] == 5
    assert (relay.calls["GetShardIterator"], relay.calls["ListShards"]) == (1, 1)


def test_an_expired_iterator_is_made_again_from_the_checkpoint(
    services: Services, domain: str, moto_url: str, relay: FaultRelay
) -> None:
    kinesis, stream = new_stream(moto_url)
    put(kinesis, stream, ctr("e0"), ctr("e1"))
    conn = connector(services, stream, relay.client(), clock=Clock())
    assert conn.poll_once().accepted == 2
    put(kinesis, stream, ctr("e2"))
    relay.fail("GetRecords", "ExpiredIteratorException")

    again = conn.poll_once()

    # At once, not after a wait, and from after the checkpoint: nothing read twice or skipped.
    assert (again.stream_records, again.accepted, again.failed) == (1, 1, 0)
    assert relay.calls["GetShardIterator"] == 2
    assert found(services, "e2") == 1


class StopAfter(threading.Event):
    """A stop event set after `polls` loops of `run`, whose waits return at once."""

    def __init__(self, polls: int) -> None:
        super().__init__()
        self.polls = polls

    def is_set(self) -> bool:
        self.polls -= 1
        return self.polls < 0

    def wait(self, timeout: float | None = None) -> bool:
        return False


def test_run_goes_on_through_throttling(
    services: Services, domain: str, moto_url: str, relay: FaultRelay
) -> None:
    """The reviewer's reproduction: six throttled GetRecords in a row (more than botocore
    retries) made `run` raise. It goes on, and reads everything once they pass."""
    kinesis, stream = new_stream(moto_url)
    put(kinesis, stream, ctr("t0"), ctr("t1"), ctr("t2"))
    clock = Clock()
    conn = connector(services, stream, relay.client(), clock=clock)
    relay.fail("GetRecords", "ProvisionedThroughputExceededException", times=6)

    class Ticking(StopAfter):
        """Stops once the shard was read after its six failures (or after `polls`)."""

        def is_set(self) -> bool:
            return relay.calls["GetRecords"] >= 7 or super().is_set()

        def wait(self, timeout: float | None = None) -> bool:
            clock.now += timeout or 0  # the wait run asked for, on the test's clock
            return False

    conn.run(Ticking(polls=200), idle_seconds=1.0)

    assert relay.calls["GetRecords"] == 7
    assert [found(services, f"t{n}") for n in range(3)] == [1, 1, 1]


def test_run_keeps_each_shard_under_the_read_limit(
    services: Services, domain: str, moto_url: str, relay: FaultRelay
) -> None:
    """With records waiting at every poll, `run` called GetRecords as fast as it could (13.6
    a second on a trickle of records; Kinesis allows 5 a shard). It waits READ_INTERVAL_SECONDS
    (0.25 s) per call the last poll made on a shard, and idle_seconds once drained."""
    kinesis, stream = new_stream(moto_url)
    put(kinesis, stream, *(ctr(f"r{n}") for n in range(4)))
    clock = Clock()
    conn = connector(services, stream, relay.client(), clock=clock, limit=1)
    relay.empty_pages(2)
    waits: list[tuple[int, float]] = []

    class Recording(StopAfter):
        def wait(self, timeout: float | None = None) -> bool:
            waits.append((relay.calls["GetRecords"], timeout or 0))
            clock.now += timeout or 0
            return False

    conn.run(Recording(polls=6), idle_seconds=1.0)

    # Two empty pages and a record (3 calls), a record a poll, then nothing: 1 s idle.
    assert waits == [(3, 0.75), (4, 0.25), (5, 0.25), (6, 0.25), (7, 1.0), (8, 1.0)]


def test_the_command_says_a_call_failed_and_the_next_run_reads_on(
    settings: Settings, services: Services, domain: str, moto_url: str, relay: FaultRelay
) -> None:
    """`openprofiles connectors kinesis --once` used to end in a traceback whose message the
    log withholds; it reports what it read, and that a call failed (exit status 1)."""
    from click.testing import CliRunner

    from openprofiles.cli import main

    kinesis, stream = new_stream(moto_url)
    put(kinesis, stream, ctr("x0"))
    storage = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        storage += ["--database-url", settings.database_url]
    command = ["connectors", "kinesis", *storage, "--stream", stream, "--once"]
    command += ["--endpoint-url", relay.url]
    # An error botocore does not retry itself: one failed call.
    relay.fail("GetRecords", "KMSAccessDeniedException")

    failed = CliRunner().invoke(main, command)

    assert failed.exit_code == 1, failed.output
    assert "0 stream records" in failed.output
    assert "1 Kinesis calls failed" in failed.output
    again = CliRunner().invoke(main, command)
    assert again.exit_code == 0, again.output
    assert again.output.startswith("1 stream records: 1 contact records accepted")


# --- 2. empty pages --------------------------------------------------------------------------


def test_empty_pages_are_followed_while_the_shard_is_behind(
    services: Services, domain: str, moto_url: str, relay: FaultRelay
) -> None:
    """Kinesis may answer empty pages (MillisBehindLatest > 0) before a shard's records. One
    GetRecords a poll from a fresh iterator never got past them."""
    kinesis, stream = new_stream(moto_url)
    put(kinesis, stream, ctr("p0"), ctr("p1"), ctr("p2"))
    relay.empty_pages(3)

    first = connector(services, stream, relay.client(), clock=Clock()).poll_once()

    assert (first.stream_records, first.accepted) == (3, 3)
    assert relay.calls["GetRecords"] == 4


def test_empty_pages_followed_are_bounded_per_poll(
    services: Services, domain: str, moto_url: str, relay: FaultRelay
) -> None:
    kinesis, stream = new_stream(moto_url)
    put(kinesis, stream, ctr("q0"))
    conn = connector(services, stream, relay.client(), clock=Clock(), max_empty_pages=4)
    relay.empty_pages(6)
    assert conn.poll_once().stream_records == 0
    assert relay.calls["GetRecords"] == 4
    # The next poll goes on from where that one stopped (no new iterator).
    assert conn.poll_once().accepted == 1
    assert (relay.calls["GetRecords"], relay.calls["GetShardIterator"]) == (7, 1)
    # Caught up (MillisBehindLatest 0): an empty page ends the poll.
    relay.empty_pages(1, millis_behind=0)
    assert conn.poll_once().stream_records == 0
    assert relay.calls["GetRecords"] == 8


# --- 3. a stream deleted and created again -----------------------------------------------------


def test_a_recreated_stream_is_read_from_its_start(
    services: Services, domain: str, moto_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Checkpoints were kept by stream name: the new stream was read after the old one's
    sequence number (its records skipped on moto; InvalidArgumentException on AWS)."""
    kinesis, stream = new_stream(moto_url)
    put(kinesis, stream, *(ctr(f"old{n}") for n in range(5)))
    assert KinesisContactRecords(services, stream, client=kinesis).poll_once().accepted == 5
    kinesis.delete_stream(StreamName=stream)
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    put(kinesis, stream, *(ctr(f"new{n}") for n in range(3)))

    with caplog.at_level(logging.WARNING, logger="openprofiles.connectors.kinesis"):
        result = KinesisContactRecords(services, stream, client=kinesis).poll_once()

    assert (result.stream_records, result.accepted) == (3, 3)
    assert [found(services, f"new{n}") for n in range(3)] == [1, 1, 1]
    assert "deleted and created again" in caplog.text and "TRIM_HORIZON" in caplog.text
    identity = describe_identity(kinesis, stream)
    with services.read() as tx:
        assert load_checkpoints(tx, identity) == {SHARD0: "3"}


def test_a_running_connector_notices_the_stream_was_created_again(
    services: Services, domain: str, moto_url: str
) -> None:
    kinesis, stream = new_stream(moto_url)
    put(kinesis, stream, *(ctr(f"old{n}") for n in range(4)))
    clock = Clock()
    conn = connector(services, stream, kinesis, clock=clock)
    assert conn.poll_once().accepted == 4
    kinesis.delete_stream(StreamName=stream)
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    put(kinesis, stream, ctr("new0"), ctr("new1"))

    clock.now += REFRESH_SECONDS
    result = conn.poll_once()

    assert (result.stream_records, result.accepted) == (2, 2)


def legacy_checkpoint(services: Services, stream: str, sequence: str, age: timedelta) -> None:
    """A checkpoint as saved before 0029 (no stream identity: kept by name since 0039), `age`
    before now."""
    with services.write() as tx:
        tx.conn.execute(
            insert(stream_checkpoint_by_name).values(
                stream_name=stream,
                shard_id=SHARD0,
                sequence_number=sequence,
                updated_at=tx.now - age,
            )
        )


def test_a_checkpoint_saved_before_0029_goes_on_for_its_stream(
    services: Services, domain: str, moto_url: str
) -> None:
    kinesis, stream = new_stream(moto_url)
    put(kinesis, stream, ctr("l0"), ctr("l1"), ctr("l2"))
    legacy_checkpoint(services, stream, "2", timedelta(0))

    result = KinesisContactRecords(services, stream, client=kinesis).poll_once()

    assert (result.stream_records, found(services, "l2"), found(services, "l1")) == (1, 1, 0)
    with services.read() as tx:
        row = tx.conn.execute(select(stream_checkpoint)).one()
    identity = describe_identity(kinesis, stream)
    assert (row.sequence_number, row.stream_arn, row.stream_created_at) == (
        "3",
        identity.arn,
        identity.created_at,
    )


def test_a_checkpoint_saved_before_0029_and_before_the_stream_existed_is_dropped(
    services: Services, domain: str, moto_url: str
) -> None:
    kinesis, stream = new_stream(moto_url)
    put(kinesis, stream, ctr("m0"), ctr("m1"))
    legacy_checkpoint(services, stream, "7", timedelta(hours=1))

    result = KinesisContactRecords(services, stream, client=kinesis).poll_once()

    assert (result.stream_records, result.accepted) == (2, 2)


# --- 4. two connectors on one stream -----------------------------------------------------------


class SlowerReader:
    """Connector B's client: connector A polls twice while B waits for its GetRecords answer
    (after B made its iterator from the checkpoint, before B applies and saves)."""

    def __init__(self, inner: Any, other: KinesisContactRecords) -> None:
        self.inner = inner
        self.other: KinesisContactRecords | None = other

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get_records(self, **kw: Any) -> Any:
        if self.other is not None:
            other, self.other = self.other, None
            other.poll_once()
            other.poll_once()
        return self.inner.get_records(**kw)


def test_a_slower_connector_moves_no_checkpoint_back_and_letters_no_record_twice(
    settings: Settings, moto_url: str
) -> None:
    """The reviewer's reproduction: B saved checkpoint 2 over A's 4 and dead-lettered bad1 a
    second time; A then read records 3 and 4 again."""
    a_services, b_services = build_services(settings), build_services(settings)
    try:
        make_domain(a_services, "stream")
        with a_services.write() as tx:
            associate_instance(tx, domain_name="stream", instance_arn=INSTANCE, move=False)
        kinesis, stream = new_stream(moto_url)
        put(kinesis, stream, ctr("ok0"), ctr("bad1", **BAD), ctr("ok2"), ctr("ok3"))
        a = KinesisContactRecords(a_services, stream, client=kinesis, limit=2)
        b = KinesisContactRecords(b_services, stream, client=SlowerReader(kinesis, a), limit=2)

        b.poll_once()

        with a_services.read() as tx:
            assert load_checkpoints(tx, describe_identity(kinesis, stream)) == {SHARD0: "4"}
        assert a.poll_once().stream_records == 0
        with a_services.read() as tx:
            letters = list_messages(tx, domain_name="stream")
        assert [(json.loads(x.object_json)["ContactId"], x.attempts) for x in letters] == [
            ("bad1", 1)
        ]
    finally:
        a_services.database.dispose()
        b_services.database.dispose()


def test_a_record_read_again_gets_one_dead_letter_with_its_attempts(
    services: Services, domain: str, moto_url: str
) -> None:
    """Read again (its checkpoint deleted to read the stream again, or two connectors at the
    same moment), a rejected record was dead-lettered again: it has one letter, which names
    where it came from and counts the attempts."""
    kinesis, stream = new_stream(moto_url)
    put(kinesis, stream, ctr("good"), ctr("bad", **BAD))
    assert KinesisContactRecords(services, stream, client=kinesis).poll_once().rejected == 1
    with services.write() as tx:
        tx.conn.execute(stream_checkpoint.delete())

    assert KinesisContactRecords(services, stream, client=kinesis).poll_once().rejected == 1

    with services.read() as tx:
        [letter] = list_messages(tx, domain_name="stream")
    assert letter.attempts == 2
    assert letter.reason.startswith(f"Kinesis stream {stream}, shard {SHARD0}, sequence number 2: ")


BIG = "49590338271490256608559692538361571095921575989136588898"


def test_a_checkpoint_only_moves_forward(services: Services, moto_url: str) -> None:
    """Sequence numbers are compared as integers (56-digit decimal strings on AWS): (saved,
    then saved, kept), each case on a shard of its own."""
    kinesis, stream = new_stream(moto_url)
    identity = describe_identity(kinesis, stream)
    cases = [
        ("10", "9", "10"),
        ("9", "10", "10"),
        (BIG, BIG[:-1], BIG),
        (BIG[:-1], BIG, BIG),
        (BIG, str(int(BIG) - 1), BIG),
        (str(int(BIG) - 1), BIG, BIG),
    ]
    moved = []
    for shard, (saved, then, _) in enumerate(cases):
        with services.write() as tx:
            assert save_checkpoint(tx, f"shard-{shard}", saved, identity)
        with services.write() as tx:
            moved.append(save_checkpoint(tx, f"shard-{shard}", then, identity))
    assert moved == [then == kept for _, then, kept in cases]
    with services.read() as tx:
        assert load_checkpoints(tx, identity) == {
            f"shard-{shard}": kept for shard, (_, _, kept) in enumerate(cases)
        }


@pytest.mark.parametrize("settings", ["postgres"], indirect=True)
def test_a_checkpoint_saved_meanwhile_by_another_connector_is_not_moved_back(
    services: Services, moto_url: str
) -> None:
    """PostgreSQL: the older save waits for the newer one's transaction, then sees its
    checkpoint and leaves it (one statement: no read-then-write race)."""
    from tests.support.lock_waits import second_writer_meets_first

    kinesis, stream = new_stream(moto_url)
    identity = describe_identity(kinesis, stream)
    with services.write() as tx:
        save_checkpoint(tx, SHARD0, "2", identity)

    def older() -> bool:
        with services.write() as tx:
            return save_checkpoint(tx, SHARD0, "3", identity)

    moved = second_writer_meets_first(
        services, lambda tx: save_checkpoint(tx, SHARD0, "5", identity), older
    )

    assert moved is False
    with services.read() as tx:
        assert load_checkpoints(tx, identity) == {SHARD0: "5"}


# --- 5. what a stream record's data may be -----------------------------------------------------


def test_data_that_is_not_utf8_is_kept_as_it_came(
    services: Services, domain: str, moto_url: str
) -> None:
    """cp1252 text (a customer's name) was decoded with replacement characters and applied
    altered; binary data (gzip) was kept as replacement characters. Both are rejected now and
    kept with their bytes; a byte order mark is ignored, as POST /contact-records ignores one;
    a blank record is counted, rejected."""
    kinesis, stream = new_stream(moto_url)
    latin = json.dumps(ctr("latin", Attributes={"customerName": "José Müller"}), ensure_ascii=False)
    payloads = [
        latin.encode("cp1252"),
        gzip.compress(json.dumps(ctr("zipped")).encode()),
        codecs.BOM_UTF8 + json.dumps(ctr("bom")).encode(),
        b"  \n ",
    ]
    for data in payloads:
        kinesis.put_record(StreamName=stream, Data=data, PartitionKey="p")

    result = KinesisContactRecords(services, stream, client=kinesis).poll_once()

    assert (result.stream_records, result.accepted, result.rejected) == (4, 1, 3)
    assert found(services, "bom") == 1 and found(services, "latin") == 0
    with services.read() as tx:
        kept = {k.origin: k for k in list_unrouted(tx)}
    origin = f"Kinesis stream {stream}, shard {SHARD0}, sequence number "
    assert sorted(kept) == [f"{origin}1", f"{origin}2", f"{origin}4"]
    for n in (1, 2):
        assert kept[f"{origin}{n}"].reason == NOT_UTF8
        assert base64.b64decode(kept[f"{origin}{n}"].object_json) == payloads[n - 1]
    assert (kept[f"{origin}4"].reason, kept[f"{origin}4"].object_json) == (BLANK, "  \n ")


def test_the_identity_columns_start_empty_after_0029(settings: Settings) -> None:
    """Migration 0029 keeps the checkpoints saved before, without an identity (filled in by the
    connector on first use)."""
    from sqlalchemy import text

    from openprofiles.store.database import Database
    from openprofiles.store.migrate import upgrade_to

    database = Database.from_settings(settings)
    try:
        upgrade_to(database, "0028")
        with database.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO stream_checkpoint (stream_name, shard_id, sequence_number, "
                    "updated_at) VALUES ('s', 'shardId-000000000000', '42', :t)"
                ),
                {"t": "2026-11-29 00:00:00"},
            )
        upgrade_to(database, "0029")  # 0039 moves them (test_migration_0039)
        with database.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT sequence_number, stream_arn, stream_created_at FROM stream_checkpoint")
            ).all()
    finally:
        database.dispose()
    assert [tuple(r) for r in rows] == [("42", None, None)]


# --- 6. the database failing a poll ------------------------------------------------------------


def rename_table(services: Services, old: str, new: str) -> None:
    from sqlalchemy import text

    with services.write() as tx:
        tx.conn.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))


def test_the_command_reports_a_database_failure_without_a_traceback(
    settings: Settings, services: Services, domain: str, moto_url: str
) -> None:
    """`--once` ended in a traceback when the database failed the poll (`run` survives it;
    the single poll did not say what happened): now a one-line error with the error's type
    only, exit status 1, and the next run applies the record."""
    from click.testing import CliRunner

    from openprofiles.cli import main

    kinesis, stream = new_stream(moto_url)
    put(kinesis, stream, ctr("y0"))
    storage = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        storage += ["--database-url", settings.database_url]
    command = ["connectors", "kinesis", *storage, "--stream", stream, "--once"]
    command += ["--endpoint-url", moto_url]
    rename_table(services, "stream_checkpoint", "stream_checkpoint_away")
    try:
        failed = CliRunner().invoke(main, command)
    finally:
        rename_table(services, "stream_checkpoint_away", "stream_checkpoint")

    assert failed.exit_code == 1, failed.output
    assert "The poll failed in the database (" in failed.output
    assert "Traceback" not in failed.output and "stream_checkpoint" not in failed.output
    assert found(services, "y0") == 0
    again = CliRunner().invoke(main, command)
    assert again.exit_code == 0, again.output
    assert found(services, "y0") == 1
