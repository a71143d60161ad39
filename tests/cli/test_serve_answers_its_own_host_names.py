"""`serve` answers only requests whose Host header names it (wire.allowed_hosts): DNS rebinding.

A security review: `serve` binds 127.0.0.1, yet answered any Host. A page the operator opens at
evil.example could re-bind its name to 127.0.0.1 and, from the operator's browser, read
/metrics (which names the domains when no token is set) and post sign-ins that the throttle
counted against 127.0.0.1, locking the administrator out. Bound to loopback, the server now
answers the loopback names (any port, any case) and those OPENPROFILES_ALLOWED_HOSTS lists;
bound to the network, any Host unless that list is set. Against a real `serve` process, as the
served application is the one that checks."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from tests.support.ports import free_port
from tests.support.serve import api_client, first_run_key, serve_first_run, wait_for_workers

VARIABLE = "OPENPROFILES_ALLOWED_HOSTS"
EVIL = "evil.example"
LISTED = "profiles.example.com"


@contextmanager
def _served(
    data_dir: Path, *options: str, settings: dict[str, str] | None = None
) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """A `serve --first-run-admin` process, started and ready; stopped at the end."""
    port = free_port()
    process = serve_first_run(data_dir, port, *options, settings=settings)
    try:
        wait_for_workers(process, 1)
        yield port, process
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def loopback(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """A server bound to 127.0.0.1 (the default), no setting given: its port and data dir."""
    data_dir = tmp_path_factory.mktemp("loopback") / "data"
    with _served(data_dir) as (port, _):
        yield port, data_dir


def _get(port: int, path: str, host: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}{path}", headers={"Host": host}, timeout=10)


def _without_host(port: int) -> bytes:
    """The answer to an HTTP/1.0 GET /health with no Host header (the server then closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


def _assert_refused(answer: httpx.Response, host: str) -> None:
    assert answer.status_code == 400, answer.text
    assert answer.headers["x-amzn-ErrorType"] == "BadRequestException"
    assert answer.headers["x-content-type-options"] == "nosniff"
    message = json.loads(answer.content)["Message"]
    assert VARIABLE in message
    # The Host is anyone's text: never echoed.
    assert host.split(":")[0] not in answer.text


@pytest.mark.parametrize("path", ["/metrics", "/ui/sign-in", "/health", "/domains"])
@pytest.mark.parametrize("host", [EVIL, f"{EVIL}:PORT", "EVIL.example", "127.0.0.1.evil.example"])
def test_a_rebound_name_is_refused(loopback: tuple[int, Path], path: str, host: str) -> None:
    port, _ = loopback
    host = host.replace("PORT", str(port))
    _assert_refused(_get(port, path, host), host)


def test_a_sign_in_posted_under_a_rebound_name_is_refused(loopback: tuple[int, Path]) -> None:
    port, _ = loopback
    answer = httpx.post(
        f"http://127.0.0.1:{port}/ui/sign-in",
        headers={"Host": f"{EVIL}:{port}", "Origin": f"http://{EVIL}:{port}"},
        data={"username": "admin", "password": "a guess"},
        timeout=10,
    )
    _assert_refused(answer, EVIL)


@pytest.mark.parametrize(
    "host",
    [
        "localhost:PORT",
        "127.0.0.1:PORT",
        "LocalHost:PORT",
        "localhost",
        "127.0.0.1",
        "[::1]:PORT",
        "127.0.0.2:PORT",
    ],
)
def test_loopback_names_are_answered(loopback: tuple[int, Path], host: str) -> None:
    port, _ = loopback
    host = host.replace("PORT", str(port))
    metrics = _get(port, "/metrics", host)
    assert metrics.status_code == 200
    assert "openprofiles_" in metrics.text
    assert _get(port, "/ui/sign-in", host).status_code == 200


def test_an_sdk_signing_its_host_is_answered(loopback: tuple[int, Path]) -> None:
    """boto3 signs the Host of its endpoint URL (SigV4): 127.0.0.1:PORT is answered."""
    port, data_dir = loopback
    client = api_client(port, first_run_key(data_dir))
    client.create_domain(DomainName="hosted", DefaultExpirationDays=30)
    assert [d["DomainName"] for d in client.list_domains()["Items"]] == ["hosted"]


def test_a_request_without_a_host_is_answered_on_loopback(loopback: tuple[int, Path]) -> None:
    """HTTP/1.0 needs no Host, and no browser leaves it out: no rebinding."""
    port, _ = loopback
    answer = _without_host(port)
    assert answer.startswith(b"HTTP/1.1 200 "), answer


def test_refusals_are_logged_once_a_minute_without_the_host_and_each_counted(
    tmp_path: Path,
) -> None:
    """The warning is written once a minute at most; /metrics counts every refusal, so an
    operator sees how many (a proxy's name missing from the list refuses every request)."""
    with _served(tmp_path / "data") as (port, process):
        for _ in range(3):
            assert _get(port, "/metrics", f"{EVIL}:{port}").status_code == 400
        metrics = _get(port, "/metrics", f"127.0.0.1:{port}")
        assert metrics.status_code == 200
        assert "openprofiles_host_refusals_total 3.0" in metrics.text.splitlines()
    output, _ = process.communicate(timeout=30)
    warnings = [line for line in output.splitlines() if "Host header names no host" in line]
    assert len(warnings) == 1, output
    assert VARIABLE in warnings[0]
    assert EVIL not in output


def test_a_listed_name_is_answered_and_others_are_still_refused(tmp_path: Path) -> None:
    """A reverse proxy on this host forwarding `Host: profiles.example.com`."""
    with _served(tmp_path / "data", settings={VARIABLE: f"{LISTED}, proxy.internal"}) as (
        port,
        _,
    ):
        for host in (LISTED, f"{LISTED}:443", "Proxy.Internal", f"localhost:{port}"):
            assert _get(port, "/metrics", host).status_code == 200, host
        _assert_refused(_get(port, "/metrics", EVIL), EVIL)
        _assert_refused(_get(port, "/ui/sign-in", f"{EVIL}:{port}"), EVIL)


def test_a_server_bound_to_the_network_answers_any_host_unless_told(tmp_path: Path) -> None:
    with _served(tmp_path / "any", "--host", "0.0.0.0") as (port, _):
        assert _get(port, "/health", EVIL).status_code == 200
    with _served(tmp_path / "listed", "--host", "0.0.0.0", settings={VARIABLE: LISTED}) as (
        port,
        _,
    ):
        _assert_refused(_get(port, "/health", EVIL), EVIL)
        # The listed name, the loopback ones (a health check on the machine itself), and the
        # address given to --host, which the start lines print in their URLs.
        for host in (LISTED, f"127.0.0.1:{port}", f"localhost:{port}", f"0.0.0.0:{port}"):
            assert _get(port, "/health", host).status_code == 200, host
        # Listing names means "only these": a request naming none is refused.
        answer = _without_host(port)
        assert answer.startswith(b"HTTP/1.1 400 "), answer


def test_star_answers_any_host_on_loopback(tmp_path: Path) -> None:
    with _served(tmp_path / "data", settings={VARIABLE: "*"}) as (port, _):
        assert _get(port, "/health", EVIL).status_code == 200
