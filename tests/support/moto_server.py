"""A moto server (AWS service emulator) in a subprocess, for tests of the AWS adapters.

Moto's server mode serves every service it emulates on one port; the KMS, SQS, S3 and Kinesis
adapters are tested against it over real HTTP, exactly as they talk to AWS.
"""

from __future__ import annotations

import atexit
import http.client
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import IO

from tests.support.ports import free_port

HOST = "127.0.0.1"
STARTUP_TIMEOUT_SECONDS = 30.0


class MotoUnavailable(RuntimeError):
    """moto's server mode is not installed in this environment."""


def moto_installed() -> bool:
    return (
        importlib.util.find_spec("moto") is not None
        and importlib.util.find_spec("moto.server") is not None
    )


def start_moto_server() -> tuple[str, Callable[[], None]]:
    """Start `python -m moto.server` on a free port; return its URL and a function stopping it."""
    if not moto_installed():
        raise MotoUnavailable("moto[server] is not installed; pip install 'moto[server]'")
    port = free_port()  # below the ephemeral range: no client connection can take it
    # A file, not a pipe: nobody reads moto's output while it runs, and a full pipe would block
    # it. It outlives this function (closed by stop), hence no context manager.
    log = tempfile.TemporaryFile()  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )

    def stop() -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        log.close()
        atexit.unregister(stop)

    # A safety net for callers that crash before calling stop: no orphaned moto servers.
    atexit.register(stop)
    try:
        _wait_until_answering(process, port, log)
    except BaseException:
        stop()
        raise
    return f"http://{HOST}:{port}", stop


def _wait_until_answering(process: subprocess.Popen[bytes], port: int, log: IO[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto server exited with {process.returncode}: {_output(log)}")
        if _answers(port):
            return
        time.sleep(0.05)
    raise RuntimeError(
        f"moto server did not answer on port {port} within {STARTUP_TIMEOUT_SECONDS}s: "
        f"{_output(log)}"
    )


def _answers(port: int) -> bool:
    connection = http.client.HTTPConnection(HOST, port, timeout=0.5)
    try:
        connection.request("GET", "/moto-api/")
        connection.getresponse().read()
        return True
    except OSError:
        return False
    finally:
        connection.close()


def _output(log: IO[bytes]) -> str:
    try:
        log.seek(0)
        return log.read().decode("utf-8", "replace")[-2000:]
    except (OSError, ValueError):
        return "(no output)"
