"""`openprofiles ingest FILE` (ingest.bulk.ingest_records) on PostgreSQL applies a batch a bounded
number of records a transaction (store.chunks): a transaction holds an advisory lock for each
UNIQUE value and key of its records until it ends, in the lock table every session shares, and
a batch of 1,000 (`--batch-size 1000`) held about 3,000 in one transaction, so a few loaders at
once filled PostgreSQL's default table (SQLSTATE 53200). SQLite, which takes no such lock, still
applies a batch in one transaction. Either way each transaction is counted once committed, so a
load stopped part-way says what it applied."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select
from tests.support.advisory_locks import counting_commits
from tests.unit.ingest.conftest import DOMAIN, crm_type, put_type

from openprofiles.context import Services
from openprofiles.ingest.bulk import ingest_records
from openprofiles.store.chunks import PG_RECORDS_PER_TRANSACTION
from openprofiles.store.schema.objects import profile_object

BATCH = 1_000
# The most advisory locks a transaction of the load may hold: a record of the CRM type takes
# about three (its UNIQUE value, its two keys), so PG_RECORDS_PER_TRANSACTION records about 300;
# a dozen such transactions at once fit PostgreSQL's default table of 6,400 slots.
MOST_LOCKS_A_TRANSACTION = 5 * PG_RECORDS_PER_TRANSACTION


def records(count: int, start: int = 0) -> list[str]:
    return [
        json.dumps({"id": f"c-{n}", "email": f"c{n}@example.com", "first": f"F{n}"})
        for n in range(start, start + count)
    ]


def objects(services: Services) -> int:
    with services.read() as tx:
        return int(tx.conn.execute(select(func.count()).select_from(profile_object)).scalar_one())


@pytest.mark.usefixtures("domain")
def test_a_large_batch_is_applied_in_transactions_of_bounded_locks(services: Services) -> None:
    put_type(services, "Crm", crm_type())
    progress: list[int] = []

    with counting_commits(services) as commits:
        summary = ingest_records(
            services,
            domain_name=DOMAIN,
            object_type_name="Crm",
            records=records(BATCH + 50),
            batch_size=BATCH,
            on_progress=progress.append,
        )

    assert (summary.read, summary.ingested, summary.dead_lettered) == (BATCH + 50, BATCH + 50, 0)
    assert summary.created_profiles == BATCH + 50
    assert objects(services) == BATCH + 50
    if services.database.is_sqlite:
        # One transaction a batch, as before.
        assert progress == [BATCH, 50]
    else:
        assert commits.most <= MOST_LOCKS_A_TRANSACTION, commits.locks
        # The transactions that took locks (a read, check_target's, takes none): the load's.
        assert len([held for held in commits.locks if held]) == 11, commits.locks
        assert progress == [PG_RECORDS_PER_TRANSACTION] * 10 + [50]


@pytest.mark.usefixtures("domain")
def test_a_load_stopped_part_way_through_a_batch_counted_what_it_committed(
    services: Services,
) -> None:
    """Stopped (Ctrl-C) as the load reports its third transaction: on PostgreSQL the 300 records
    of the three are committed, and counted (the loader's "N of M records were loaded" sums
    what on_progress was told); on SQLite the batch is one transaction, committed whole."""
    put_type(services, "Crm", crm_type())
    told: list[int] = []

    def stop_at_third(count: int) -> None:
        told.append(count)
        if len(told) == 3 or services.database.is_sqlite:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ingest_records(
            services,
            domain_name=DOMAIN,
            object_type_name="Crm",
            records=records(BATCH),
            batch_size=BATCH,
            on_progress=stop_at_third,
        )

    assert sum(told) == objects(services)
    assert sum(told) == (BATCH if services.database.is_sqlite else 3 * PG_RECORDS_PER_TRANSACTION)
