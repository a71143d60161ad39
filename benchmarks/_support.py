"""Helpers shared by the benchmarks: a server in a subprocess, credentials, percentiles."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    issued = json.loads(out)
    return issued["AccessKeyId"], issued["SecretAccessKey"]


@contextmanager
def server(data_dir: Path, port: int) -> Iterator[str]:
    """`openprofiles serve` in a subprocess; yields its URL once uvicorn accepts connections."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENPROFILES_")}
    process = subprocess.Popen(
        [str(BIN / "openprofiles"), "serve", "--port", str(port), "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if "Uvicorn running on" in line:
            break
    else:
        raise RuntimeError("server did not start")
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
