"""GetDomain's Stats at scale: a domain of N profiles, most with one object, a few over 100.

Rows are inserted directly (random sealed bytes: Stats never opens them), so a million profiles
load in minutes; then domains.service.domain_stats is timed in-process, with its objects pass
(objects.service.object_usage: ObjectCount, the objects' TotalSize and MeteringProfileCount)
beside a plain count and sum of the objects for comparison.

    .venv/bin/python benchmarks/domain_stats.py --profiles 1000000 --data-dir /tmp/op-stats-1m
    .venv/bin/python benchmarks/domain_stats.py --profiles 1000000 --data-dir /tmp/op-stats-pg \\
        --database-url postgresql://postgres@127.0.0.1:5432/bench

On PostgreSQL, VACUUM the table after loading (as autovacuum eventually does): until its
visibility map is set, index-only scans read the heap.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqlalchemy import func, insert, or_, select, text  # noqa: E402

from openprofiles.app import build_services  # noqa: E402
from openprofiles.context import Principal, RequestContext, Services  # noqa: E402
from openprofiles.domains import service as domains  # noqa: E402
from openprofiles.domains.handlers import create_domain  # noqa: E402
from openprofiles.objects import service as objects  # noqa: E402
from openprofiles.settings import Settings  # noqa: E402
from openprofiles.store.schema import profile, profile_object  # noqa: E402

DOMAIN = "bench"


def objects_of(rng: random.Random) -> int:
    """Objects of one profile: 98.8 % one, 1 % 2-20, 0.2 % 101-300 (metered two or three)."""
    r = rng.random()
    if r < 0.988:
        return 1
    return rng.randint(2, 20) if r < 0.998 else rng.randint(101, 300)


def load(services: Services, count: int, batch: int) -> int:
    create_domain(
        RequestContext(services=services, principal=Principal("bench", "admin")),
        {"DomainName": DOMAIN, "DefaultExpirationDays": 30},
    )
    rng = random.Random(7)
    now = datetime.now(UTC)
    expires = now + timedelta(days=30)
    total = 0
    for start in range(0, count, batch):
        profiles, rows = [], []
        for _ in range(start, min(count, start + batch)):
            pid = uuid.uuid4().hex
            profiles.append(
                {
                    "domain_name": DOMAIN,
                    "profile_id": pid,
                    "sealed": os.urandom(rng.randint(150, 400)),
                    "version": 1,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            rows += [
                {
                    "domain_name": DOMAIN,
                    "object_type_name": "Crm",
                    "unique_digest": os.urandom(16),
                    "profile_id": pid,
                    "sealed": b"x",
                    "size": rng.randint(200, 2000),
                    "created_at": now,
                    "updated_at": now,
                    "expires_at": expires,
                }
                for _ in range(objects_of(rng))
            ]
        with services.database.write() as conn:
            conn.execute(insert(profile), profiles)
            conn.execute(insert(profile_object), rows)
        total += len(rows)
    with services.database.write() as conn:
        conn.execute(text("ANALYZE"))
    return total


def timed(services: Services, runs: int, read: Callable[[Any], Any]) -> tuple[float, Any]:
    """Median milliseconds of `read` in a read transaction, and its last answer."""
    times, answer = [], None
    for _ in range(runs):
        with services.read() as tx:
            started = time.perf_counter()
            answer = read(tx)
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), answer


def plain_totals(tx: Any) -> Any:
    """Counting and summing the objects without grouping them by profile."""
    live = or_(profile_object.c.expires_at.is_(None), profile_object.c.expires_at > tx.now)
    return tx.conn.execute(
        select(func.count(), func.sum(profile_object.c.size)).where(
            profile_object.c.domain_name == DOMAIN, live
        )
    ).one()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--data-dir", type=Path, default=Path("benchmarks/.work/domain-stats"))
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--reuse", action="store_true", help="keep an already loaded domain")
    args = parser.parse_args()

    if not args.reuse:
        shutil.rmtree(args.data_dir, ignore_errors=True)
    services = build_services(Settings(data_dir=args.data_dir, database_url=args.database_url))
    try:
        if not args.reuse:
            print(f"Loading {args.profiles:,} profiles ...", flush=True)
            print(f"  {load(services, args.profiles, args.batch):,} objects", flush=True)
        for name, read in (
            (
                "GetDomain Stats (domain_stats)",
                lambda tx: domains.domain_stats(tx, domain_name=DOMAIN),
            ),
            (
                "  objects pass (object_usage)",
                lambda tx: objects.object_usage(tx, domain_name=DOMAIN),
            ),
            ("  for comparison: objects counted and summed", plain_totals),
        ):
            ms, answer = timed(services, args.runs, read)
            print(f"{name}: {ms:.0f} ms median  {answer}", flush=True)
    finally:
        services.database.dispose()


if __name__ == "__main__":
    main()
