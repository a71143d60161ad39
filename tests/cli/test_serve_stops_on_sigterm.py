"""SIGTERM (what systemd, Kubernetes and docker send to stop a service) stops a real `openprofiles
serve`, with one process or several, as asked: the request in flight at that moment is answered,
the application shuts down (its database closed: on SQLite the write-ahead log is checkpointed
and removed, as only a closed database leaves it), and the server exits with status 0.

An operator review: with one process the server ended as killed by the signal (status -15, 143
in a shell) after its graceful stop, which a service manager or container runtime reports as a
crash; and no process closed its database.

The request in flight is made deterministic without waiting on time: it asks `Expect:
100-continue`, so the server's "100 Continue" says the application is running it and waiting for
its body; SIGTERM is sent then, and the body only once the server's log says it is shutting down
(every process, with --workers 2). Both backends."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import uuid
from pathlib import Path

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from tests.support.backends import database_url_for
from tests.support.ports import LOOPBACK, free_port
from tests.support.serve import first_run_key, serve_first_run, wait_for_workers

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _create_domain_request(port: int, key: tuple[str, str], domain: str) -> tuple[bytes, bytes]:
    """(request line and headers, body) of a signed CreateDomain that asks `Expect:
    100-continue`."""
    url = f"http://{LOOPBACK}:{port}/domains/{domain}"
    body = json.dumps({"DefaultExpirationDays": 30}).encode()
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={"Content-Type": "application/json", "Expect": "100-continue"},
    )
    SigV4Auth(Credentials(*key), "profile", "us-east-1").add_auth(request)
    headers = {**dict(request.headers.items()), "Host": f"{LOOPBACK}:{port}"}
    headers["Content-Length"] = str(len(body))
    head = f"POST /domains/{domain} HTTP/1.1\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (head + "\r\n").encode(), body


def _read_until(connection: socket.socket, wanted: bytes) -> bytes:
    received = b""
    while wanted not in received:
        chunk = connection.recv(4096)
        assert chunk, f"the connection closed before {wanted!r}: {received!r}"
        received += chunk
    return received


def _read_to_end(connection: socket.socket) -> bytes:
    received = b""
    while chunk := connection.recv(4096):
        received += chunk
    return received


def _wait_for_lines(process: subprocess.Popen[str], text: str, count: int) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    seen = 0
    for line in process.stdout:
        lines.append(line)
        seen += text in line
        if seen == count:
            return lines
    raise AssertionError(f"{count} lines with {text!r} expected:\n{''.join(lines)}")


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_sigterm_answers_the_request_in_flight_closes_the_database_and_exits_0(
    tmp_path: Path, backend: str, workers: int
) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    with database_url_for(backend, tmp_path) as url:
        storage = ["--database-url", url] if url else []
        process = serve_first_run(data_dir, port, "--workers", str(workers), *storage)
        try:
            wait_for_workers(process, workers)
            domain = f"d-{uuid.uuid4().hex[:10]}"
            head, body = _create_domain_request(port, first_run_key(data_dir), domain)
            with socket.create_connection((LOOPBACK, port), timeout=60) as connection:
                connection.sendall(head)
                # The application is running the request, waiting for its body.
                assert _read_until(connection, CONTINUE).startswith(CONTINUE)
                process.send_signal(signal.SIGTERM)
                # Every process has stopped taking connections and asked its connections to
                # close once their request is answered.
                stopping = _wait_for_lines(process, "Shutting down", workers)
                connection.sendall(body)
                answer = _read_to_end(connection)
            assert process.stdout is not None
            rest = process.stdout.read()
            status = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
    output = "".join(stopping) + rest
    assert status == 0, output
    status_line, _, answered = answer.partition(b"\r\n\r\n")
    assert status_line.startswith(b"HTTP/1.1 200 "), answer
    assert json.loads(answered)["DomainName"] == domain
    # The application's shutdown ran in every process (its lifespan: background work stopped,
    # database closed), and each process finished.
    assert output.count("Application shutdown complete.") == workers, output
    assert output.count("Finished server process") == workers, output
    if backend == "sqlite":
        # SQLite removes its write-ahead log when the last connection to the database closes
        # (having copied it into the database file): the server's processes closed theirs.
        assert not (data_dir / "openprofiles.sqlite3-wal").exists(), output
