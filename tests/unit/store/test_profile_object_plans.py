"""The reads of a profile's objects are served by the one index of them,
ix_profile_object_profile (domain, profile, type, updated_at, write_order, expires_at, size;
migration 0034): the listing newest first and eviction in write order, the per-type and
per-profile counts for the quota, and GetDomain's per-profile pass for its Stats, the counts
from the index alone. Plans are read with EXPLAIN QUERY PLAN on SQLite; on PostgreSQL with
sequential and bitmap scans off, as the planner picks among access paths by the statistics of
these tiny tables, which say nothing of a large one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event
from tests.unit.integrations.integ_helpers import associate, ctr, make_domain, send

from openprofiles.context import Services, Tx
from openprofiles.objects import service as objects
from openprofiles.profiles.service import SearchCriterion, search_profiles

D = "plans"
INDEX = "ix_profile_object_profile"


@pytest.fixture
def profile_id(services: Services) -> str:
    """A profile with 12 contact records, and another with 3."""
    make_domain(services, D)
    associate(services, D)
    send(services, *(ctr(f"p-{n}", start=f"2026-01-{1 + n:02d}T09:00:00Z") for n in range(12)))
    send(services, *(ctr(f"q-{n}", address="+17208401004") for n in range(3)))
    with services.read() as tx:
        page, _ = search_profiles(
            tx, domain_name=D, criteria=[SearchCriterion("_ctrContactId", ("p-0",))]
        )
    [(found, _)] = page
    return found.profile_id


@contextmanager
def statements(tx: Tx) -> Iterator[list[tuple[str, Any]]]:
    """The statements run on the transaction's connection meanwhile, with their parameters. On
    SQLite from the driver's trace (its values written in), as the hot reads go to the driver
    directly (store.prepared)."""
    seen: list[tuple[str, Any]] = []
    if tx.conn.dialect.name == "sqlite":
        driver = tx.conn.connection.driver_connection
        driver.set_trace_callback(lambda sql: seen.append((sql, ())))
        try:
            yield seen
        finally:
            driver.set_trace_callback(None)
        return

    def note(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(tx.conn, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(tx.conn, "before_cursor_execute", note)


def plan_of(services: Services, read: Callable[[Tx], Any], marker: str) -> str:
    """The plan of the one statement containing `marker` that `read` runs."""
    with services.write() as tx, statements(tx) as seen:
        read(tx)
    [(query, parameters)] = [s for s in seen if marker in s[0]]
    with services.database.engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + query, parameters)
            return "\n".join(str(row[-1]) for row in rows)
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        conn.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
        rows = conn.exec_driver_sql("EXPLAIN " + query, parameters)
        return "\n".join(str(row[0]) for row in rows)


def covered(services: Services, plan: str, *columns: str) -> bool:
    """Whether the plan reads the index alone, looking up `columns`."""
    if services.settings.is_sqlite:
        condition = " AND ".join(f"{c}=?" for c in columns)
        return f"SEARCH profile_object USING COVERING INDEX {INDEX} ({condition})" in plan
    return f"Index Only Scan using {INDEX} on profile_object" in plan


def test_the_counts_read_the_index_alone(services: Services, profile_id: str) -> None:
    """GetDomain's pass (count, size, MeteringProfileCount per profile), the quota's bound per
    profile and its exact count per type: no table row read, and no sort (grouped in the
    index's order)."""

    def usage(tx: Tx) -> None:
        assert objects.object_usage(tx, domain_name=D).count == 15

    def bounds(tx: Tx) -> None:
        assert objects.object_count_bounds(tx, domain_name=D, profile_ids=[profile_id]) == {
            profile_id: 12
        }

    def by_type(tx: Tx) -> None:
        counts = objects.count_objects_by_type(tx, domain_name=D, profile_id=profile_id)
        assert counts == {"CTR": 12}

    for read, marker, columns in (
        (usage, "sum(", ("domain_name",)),
        (bounds, "profile_object.profile_id IN", ("domain_name", "profile_id")),
        (by_type, "GROUP BY profile_object.object_type_name", ("domain_name", "profile_id")),
    ):
        plan = plan_of(services, read, marker)
        assert covered(services, plan, *columns), plan
        assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan


def test_the_listing_and_eviction_read_in_write_order(services: Services, profile_id: str) -> None:
    """ListProfileObjects newest first and eviction oldest first find the profile's objects of
    the type by the index, in (updated_at, write_order) order: on SQLite nothing sorts them as a
    whole, only ties of both (the UNIQUE digest of rows written before write_order was kept)."""

    def listing(tx: Tx) -> None:
        page, more = objects.list_profile_objects(
            tx, domain_name=D, object_type_name="CTR", profile_id=profile_id, limit=5
        )
        assert len(page) == 5 and more

    def eviction(tx: Tx) -> None:
        assert objects.evict_oldest(
            tx, domain_name=D, profile_id=profile_id, object_type_name="CTR"
        )

    # The read that orders the profile's objects (an evicted contact's erasure reads merge logs
    # a page at a time too).
    marker = "ORDER BY profile_object.updated_at"
    for read in (listing, eviction):
        plan = plan_of(services, read, marker)
        if services.settings.is_sqlite:
            lookup = "(domain_name=? AND profile_id=? AND object_type_name=?)"
            assert f"SEARCH profile_object USING INDEX {INDEX} {lookup}" in plan, plan
            assert "USE TEMP B-TREE FOR ORDER BY" not in plan, plan
        else:
            # Whether PostgreSQL sorts what it found (at most MaxProfileObjectCount rows) or
            # reads it presorted depends on its statistics: only the index is asserted.
            assert f"using {INDEX} on profile_object" in plan, plan
