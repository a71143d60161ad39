"""Helpers shared by the benchmarks: a server in a subprocess, credentials, percentiles."""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

BIN = Path(sys.executable).parent


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"p50 {percentile(ms, 50):.2f} ms  p99 {percentile(ms, 99):.2f} ms  "
        f"mean {statistics.fmean(ms):.2f} ms  (n={len(ms)})"
    )


def create_credential(data_dir: Path, role: str = "admin") -> tuple[str, str]:
    from openprofiles.app import build_services
    from openprofiles.settings import Settings

    # Only `serve` makes an installation (cli_support.require_installation): made here as its
    # first start would, for the credential to be made before the server starts.
    build_services(Settings(data_dir=data_dir)).database.dispose()
    out = subprocess.run(
        [
            str(BIN / "openprofiles"),
            "credentials",
            "create",
            "--role",
            role,
            "--json",
            "--data-dir",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"openprofiles credentials create failed: {out.stderr.strip()}")
    issued = json.loads(out.stdout)
    return issued["AccessKeyId"], issued["SecretAccessKey"]


@contextmanager
def server(data_dir: Path, port: int, workers: int = 1) -> Iterator[str]:
    """`openprofiles serve --workers N` in a subprocess; yields its URL once every worker has
    started its application."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENPROFILES_")}
    command = [str(BIN / "openprofiles"), "serve", "--port", str(port), "--data-dir", str(data_dir)]
    process = subprocess.Popen(
        [*command, "--workers", str(workers)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    started = 0
    for line in process.stdout:
        started += "Application startup complete" in line
        if started == workers:
            break
    else:
        raise RuntimeError("server did not start")
    # Keep reading what the server prints, so a full pipe never blocks it.
    threading.Thread(target=process.stdout.read, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def client(url: str, key: tuple[str, str]):
    return boto3.client(
        "customer-profiles",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key[0],
        aws_secret_access_key=key[1],
        config=Config(retries={"max_attempts": 1}, max_pool_connections=4),
    )


def _presigned_worker(
    url: str,
    key: tuple[str, str],
    requests: list[tuple[str, str, bytes]],
    ready: Any,
    results: Any,
) -> None:
    """Sign every request, wait until every client has, then send them over one keep-alive
    connection; put the seconds the sending took on `results`. Signing happens before the
    clock starts, so the figure is the server's, not botocore's client-side cost (which on a
    small machine competes with the server for the same cores)."""
    try:
        host, port = url.removeprefix("http://").split(":")
        prepared = [
            (method, path, body, headers)
            for (method, path, body), headers in zip(
                requests, signed_headers(url, key, requests), strict=True
            )
        ]
        connection = http.client.HTTPConnection(host, int(port))
        # Nobody sends while another client is still starting up or signing.
        ready.wait()
        started = time.perf_counter()
        for method, path, body, headers in prepared:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            if response.status != 200:
                raise RuntimeError(f"{path}: HTTP {response.status} {payload[:200]!r}")
        results.put(time.perf_counter() - started)
    except BaseException as exc:
        ready.abort()
        results.put(repr(exc))


def signed_headers(
    url: str, key: tuple[str, str], requests: list[tuple[str, str, bytes]]
) -> list[dict[str, str]]:
    """The SigV4 headers (and Content-Type) of each request (method, path, JSON body), as
    botocore signs them for the `profile` service."""
    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    signer = botocore.auth.SigV4Auth(Credentials(*key), "profile", "us-east-1")
    out = []
    for method, path, body in requests:
        request = AWSRequest(
            method=method,
            url=f"{url}{path}",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        signer.add_auth(request)
        out.append(dict(request.headers.items()))
    return out


def presigned_rate(
    url: str, key: tuple[str, str], clients: int, requests: list[tuple[str, str, bytes]]
) -> float:
    """Requests/s of `requests` (method, path, JSON body) sent by `clients` processes at once,
    each pre-signing its share and sending it on one keep-alive connection, all starting
    together; the slowest client's time is the run's."""
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(clients)
    results = context.Queue()
    workers = [
        context.Process(
            target=_presigned_worker, args=(url, key, requests[i::clients], ready, results)
        )
        for i in range(clients)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
    failures = [o for o in outcomes if isinstance(o, str)]
    if failures:
        raise RuntimeError(f"a client failed: {failures[0]}")
    return len(requests) / max(outcomes)


# wrk's request script: replays pre-signed requests (one per line: method, path, headers,
# body, tab-separated; headers as name\x02value pairs joined by \x01), each connection
# starting at its own offset, and counts answers other than 200.
_WRK_SCRIPT = r"""
local requests = {}
for line in io.lines(os.getenv("OPENPROFILES_WRK_REQUESTS")) do
  local method, path, headers, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
  local h = {}
  for pair in headers:gmatch("[^\1]+") do
    local name, value = pair:match("^([^\2]*)\2(.*)$")
    h[name] = value
  end
  requests[#requests + 1] = {method, path, h, body}
end
local threads = 0
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end
local counter = 0
function init(args)
  counter = id * 7919
end
function request()
  counter = counter + 1
  local r = requests[(counter % #requests) + 1]
  return wrk.format(r[1], r[2], r[3], r[4])
end
local failed = 0
function response(status, headers, body)
  if status ~= 200 then
    failed = failed + 1
    if failed == 1 then io.stderr:write("first failure: ", status, " ", body, "\n") end
  end
end
function done(summary, latency, requests)
  io.write(string.format("requests %d seconds %.3f\n", summary.requests, summary.duration / 1e6))
end
"""


def wrk_rate(
    url: str,
    key: tuple[str, str],
    requests: list[tuple[str, str, bytes]],
    connections: int,
    seconds: int,
) -> float | None:
    """Requests/s of `requests` (method, path, JSON body; pre-signed here, replayed in turn)
    sent over `connections` keep-alive connections by wrk, a load generator written in C, for
    `seconds`: the server's rate, with far less of the two cores spent on the clients than
    Python clients take. None when wrk is not installed (`apt-get install wrk`)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    with tempfile.TemporaryDirectory(prefix="op-wrk-") as tmp:
        lines = []
        for (method, path, body), signed in zip(
            requests, signed_headers(url, key, requests), strict=True
        ):
            headers = "\x01".join(
                f"{name}\x02{value}"
                for name, value in signed.items()
                if name.lower() != "content-length"  # wrk sets it
            )
            text = body.decode()
            if "\t" in text or "\n" in text:
                raise ValueError("wrk_rate sends bodies without tabs or newlines")
            lines.append(f"{method}\t{path}\t{headers}\t{text}\n")
        requests_file = Path(tmp) / "requests.txt"
        requests_file.write_text("".join(lines))
        script = Path(tmp) / "replay.lua"
        script.write_text(_WRK_SCRIPT)
        threads = min(2, connections)
        done = subprocess.run(
            [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],
            capture_output=True,
            text=True,
            env={**os.environ, "OPENPROFILES_WRK_REQUESTS": str(requests_file)},
            check=True,
        )
    if "first failure" in done.stderr or "Non-2xx" in done.stdout:
        raise RuntimeError(f"wrk saw failed requests: {done.stderr.strip()[:300]}")
    found = re.search(r"requests (\d+) seconds ([0-9.]+)", done.stdout)
    if found is None:
        raise RuntimeError(f"unexpected wrk output: {done.stdout[-300:]}")
    return int(found.group(1)) / float(found.group(2))
