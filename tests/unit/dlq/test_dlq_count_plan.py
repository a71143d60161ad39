"""GET /metrics' dead-letter counts (dlq.service.count_letters) read ix_dlq_message_category
(domain, reason category, sink error; migration 0043) alone, never the table of sealed records.
Plans are read with EXPLAIN QUERY PLAN on SQLite; on PostgreSQL with sequential and bitmap scans
off, as the planner picks among access paths by the statistics of this tiny table, which say
nothing of a large one."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from tests.unit.ingest.conftest import make_domain

from openprofiles.context import Services
from openprofiles.dlq import service

INDEX = "ix_dlq_message_category"


def _letters(services: Services) -> None:
    """Letters of two domains, of two categories, sent, failed and kept here only."""
    for domain_name in (make_domain(services), make_domain(services, "other")):
        for category, sink_error in (
            ("no_profile", None),
            ("no_profile", service.SQS_FAILED),
            ("invalid_value", service.NO_QUEUE),
        ):
            with services.write() as tx:
                service.put(
                    tx,
                    domain_name=domain_name,
                    object_type_name="Crm",
                    object_json='{"id": "1"}',
                    reason="a reason",
                    category=category,
                    sink_error=sink_error,
                )


def _plan_of_count(services: Services) -> tuple[str, service.LetterCounts]:
    """The plan of the statement count_letters runs, and what it counted."""
    seen: list[tuple[str, Any]] = []

    def note(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    with services.read() as tx:
        event.listen(tx.conn, "before_cursor_execute", note)
        try:
            counts = service.count_letters(tx)
        finally:
            event.remove(tx.conn, "before_cursor_execute", note)
    [(query, parameters)] = seen
    with services.database.engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + query, parameters)
            return "\n".join(str(row[-1]) for row in rows), counts
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        conn.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
        rows = conn.exec_driver_sql("EXPLAIN " + query, parameters)
        return "\n".join(str(row[0]) for row in rows), counts


def test_the_dead_letter_counts_read_the_index_alone(services: Services) -> None:
    """No table row read; on SQLite no sort either (grouped in the index's order)."""
    _letters(services)
    plan, counts = _plan_of_count(services)
    if services.settings.is_sqlite:
        assert f"SCAN dlq_message USING COVERING INDEX {INDEX}" in plan, plan
        assert "TEMP B-TREE" not in plan, plan
    else:
        assert f"Index Only Scan using {INDEX} on dlq_message" in plan, plan
    # Read from the index, the counts are those of the letters.
    assert counts == service.LetterCounts(
        by_category={
            (domain_name, category): letters
            for domain_name in ("ingest", "other")
            for category, letters in (("no_profile", 2), ("invalid_value", 1))
        },
        unsent={"ingest": 1, "other": 1},
    )
