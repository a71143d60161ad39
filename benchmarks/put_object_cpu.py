"""Server CPU per PutProfileObject, through the ASGI app in this process.

C concurrent clients (coroutines on one event loop, each sending its share of pre-signed
requests one after the other) call the app directly: no HTTP parsing, no client processes on
the same cores, and every turn of the loop holds one request per client, so the figure shows
what the turn batches (objects/coalesce.py) save at a given concurrency. Reports process CPU
time per request, which another load on the machine disturbs far less than a rate does.

    .venv/bin/python benchmarks/put_object_cpu.py --clients 8
    .venv/bin/python benchmarks/put_object_cpu.py --clients 1 --objects 3000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import uvloop  # noqa: E402

from _support import create_credential, signed_headers  # noqa: E402
from ingest import contact, setup_domain  # noqa: E402
from openprofiles.app import create_app  # noqa: E402
from openprofiles.settings import Settings  # noqa: E402

DOMAIN = "benchcpu"
PATH = f"/domains/{DOMAIN}/profiles/objects"


async def call(app: Any, body: bytes, headers: dict[str, str]) -> int:
    scope = {
        "type": "http",
        "method": "PUT",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        + [(b"host", b"127.0.0.1:8000"), (b"content-length", str(len(body)).encode())],
    }
    chunks = [body]
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": chunks.pop() if chunks else b""}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    return status[0]


async def client(app: Any, requests: list[tuple[bytes, dict[str, str]]]) -> int:
    failed = 0
    for body, headers in requests:
        failed += (await call(app, body, headers)) != 200
    return failed


async def run(app: Any, requests: list[tuple[bytes, dict[str, str]]], clients: int) -> None:
    async with app.router.lifespan_context(app):
        warm, measured = requests[: len(requests) // 3], requests[len(requests) // 3 :]
        await asyncio.gather(*(client(app, warm[i::clients]) for i in range(clients)))
        cpu, wall = time.process_time(), time.perf_counter()
        failed = sum(
            await asyncio.gather(*(client(app, measured[i::clients]) for i in range(clients)))
        )
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if failed:
        raise RuntimeError(f"{failed} requests were not answered 200")
    print(
        f"PutProfileObject through the ASGI app, {clients} concurrent clients, "
        f"{len(measured)} objects after {len(warm)} to warm up: "
        f"{1e6 * cpu / len(measured):,.0f} us of CPU a request, "
        f"{len(measured) / wall:,.0f} requests/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--objects", type=int, default=6000)
    parser.add_argument("--customers", type=int, default=2000)
    args = parser.parse_args()
    rng = random.Random(7)
    records = [contact(rng.randrange(args.customers), rng) for _ in range(args.objects)]
    with tempfile.TemporaryDirectory(prefix="op-bench-cpu-") as tmp:
        data_dir = Path(tmp)
        setup_domain(data_dir, DOMAIN)
        key = create_credential(data_dir)
        app = create_app(Settings(data_dir=data_dir))
        bodies = [json.dumps({"ObjectTypeName": "Contacts", "Object": r}).encode() for r in records]
        headers = signed_headers(
            "http://127.0.0.1:8000", key, [("PUT", PATH, body) for body in bodies]
        )
        try:
            uvloop.run(run(app, list(zip(bodies, headers, strict=True)), args.clients))
        finally:
            app.state.services.database.dispose()


if __name__ == "__main__":
    main()
