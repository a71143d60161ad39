"""store.chunks cuts a batch into the runs applied one transaction each: the whole batch on
SQLite, at most PG_RECORDS_PER_TRANSACTION records a run on PostgreSQL, an item that holds
several records (a Kinesis stream record of JSON lines) counted for them, and never cut."""

from __future__ import annotations

from openprofiles.store.chunks import PG_RECORDS_PER_TRANSACTION, transaction_chunks

BOUND = PG_RECORDS_PER_TRANSACTION


def test_sqlite_applies_a_batch_in_one_transaction() -> None:
    batch = list(range(5 * BOUND + 1))
    assert list(transaction_chunks(batch, is_sqlite=True)) == [batch]
    assert list(transaction_chunks([], is_sqlite=True)) == []


def test_postgresql_applies_at_most_the_bound_a_transaction_in_order() -> None:
    batch = list(range(2 * BOUND + 1))
    runs = list(transaction_chunks(batch, is_sqlite=False))
    assert [len(run) for run in runs] == [BOUND, BOUND, 1]
    assert [item for run in runs for item in run] == batch
    assert list(transaction_chunks([], is_sqlite=False)) == []


def test_an_item_of_several_records_counts_them_and_is_never_cut() -> None:
    sizes = [1] * (BOUND - 1) + [2, 3 * BOUND, 1]
    runs = list(transaction_chunks(sizes, is_sqlite=False, records=lambda size: size))
    # The item of 2 would pass the bound: it starts the next run; the one larger than the bound
    # is a run of its own.
    assert [list(run) for run in runs] == [[1] * (BOUND - 1), [2], [3 * BOUND], [1]]
