"""SearchProfiles by `_phone` at scale, and CreateProfile throughput over HTTP.

Loads N profiles in-process (batched transactions through the profiles service), then reports
SearchProfiles p50/p99 in-process and over HTTP on loopback (boto3 against `openprofiles
serve`), and CreateProfile requests/s over HTTP with C concurrent client processes.

    .venv/bin/python benchmarks/search.py --profiles 100000
    .venv/bin/python benchmarks/search.py --profiles 1000000 --data-dir /tmp/op-bench-1m
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import random
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import botocore.auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

from _support import (  # noqa: E402
    client,
    create_credential,
    presigned_rate,
    server,
    summary_ms,
    wrk_rate,
)
from openprofiles.app import build_services  # noqa: E402
from openprofiles.context import Principal, RequestContext  # noqa: E402
from openprofiles.domains.handlers import create_domain  # noqa: E402
from openprofiles.profiles import service as profiles  # noqa: E402
from openprofiles.settings import Settings  # noqa: E402

DOMAIN = "bench"


def phone(i: int) -> str:
    return f"+1 (415) {200 + i // 10000 % 800:03d}-{i % 10000:04d}" if i < 8_000_000 else str(i)


def load(settings: Settings, count: int, batch: int) -> None:
    services = build_services(settings)
    ctx = RequestContext(services=services, principal=Principal("bench", "admin"))
    create_domain(ctx, {"DomainName": DOMAIN, "DefaultExpirationDays": 366})
    started = time.perf_counter()
    for first in range(0, count, batch):
        with services.write() as tx:
            for i in range(first, min(count, first + batch)):
                profiles.create_profile(
                    tx,
                    domain_name=DOMAIN,
                    fields={
                        "FirstName": f"First{i}",
                        "LastName": f"Last{i % 5000}",
                        "PhoneNumber": phone(i),
                        "EmailAddress": f"customer{i}@example.com",
                        "AccountNumber": f"A{i:08d}",
                    },
                )
        done = min(count, first + batch)
        if done % (batch * 20) == 0 or done == count:
            rate = done / (time.perf_counter() - started)
            print(f"  loaded {done:,} profiles ({rate:,.0f}/s)", flush=True)
    services.database.dispose()


def search_in_process(settings: Settings, count: int, queries: int) -> list[float]:
    services = build_services(settings, migrate=False)
    rng = random.Random(7)
    timings = []
    for _ in range(queries):
        i = rng.randrange(count)
        started = time.perf_counter()
        with services.read() as tx:
            page, _ = profiles.search_profiles(
                tx,
                domain_name=DOMAIN,
                criteria=[
                    profiles.SearchCriterion(
                        "_phone", (f"415{200 + i // 10000 % 800:03d}{i % 10000:04d}",)
                    )
                ],
            )
        timings.append(time.perf_counter() - started)
        assert page and page[0][0].fields["FirstName"] == f"First{i}", i
    return timings


def search_over_http(url: str, key: tuple[str, str], count: int, queries: int) -> list[float]:
    api = client(url, key)
    rng = random.Random(11)
    timings = []
    for _ in range(queries):
        i = rng.randrange(count)
        started = time.perf_counter()
        items = api.search_profiles(
            DomainName=DOMAIN, KeyName="_phone", Values=[phone(i).replace(" ", "")]
        )["Items"]
        timings.append(time.perf_counter() - started)
        assert items and items[0]["FirstName"] == f"First{i}"
    return timings


def search_over_raw_http(url: str, key: tuple[str, str], count: int, queries: int) -> list[float]:
    """SearchProfiles over one keep-alive connection with requests signed before the clock
    starts: the server's latency without boto3's client-side cost."""
    host, port = url.removeprefix("http://").split(":")
    signer = botocore.auth.SigV4Auth(Credentials(*key), "profile", "us-east-1")
    rng = random.Random(13)
    prepared = []
    for _ in range(queries):
        i = rng.randrange(count)
        body = json.dumps({"KeyName": "_phone", "Values": [phone(i)]}).encode()
        request = AWSRequest(
            method="POST",
            url=f"{url}/domains/{DOMAIN}/profiles/search",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        signer.add_auth(request)
        prepared.append((body, dict(request.headers.items())))
    connection = http.client.HTTPConnection(host, int(port))
    timings = []
    for body, headers in prepared:
        started = time.perf_counter()
        connection.request("POST", f"/domains/{DOMAIN}/profiles/search", body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        timings.append(time.perf_counter() - started)
        assert response.status == 200 and b"ProfileId" in payload
    return timings


def _create_worker(args: tuple[str, tuple[str, str], int, int]) -> int:
    url, key, requests, seed = args
    api = client(url, key)
    for n in range(requests):
        api.create_profile(
            DomainName=DOMAIN,
            FirstName=f"New{seed}-{n}",
            PhoneNumber=f"+4420{seed:02d}{n:06d}",
            EmailAddress=f"new{seed}.{n}@example.com",
        )
    return requests


def create_over_http(url: str, key: tuple[str, str], clients: int, requests: int) -> float:
    per_client = requests // clients
    with multiprocessing.get_context("spawn").Pool(clients) as pool:
        # Warm-up: every worker builds its boto3 client before the clock starts.
        pool.map(_create_worker, [(url, key, 5, 90 + c) for c in range(clients)])
        started = time.perf_counter()
        done = sum(pool.map(_create_worker, [(url, key, per_client, c) for c in range(clients)]))
        return done / (time.perf_counter() - started)


def create_requests(clients: int, requests: int, tag: str) -> list[tuple[str, str, bytes]]:
    """CreateProfile requests (method, path, body) with distinct names, phones and emails."""
    bodies = [
        json.dumps(
            {
                "FirstName": f"{tag}{n % clients}-{n}",
                "PhoneNumber": f"+4421{n % clients:02d}{n:06d}",
                "EmailAddress": f"{tag.lower()}{n}@example.com",
            }
        ).encode()
        for n in range(requests // clients * clients)
    ]
    return [("POST", f"/domains/{DOMAIN}/profiles", b) for b in bodies]


def raw_create_over_http(url: str, key: tuple[str, str], clients: int, requests: int) -> float:
    return presigned_rate(url, key, clients, create_requests(clients, requests, "Raw"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--creates", type=int, default=8_000)
    parser.add_argument("--port", type=int, default=8731)
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument("--data-dir", type=Path, default=Path("benchmarks/.work/search"))
    parser.add_argument("--reuse", action="store_true", help="keep an already loaded data dir")
    parser.add_argument(
        "--wrk-seconds", type=int, default=10, help="length of the wrk CreateProfile run"
    )
    args = parser.parse_args()

    settings = Settings(data_dir=args.data_dir)
    if not (args.reuse and settings.sqlite_path.exists()):
        shutil.rmtree(args.data_dir, ignore_errors=True)
        print(f"Loading {args.profiles:,} profiles into {settings.sqlite_path} ...")
        load(settings, args.profiles, args.batch)
    in_process = search_in_process(settings, args.profiles, args.queries)
    print(f"SearchProfiles _phone, in-process: {summary_ms(in_process)}")
    key = create_credential(args.data_dir)
    with server(args.data_dir, args.port, args.workers) as url:
        over_http = search_over_http(url, key, args.profiles, args.queries)
        print(f"SearchProfiles _phone, HTTP (boto3): {summary_ms(over_http)}")
        raw = search_over_raw_http(url, key, args.profiles, args.queries)
        print(f"SearchProfiles _phone, HTTP (pre-signed): {summary_ms(raw)}")
        if args.creates == 0:
            return
        rate = create_over_http(url, key, args.clients, args.creates)
        print(
            f"CreateProfile, {args.clients} boto3 client processes, {args.workers} server"
            f" processes: {rate:,.0f} requests/s"
        )
        rate = raw_create_over_http(url, key, args.clients, args.creates)
        print(
            f"CreateProfile, {args.clients} pre-signed keep-alive clients, {args.workers} server"
            f" processes: {rate:,.0f} requests/s"
        )
        measured = wrk_rate(
            url,
            key,
            create_requests(args.clients, args.creates, "Wrk"),
            args.clients,
            args.wrk_seconds,
        )
        print(
            f"CreateProfile, wrk with {args.clients} keep-alive connections, {args.workers}"
            f" server processes: "
            + (
                f"{measured:,.0f} requests/s"
                if measured
                else "wrk not installed (apt-get install wrk)"
            )
        )


if __name__ == "__main__":
    main()
