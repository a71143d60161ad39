"""Writers contending for the same few customers on PostgreSQL, with auto-merge on.

Several processes (as several `openprofiles serve` workers on one database), each with several
threads, write the same few customers for a fixed time: PutProfileObject (found by an account
record's id, email or phone), CreateProfile (a duplicate that auto-merges), UpdateProfile and
AddProfileKey (of the profile a search finds, the search timed with it). Every request runs as
the server runs it: its handler, run again after a lost race (store.conflicts.retrying).
Reported: deadlocks (the PostgreSQL statistics of a database the benchmark makes for itself and
drops), the lost races run again by kind, latency percentiles, requests over 5 s, and requests
answered 500 (a race lost four times).

    .venv/bin/python benchmarks/contention.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import percentile  # noqa: E402
from openprofiles.app import build_services  # noqa: E402
from openprofiles.context import Principal, RequestContext  # noqa: E402
from openprofiles.domains.handlers import create_domain  # noqa: E402
from openprofiles.errors import InternalServer  # noqa: E402
from openprofiles.object_types.handlers import put_profile_object_type  # noqa: E402
from openprofiles.objects.handlers import put_profile_object  # noqa: E402
from openprofiles.profiles import handlers as profile_handlers  # noqa: E402
from openprofiles.settings import Settings  # noqa: E402
from openprofiles.store import conflicts  # noqa: E402

DOMAIN = "contention"
ACCOUNTS: dict[str, Any] = {
    "AllowProfileCreation": True,
    "Fields": {
        "id": {"Source": "_source.id"},
        "email": {
            "Source": "_source.email",
            "Target": "_profile.EmailAddress",
            "ContentType": "EMAIL_ADDRESS",
        },
        "phone": {
            "Source": "_source.phone",
            "Target": "_profile.PhoneNumber",
            "ContentType": "PHONE_NUMBER",
        },
        "account": {"Source": "_source.account", "Target": "_profile.AccountNumber"},
        "first": {"Source": "_source.first", "Target": "_profile.FirstName"},
    },
    "Keys": {
        "accountId": [{"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["id"]}],
        "_email": [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["email"]}],
        "_phone": [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["phone"]}],
    },
}
RULES = {
    "Enabled": True,
    "MatchingRules": [
        {"Rule": ["AccountNumber"]},
        {"Rule": ["EmailAddress"]},
        {"Rule": ["PhoneNumber"]},
    ],
    "MaxAllowedRuleLevelForMatching": 3,
    "MaxAllowedRuleLevelForMerging": 3,
}
# How often each request is sent; an update or a new key goes to the profile a search finds.
OPERATIONS = {"put": 45, "create": 15, "update": 30, "add-key": 10}
# (operation, latency in seconds, outcome: "ok", "500" or the unexpected error)
Outcome = tuple[str, float, str]


def _customer(number: int, rng: random.Random) -> dict[str, str]:
    # Two phone numbers per customer: a write often gives a profile a digest it did not have.
    area = rng.choice(("206", "425"))
    return {
        "email": f"c{number}@example.com",
        "phone": f"+1{area}555{number:04d}",
        "account": f"A-{number}",
    }


def _set_up(url: str, data_dir: Path) -> None:
    services = build_services(Settings(data_dir=data_dir, database_url=url))
    ctx = RequestContext(services=services, principal=Principal("bench", "admin"))
    create_domain(
        ctx, {"DomainName": DOMAIN, "DefaultExpirationDays": 30, "RuleBasedMatching": RULES}
    )
    put_profile_object_type(ctx, {"DomainName": DOMAIN, "ObjectTypeName": "Account", **ACCOUNTS})
    services.database.dispose()


def _writer_process(
    url: str,
    data_dir: Path,
    seed: int,
    threads: int,
    seconds: float,
    customers: int,
    results: Any,
) -> None:
    logging.disable(logging.CRITICAL)  # a request given up on logs its error: counted instead
    services = build_services(Settings(data_dir=data_dir, database_url=url))
    outcomes: list[Outcome] = []
    races: Counter[str] = Counter()
    guard = threading.Lock()
    deadline = time.monotonic() + seconds

    def invoke(handler: Callable[..., dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
        """As the server's dispatcher runs a request (app.create_app), counting lost races."""
        ctx = RequestContext(services=services, principal=Principal("bench", "admin"))

        def attempt() -> dict[str, Any]:
            ctx.committed_writes = 0
            try:
                return handler(ctx, params)
            except Exception as exc:
                if conflicts.is_transient(exc):
                    kind = getattr(getattr(exc, "orig", None), "sqlstate", None)
                    with guard:
                        races[kind or type(exc).__name__] += 1
                raise

        return conflicts.retrying(attempt, may_retry=lambda: ctx.committed_writes == 0)

    def found(number: int) -> str | None:
        page = invoke(
            profile_handlers.search_profiles,
            {"DomainName": DOMAIN, "KeyName": "_email", "Values": [f"c{number}@example.com"]},
        )
        items = page.get("Items") or []
        return items[0]["ProfileId"] if items else None

    def one_request(rng: random.Random, operation: str) -> None:
        number = rng.randrange(customers)
        customer = _customer(number, rng)
        if operation == "put":
            record = {"id": f"c{number}-{rng.randrange(3)}", "first": rng.choice("ABC"), **customer}
            if rng.random() < 0.3:
                del record["email"]  # found by its phone or id only
            invoke(
                put_profile_object,
                {"DomainName": DOMAIN, "ObjectTypeName": "Account", "Object": json.dumps(record)},
            )
        elif operation == "create":
            invoke(
                profile_handlers.create_profile,
                {
                    "DomainName": DOMAIN,
                    "AccountNumber": customer["account"],
                    "LastName": rng.choice("XYZ"),
                    "PhoneNumber": customer["phone"],
                },
            )
        elif (profile_id := found(number)) is None:
            return
        elif operation == "update":
            invoke(
                profile_handlers.update_profile,
                {
                    "DomainName": DOMAIN,
                    "ProfileId": profile_id,
                    "MiddleName": rng.choice("KLMN"),
                    "PhoneNumber": customer["phone"],
                },
            )
        else:
            invoke(
                profile_handlers.add_profile_key,
                {
                    "DomainName": DOMAIN,
                    "ProfileId": profile_id,
                    "KeyName": "loyalty",
                    "Values": [f"L-{number}-{rng.randrange(5)}"],
                },
            )

    def loop(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        while time.monotonic() < deadline:
            operation = rng.choices(list(OPERATIONS), weights=list(OPERATIONS.values()))[0]
            started = time.monotonic()
            outcome = "ok"
            try:
                one_request(rng, operation)
            except InternalServer:
                outcome = "500"
            except Exception as exc:  # reported, not hidden: a bug to look at
                outcome = f"{type(exc).__name__}: {exc}"[:200]
            with guard:
                outcomes.append((operation, time.monotonic() - started, outcome))

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    services.database.dispose()
    results.put((outcomes, dict(races)))


def _deadlocks(admin: Any, database: str) -> int:
    with admin.connect() as conn:
        found = conn.execute(
            text("SELECT deadlocks FROM pg_stat_database WHERE datname = :d"), {"d": database}
        ).scalar()
    return int(found or 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        required=True,
        help="a PostgreSQL server (any database of it): the benchmark makes its own and drops it",
    )
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8, help="per process")
    parser.add_argument("--customers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    database = f"opbench_{uuid.uuid4().hex[:8]}"
    server = make_url(args.database_url)
    url = server.set(database=database).render_as_string(hide_password=False)
    admin = create_engine(server.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    try:
        data_dir = Path(tempfile.mkdtemp(prefix="opbench-contention-"))
        _set_up(url, data_dir)
        # The statistics collector reports with a delay: settle before the first reading.
        time.sleep(1)
        deadlocks_before = _deadlocks(admin, database)
        results: Any = multiprocessing.Queue()
        processes = [
            multiprocessing.Process(
                target=_writer_process,
                args=(
                    url,
                    data_dir,
                    args.seed * 100 + i,
                    args.threads,
                    args.seconds,
                    args.customers,
                    results,
                ),
            )
            for i in range(args.processes)
        ]
        started = time.monotonic()
        for process in processes:
            process.start()
        outcomes: list[Outcome] = []
        races: Counter[str] = Counter()
        for _ in processes:
            got, lost = results.get()
            outcomes += got
            races.update(lost)
        for process in processes:
            process.join()
        elapsed = time.monotonic() - started
        time.sleep(1)
        deadlocks = _deadlocks(admin, database) - deadlocks_before
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()

    latencies = [seconds * 1000 for _, seconds, _ in outcomes]
    statuses = Counter(outcome for _, _, outcome in outcomes)
    slow = sum(ms > 5000 for ms in latencies)
    print(
        f"{len(outcomes)} requests in {elapsed:.0f} s ({len(outcomes) / elapsed:.1f}/s) from "
        f"{args.processes} processes x {args.threads} threads on {args.customers} customers: "
        f"{dict(Counter(op for op, _, _ in outcomes))}"
    )
    print(
        f"deadlocks {deadlocks} ({deadlocks / elapsed * 60:.1f}/min); "
        f"lost races run again {dict(races)}"
    )
    print(
        f"latency p50 {percentile(latencies, 50):.0f} ms  p99 {percentile(latencies, 99):.0f} ms"
        f"  mean {statistics.fmean(latencies):.0f} ms  max {max(latencies):.0f} ms; "
        f"over 5 s: {slow} ({100 * slow / len(latencies):.2f} %)"
    )
    print(f"outcomes {dict(statuses)}")


if __name__ == "__main__":
    main()
