"""`openprofiles serve` in a subprocess, as an operator runs it: started with the first-run admin,
waited for until its workers have started, and reached with boto3 with the credential it wrote."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

# One session: its clients share the loaded service model, which is most of making one.
_SESSION = boto3.session.Session()


def serve_first_run(
    data_dir: Path, port: int, *options: str, settings: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    """`openprofiles serve --first-run-admin` in a subprocess, its output on a pipe; the
    environment's OPENPROFILES_ settings left out, but for those `settings` gives."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENPROFILES_")}
    env.update(settings or {})
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "openprofiles"),
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--first-run-admin",
            *options,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def wait_for_workers(process: subprocess.Popen[str], workers: int) -> list[str]:
    """Read the server's output until `workers` processes have said they started (uvicorn's
    "Application startup complete"); the lines read."""
    assert process.stdout is not None
    lines: list[str] = []
    started = 0
    for line in process.stdout:
        lines.append(line)
        started += "Application startup complete" in line
        if started == workers:
            break
    assert started == workers, f"{workers} workers start:\n{''.join(lines)}"
    return lines


def first_run_key(data_dir: Path) -> tuple[str, str]:
    """The access key id and secret the first run wrote to DATA_DIR/credentials."""
    written = (data_dir / "credentials").read_text()
    key_id = written.split("aws_access_key_id = ")[1].split()[0]
    secret = written.split("aws_secret_access_key = ")[1].split()[0]
    return key_id, secret


def api_client(port: int, key: tuple[str, str]) -> Any:
    """A new client (so a new connection, which either worker may take), without retries."""
    return _SESSION.client(
        "customer-profiles",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id=key[0],
        aws_secret_access_key=key[1],
        config=Config(retries={"max_attempts": 1}),
    )


def parent_of(pid: int) -> int | None:
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces; the parent id follows.
    return int(stat_line.rsplit(")", 1)[1].split()[1])
