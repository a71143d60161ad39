"""The dead-letter counts of GET /metrics (dlq.service.count_letters) at scale.

N dead letters over a few domains are inserted directly, as the store holds them: a sealed
record of a few hundred bytes to a couple of kilobytes (random bytes: the counts never open
them), a reason category, a sink-error mark (most kept here only or sent, some failed, a few
pending), a repeat digest for those read from a file. Then count_letters, the read behind every
scrape's dead-letter gauges, is timed in-process, and its plan printed: with the index of
migration 0043 it reads the index alone, without it the whole table.

    .venv/bin/python benchmarks/dlq_counts.py --letters 1000000 --data-dir /tmp/op-dlq-1m
    .venv/bin/python benchmarks/dlq_counts.py --letters 1000000 --data-dir /tmp/op-dlq-pg \\
        --database-url postgresql://postgres@127.0.0.1:5432/bench

`--reuse` keeps the letters loaded by an earlier run (and its data dir, whose keyring is the
database's) and brings the schema up to date first, timing that: the same letters measured
before and after a migration. The tables are vacuumed and analysed after loading (on
PostgreSQL, until its visibility map is set, index-only scans read the heap).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqlalchemy import event, insert, select  # noqa: E402

from openprofiles.app import build_services  # noqa: E402
from openprofiles.context import Principal, RequestContext, Services  # noqa: E402
from openprofiles.dlq import service as dlq  # noqa: E402
from openprofiles.domains.handlers import create_domain  # noqa: E402
from openprofiles.settings import Settings  # noqa: E402
from openprofiles.store.schema import dlq_message  # noqa: E402

DOMAINS = ("care", "sales", "billing", "claims", "returns")
CATEGORIES = ("no_profile", "missing_key", "ambiguous", "invalid_value", "transient")
# Sink-error marks and their shares: most letters' domains have no queue or were sent (None).
MARKS: tuple[tuple[str | None, float], ...] = (
    (dlq.NO_QUEUE, 0.55),
    (None, 0.30),
    (dlq.SQS_FAILED, 0.10),
    (dlq.SQS_PENDING, 0.03),
    (dlq.NOT_RECORDED, 0.02),
)


def letter(rng: random.Random, domain_name: str, created: datetime) -> dict[str, Any]:
    [mark] = rng.choices([m for m, _ in MARKS], weights=[w for _, w in MARKS])
    from_file = rng.random() < 0.3
    return {
        "domain_name": domain_name,
        # As dlq.service.new_message_id: the time first, then random digits.
        "message_id": f"{int(created.timestamp() * 1e9):016x}{rng.getrandbits(64):016x}",
        "object_type_name": rng.choice(("Crm", "Tickets", "CTR")),
        "sealed": os.urandom(rng.randint(300, 2000)),
        "reason_category": rng.choice(CATEGORIES),
        "attempts": rng.randint(1, 3),
        "sink_error": mark,
        "sink_sealed": os.urandom(120) if mark == dlq.SQS_FAILED else None,
        "created_at": created,
        "last_attempt_at": created,
        "repeat_digest": rng.randbytes(16) if from_file else None,
    }


def load(services: Services, count: int, batch: int) -> None:
    ctx = RequestContext(services=services, principal=Principal("bench", "admin"))
    for name in DOMAINS:
        create_domain(ctx, {"DomainName": name, "DefaultExpirationDays": 365})
    rng = random.Random(7)
    start = datetime.now(UTC) - timedelta(days=30)
    step = timedelta(days=30) / count
    for first in range(0, count, batch):
        rows = [
            letter(rng, rng.choice(DOMAINS), start + step * n)
            for n in range(first, min(count, first + batch))
        ]
        with services.database.write() as conn:
            conn.execute(insert(dlq_message), rows)


def vacuum(services: Services) -> None:
    """VACUUM and ANALYZE outside a transaction (PostgreSQL refuses VACUUM inside one)."""
    with services.database.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        if services.database.is_sqlite:
            conn.exec_driver_sql("ANALYZE")
        else:
            conn.exec_driver_sql("VACUUM ANALYZE dlq_message")


def plan(services: Services) -> str:
    """The plan of count_letters' statement, caught as it runs."""
    seen: list[tuple[str, Any]] = []

    def note(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    with services.read() as tx:
        event.listen(tx.conn, "before_cursor_execute", note)
        try:
            dlq.count_letters(tx)
        finally:
            event.remove(tx.conn, "before_cursor_execute", note)
    [(query, parameters)] = seen
    with services.database.engine.connect() as conn:
        if services.database.is_sqlite:
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + query, parameters)
            return "; ".join(str(row[-1]) for row in rows)
        rows = conn.exec_driver_sql("EXPLAIN " + query, parameters)
        return "; ".join(str(row[0]).strip() for row in rows if "cost=" in str(row[0]))


def timed(services: Services, runs: int) -> tuple[list[float], dlq.LetterCounts]:
    """Milliseconds of each count_letters in a read transaction, and its last answer."""
    times: list[float] = []
    answer = None
    for _ in range(runs):
        with services.read() as tx:
            started = time.perf_counter()
            answer = dlq.count_letters(tx)
            times.append((time.perf_counter() - started) * 1000)
    assert answer is not None
    return times, answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--letters", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--data-dir", type=Path, default=Path("benchmarks/.work/dlq-counts"))
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--reuse", action="store_true", help="keep the letters already loaded")
    args = parser.parse_args()

    if not args.reuse:
        shutil.rmtree(args.data_dir, ignore_errors=True)
    started = time.perf_counter()
    services = build_services(Settings(data_dir=args.data_dir, database_url=args.database_url))
    try:
        if args.reuse:
            print(f"Schema brought up to date in {time.perf_counter() - started:.1f} s", flush=True)
        else:
            print(f"Loading {args.letters:,} dead letters ...", flush=True)
            started = time.perf_counter()
            load(services, args.letters, args.batch)
            print(f"  loaded in {time.perf_counter() - started:.0f} s", flush=True)
        vacuum(services)
        with services.read() as tx:
            stored = tx.conn.execute(select(dlq_message.c.message_id).limit(1)).first()
        assert stored is not None, "no letters loaded: run without --reuse first"
        print(f"plan: {plan(services)}", flush=True)
        times, answer = timed(services, args.runs)
        print(
            f"count_letters: median {statistics.median(times):.0f} ms  "
            f"min {min(times):.0f} ms  max {max(times):.0f} ms  (runs={len(times)})",
            flush=True,
        )
        print(
            f"  {sum(answer.by_category.values()):,} letters in {len(answer.by_category)} "
            f"(domain, category) pairs; failed sends by domain {answer.unsent}",
            flush=True,
        )
    finally:
        services.database.dispose()


if __name__ == "__main__":
    main()
