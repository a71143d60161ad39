"""How many records one write transaction of a batch applies: every way a batch comes in (a
`POST /contact-records` body, `openprofiles ingest` of objects or contact records, a Kinesis
shard's page, a flow's batch) cuts it here, so the bound lives in one place.

On PostgreSQL a transaction holds an advisory lock for each contact, UNIQUE value and key of
its records (store.advisory, ingest.pipeline), four for a plain record, until it ends; they are
slots of the lock table every session shares (max_locks_per_transaction x max_connections:
6,400 at PostgreSQL's defaults). A batch of 500 records (ingest.DEFAULT_BATCH_SIZE) held 2,000
of them, three such batches at once filled the table (SQLSTATE 53200, answered "send smaller
batches"), and a batch of 5,000 could never apply. So on PostgreSQL a batch is applied
PG_RECORDS_PER_TRANSACTION records a transaction, one after another: about 400 locks each, so
a dozen loaders and servers writing at once still leave most of the table free, while a
transaction stays large enough that its commit (one WAL flush) costs little a record.

SQLite takes no advisory lock and has one writer, whose speed depends on large transactions:
a batch is one transaction there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

PG_RECORDS_PER_TRANSACTION = 100


def transaction_chunks(
    items: Sequence[T], *, is_sqlite: bool, records: Callable[[T], int] | None = None
) -> Iterator[Sequence[T]]:
    """`items` cut into the runs applied one transaction each, in order: all of them at once on
    SQLite (nothing for no items); on PostgreSQL runs of at most PG_RECORDS_PER_TRANSACTION
    records, an item counting `records(item)` of them (1 each by default: a Kinesis stream
    record can hold several contact records, and cannot be cut, so one that holds more than
    the bound is a run of its own)."""
    if is_sqlite:
        if items:
            yield items
        return
    start = held = 0
    for index, item in enumerate(items):
        count = records(item) if records is not None else 1
        if held and held + count > PG_RECORDS_PER_TRANSACTION:
            yield items[start:index]
            start, held = index, 0
        held += count
    if start < len(items):
        yield items[start:]
