"""The Kinesis connector on PostgreSQL applies a shard's page a bounded number of contact records
a transaction (store.chunks), each saving the shard's checkpoint at its last stream record: a
page of 350 records in one transaction held an advisory lock for each contact, UNIQUE value and
key of its records (about 1,400), slots of the lock table every session shares. A crash between
two transactions of a page resumes after the last one committed, applying nothing twice and
losing nothing. On SQLite a page is one transaction, its checkpoint with it, as before."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from sqlalchemy import event, func, select
from sqlalchemy.engine import Connection
from tests.support.advisory_locks import counting_commits
from tests.unit.integrations.integ_helpers import associate, ctr, make_domain

from openprofiles.connectors.kinesis import KinesisContactRecords
from openprofiles.context import Services
from openprofiles.store.chunks import PG_RECORDS_PER_TRANSACTION
from openprofiles.store.schema import contact_record, stream_checkpoint

PAGE = 350
# The most advisory locks a transaction of the page may hold: a plain contact record takes
# four (1,401 for the page of 350 in one transaction), so PG_RECORDS_PER_TRANSACTION records
# about 400.
MOST_LOCKS_A_TRANSACTION = 5 * PG_RECORDS_PER_TRANSACTION


@pytest.fixture(autouse=True)
def _aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")


def stream_of(moto_url: str, count: int) -> tuple[Any, str, list[str]]:
    """A one-shard stream of `count` contact records, one a stream record: (client, name, their
    sequence numbers in order)."""
    kinesis = boto3.client("kinesis", endpoint_url=moto_url, region_name="us-east-1")
    stream = f"ctr-{uuid.uuid4().hex[:12]}"
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    numbers: list[str] = []
    for start in range(0, count, 250):
        put = kinesis.put_records(
            StreamName=stream,
            Records=[
                {
                    "Data": json.dumps(ctr(f"k-{n}", address=f"+1206{5_000_000 + n:07d}")).encode(),
                    "PartitionKey": "p",
                }
                for n in range(start, min(start + 250, count))
            ],
        )
        assert not put.get("FailedRecordCount")
        numbers += [r["SequenceNumber"] for r in put["Records"]]
    return kinesis, stream, numbers


def applied(services: Services) -> int:
    with services.read() as tx:
        return int(tx.conn.execute(select(func.count()).select_from(contact_record)).scalar_one())


def checkpoint(services: Services, stream: str) -> str | None:
    with services.read() as tx:
        return tx.conn.execute(
            select(stream_checkpoint.c.sequence_number).where(
                stream_checkpoint.c.stream_name == stream
            )
        ).scalar()


def test_a_page_is_applied_in_transactions_of_bounded_locks(
    services: Services, moto_url: str
) -> None:
    make_domain(services, "stream")
    associate(services, "stream")
    kinesis, stream, numbers = stream_of(moto_url, PAGE)
    connector = KinesisContactRecords(services, stream, client=kinesis, limit=PAGE)

    with counting_commits(services) as commits:
        result = connector.poll_once()

    assert (result.stream_records, result.accepted, result.rejected) == (PAGE, PAGE, 0)
    assert applied(services) == PAGE
    assert checkpoint(services, stream) == numbers[-1]
    if not services.database.is_sqlite:
        assert commits.most <= MOST_LOCKS_A_TRANSACTION, commits.locks
        # The page's transactions (the others, of the stream's checkpoints, take no lock).
        assert len([held for held in commits.locks if held]) == 4, commits.locks


class Crash(Exception):
    """The connector's process dying as a transaction commits: that transaction is not applied."""


@contextmanager
def crash_committing_past(services: Services, stream: str, sequence_number: str) -> Iterator[None]:
    """The first transaction that would move the stream's checkpoint past `sequence_number`
    fails to commit (Crash), as when the process dies then: it is rolled back, and Crash ends
    the poll."""

    def on_commit(conn: Connection) -> None:
        # Straight to the driver, inside the transaction being committed: what it would save.
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(
                "SELECT sequence_number FROM stream_checkpoint "
                f"WHERE stream_name = '{stream}'"  # a name the test made: no quoting needed
            )
            row = cursor.fetchone()
        finally:
            cursor.close()
        if row is not None and int(row[0]) > int(sequence_number):
            raise Crash

    engine = services.database.engine
    event.listen(engine, "commit", on_commit)
    try:
        yield
    finally:
        event.remove(engine, "commit", on_commit)


def test_a_crash_between_transactions_of_a_page_resumes_after_the_last_committed(
    services: Services, moto_url: str
) -> None:
    """The page of 350 records dies as it commits a checkpoint past its 200th: on PostgreSQL
    the first two transactions (200 records) are committed with their checkpoint, the third
    is not, and a restarted connector applies the 150 after the checkpoint, once each; on
    SQLite the page is one transaction, none of it committed, and the restart applies all of
    it."""
    make_domain(services, "stream")
    associate(services, "stream")
    kinesis, stream, numbers = stream_of(moto_url, PAGE)
    two = 2 * PG_RECORDS_PER_TRANSACTION
    crashing = KinesisContactRecords(services, stream, client=kinesis, limit=PAGE)

    with crash_committing_past(services, stream, numbers[two - 1]), pytest.raises(Crash):
        crashing.poll_once()

    sqlite = services.database.is_sqlite
    committed = 0 if sqlite else two
    assert applied(services) == committed
    assert checkpoint(services, stream) == (None if sqlite else numbers[committed - 1])

    restarted = KinesisContactRecords(services, stream, client=kinesis, limit=PAGE)
    result = restarted.poll_once()

    assert (result.stream_records, result.accepted, result.rejected) == (
        PAGE - committed,
        PAGE - committed,
        0,
    )
    assert applied(services) == PAGE
    assert checkpoint(services, stream) == numbers[-1]
    assert restarted.poll_once().stream_records == 0
