"""`serve` says "OpenProfiles listening on ..." only once the port takes connections.

A newcomer review: the line was printed before uvicorn bound the port, and with --workers N
uvicorn's supervisor bound it but only each worker listened, once it had started; for ~1.5 s
(one process) or ~10 s (two) a connection was refused, so a deploy script or a health check
trusting the line failed. Here the first connection is made as soon as the line is read, with
no retry: it must be taken (and wait, if need be, until a worker accepts it) and answered."""

from __future__ import annotations

import socket
import subprocess
import threading
from pathlib import Path

import httpx
import pytest
from tests.support.ports import free_port
from tests.support.serve import serve_first_run

# How long the first answer may take: the workers start after the line (new Python processes,
# each building the application), and the request waits for one of them.
FIRST_ANSWER_SECONDS = 60


def _until_listening(process: subprocess.Popen[str]) -> str:
    """The server's output up to and including the listening line; the rest is drained in the
    background, so that the server never waits on a full pipe."""
    assert process.stdout is not None
    lines: list[str] = []
    for line in process.stdout:
        lines.append(line)
        if "OpenProfiles listening on" in line:
            break
    else:
        raise AssertionError("the server stopped before it said it listens:\n" + "".join(lines))
    stream = process.stdout
    threading.Thread(target=lambda: stream.read(), daemon=True).start()
    return "".join(lines)


@pytest.mark.parametrize(
    ("host", "workers"),
    [("127.0.0.1", 1), ("127.0.0.1", 2), ("::1", 1), ("::1", 2)],
)
def test_the_port_takes_connections_as_soon_as_the_server_says_it_listens(
    tmp_path: Path, host: str, workers: int
) -> None:
    port = free_port()
    process = serve_first_run(tmp_path / "data", port, "--host", host, "--workers", str(workers))
    try:
        output = _until_listening(process)
        url = f"http://{'[::1]' if ':' in host else host}:{port}"
        assert f"OpenProfiles listening on {url}" in output
        # At once, no retry: refused before (ConnectionRefusedError).
        with socket.create_connection((host, port), timeout=FIRST_ANSWER_SECONDS):
            pass
        response = httpx.get(f"{url}/health", timeout=FIRST_ANSWER_SECONDS)
        assert response.status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
