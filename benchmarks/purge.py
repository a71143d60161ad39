"""The periodic purge of expired profile objects (objects.expiry.purge_once) at scale.

N objects of one domain, all expired, sharing a few expiry values as objects ingested in bulk
do (one by default, the purge's worst case), each with a key row, are inserted directly (random
sealed bytes: the purge never opens them); then one purge is timed in-process. Reported: its
seconds (and this process's CPU seconds, steadier on a busy machine), objects/s, and the
longest transaction it held (on SQLite the one writer every API write waits for).

    .venv/bin/python benchmarks/purge.py --objects 100000
    .venv/bin/python benchmarks/purge.py --objects 100000 \\
        --database-url postgresql://postgres@127.0.0.1:5432/bench

On PostgreSQL, give it a new empty database each run: the keyring it makes in a temporary
directory must be the database's.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqlalchemy import event, func, insert, select, text  # noqa: E402

from openprofiles.app import build_services  # noqa: E402
from openprofiles.context import Principal, RequestContext, Services  # noqa: E402
from openprofiles.domains.handlers import create_domain  # noqa: E402
from openprofiles.objects.expiry import purge_once  # noqa: E402
from openprofiles.settings import Settings  # noqa: E402
from openprofiles.store.schema import profile, profile_object, profile_object_key  # noqa: E402

OBJECTS_PER_PROFILE = 10


def load(services: Services, domain: str, count: int, expiries: int, batch: int) -> None:
    create_domain(
        RequestContext(services=services, principal=Principal("bench", "admin")),
        {"DomainName": domain, "DefaultExpirationDays": 30},
    )
    now = datetime.now(UTC)
    # Expired a day ago, `expiries` distinct values a second apart.
    expired = [now - timedelta(days=1, seconds=n) for n in range(expiries)]
    for start in range(0, count, batch):
        profiles, objects, keys = [], [], []
        for i in range(start, min(count, start + batch)):
            if i % OBJECTS_PER_PROFILE == 0:
                pid = uuid.uuid4().hex
                profiles.append(
                    {
                        "domain_name": domain,
                        "profile_id": pid,
                        "sealed": os.urandom(200),
                        "version": 1,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            digest = os.urandom(16)
            objects.append(
                {
                    "domain_name": domain,
                    "object_type_name": "Orders",
                    "unique_digest": digest,
                    "profile_id": pid,
                    "sealed": b"x",
                    "size": 500,
                    "created_at": now,
                    "updated_at": now,
                    "expires_at": expired[i % expiries],
                }
            )
            keys.append(
                {
                    "domain_name": domain,
                    "object_type_name": "Orders",
                    "unique_digest": digest,
                    "key_name": "orderId",
                    "digest": os.urandom(16),
                }
            )
        with services.database.write() as conn:
            conn.execute(insert(profile), profiles)
            conn.execute(insert(profile_object), objects)
            conn.execute(insert(profile_object_key), keys)
    with services.database.write() as conn:
        conn.execute(text("ANALYZE"))


def longest_transaction(services: Services) -> list[float]:
    """Seconds of each transaction committed from now on, as the engine reports them."""
    held: list[float] = []
    began: dict[int, float] = {}

    def begin(conn: Any) -> None:
        began[id(conn)] = time.perf_counter()

    def end(conn: Any) -> None:
        start = began.pop(id(conn), None)
        if start is not None:
            held.append(time.perf_counter() - start)

    engine = services.database.engine
    event.listen(engine, "begin", begin)
    event.listen(engine, "commit", end)
    event.listen(engine, "rollback", end)
    return held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=20_000)
    parser.add_argument("--expiries", type=int, default=1, help="distinct expiry values")
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--chunk", type=int, default=None, help="objects a transaction")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="op-purge-") as data_dir:
        services = build_services(Settings(data_dir=Path(data_dir), database_url=args.database_url))
        try:
            domain = f"purge-{uuid.uuid4().hex[:8]}"
            print(f"Loading {args.objects:,} expired objects ({args.expiries} expiries) ...")
            load(services, domain, args.objects, args.expiries, args.batch)
            held = longest_transaction(services)
            started, cpu = time.perf_counter(), time.process_time()
            chunk = {} if args.chunk is None else {"object_chunk": args.chunk}
            purged = purge_once(services, **chunk)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            with services.read() as tx:
                left = tx.conn.execute(
                    select(func.count()).where(profile_object.c.domain_name == domain)
                ).scalar()
            print(
                f"purged {purged:,} objects in {seconds:.2f} s ({cpu:.2f} s CPU here): "
                f"{purged / seconds:,.0f} objects/s; "
                f"{len(held)} transactions, longest {max(held, default=0.0):.2f} s; left {left}"
            )
        finally:
            services.database.dispose()


if __name__ == "__main__":
    main()
