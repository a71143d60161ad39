"""A request whose HTTP framing cannot be read (a bad Content-Length, a broken chunked body, a
request line or header that is not HTTP) gets the API's error format from `openprofiles serve`,
not uvicorn's bare text: 400, `x-amzn-ErrorType: BadRequestException`, `{"Message": ...}` saying
what is wrong, and the connection closed (wire.framing). The bytes go over a raw socket, as no
HTTP client sends them; the server is the real one, `serve` in a subprocess (its protocol chosen
as uvicorn's "auto" chooses it: httptools), and uvicorn's h11 protocol as wire.framing extends
it, in this process."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import boto3
import httpx
import pytest
import uvicorn
from botocore.awsrequest import HeadersDict
from botocore.parsers import create_parser
from tests.support.ports import bound_loopback_socket, free_port
from tests.support.serve import api_client, first_run_key, serve_first_run

from openprofiles.app import create_app
from openprofiles.settings import Settings

# A value that would be personal data: it must reach no log line.
PERSONAL = b"jane.doe@example.com"


def _request(head: bytes, body: bytes = b"") -> bytes:
    return b"POST /domains/d/profiles HTTP/1.1\r\nHost: localhost\r\n" + head + b"\r\n" + body


# (the malformed request, the fault its message names), for both parsers.
MALFORMED = {
    "negative Content-Length": (
        _request(b"Content-Length: -5\r\n"),
        "invalid Content-Length",
    ),
    "Content-Length not a number": (
        _request(b"Content-Length: abc\r\n"),
        "invalid Content-Length",
    ),
    "two different Content-Length headers": (
        _request(b"Content-Length: 2\r\nContent-Length: 3\r\n", b"abc"),
        "more than one Content-Length header",
    ),
    "chunk size not hex": (
        _request(b"Transfer-Encoding: chunked\r\n", b"zz\r\n" + PERSONAL + b"\r\n0\r\n\r\n"),
        "invalid chunked encoding of the body",
    ),
    "unsupported Transfer-Encoding": (
        _request(b"Transfer-Encoding: gzip\r\n"),
        "unsupported Transfer-Encoding",
    ),
    "request line not HTTP": (
        b"GET /profiles/" + PERSONAL + b" garbage\r\nHost: localhost\r\n\r\n",
        "invalid request line",
    ),
    "header line without a colon": (
        b"GET /domains HTTP/1.1\r\nHost: localhost\r\n" + PERSONAL + b"\r\n\r\n",
        "invalid header",
    ),
}


def _exchange(port: int, data: bytes) -> tuple[int, HeadersDict, bytes]:
    """Send `data` on a new connection and read until the server closes it (the bound on the
    wait is the socket's timeout: a server that keeps the connection open fails the test)."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = HeadersDict()
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip()] = value.strip()
    return int(status_line.split()[1]), headers, body


def _assert_aws_bad_request(port: int, data: bytes, fault: str, case: str = "") -> None:
    status, headers, body = _exchange(port, data)
    message = f"The request's HTTP framing is malformed: {fault}"
    assert status == 400, (case, status, body)
    assert json.loads(body)["Message"].startswith(message), (case, body)
    assert headers["x-amzn-ErrorType"] == "BadRequestException"
    assert headers["Content-Type"] == "application/json"
    assert headers["Connection"] == "close"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert int(headers["Content-Length"]) == len(body)
    assert PERSONAL.decode() not in body.decode()
    # What an SDK makes of it: botocore's rest-json parser, as a client's error.
    operation = (
        boto3.session.Session()
        .client("customer-profiles", region_name="us-east-1")
        ._service_model.operation_model("CreateProfile")
    )
    parsed = create_parser("rest-json").parse(
        {"status_code": status, "headers": headers, "body": body}, operation.output_shape
    )
    assert parsed["Error"]["Code"] == "BadRequestException"
    assert parsed["Error"]["Message"].startswith(message)
    assert parsed["ResponseMetadata"]["RequestId"] == headers["x-amzn-RequestId"]


def test_serve_answers_malformed_framing_in_the_aws_format(tmp_path) -> None:
    """Every malformed request, each on a connection of its own, then well-formed ones on the
    same server; the server's log says a request was refused, and nothing of what it held."""
    port = free_port()
    data_dir = tmp_path / "data"
    process = serve_first_run(data_dir, port)
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if "OpenProfiles listening on" in line:
                break
        for case, (data, fault) in MALFORMED.items():
            _assert_aws_bad_request(port, data, fault, case)
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 200
        assert api_client(port, first_run_key(data_dir)).list_domains()["Items"] == []
        # Counted as API answers of no operation, as an unknown path is.
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert (
            'openprofiles_api_requests_total{error="BadRequestException",operation="none",'
            f'status="400"}} {float(len(MALFORMED))}' in metrics
        )
    finally:
        process.terminate()
        process.wait(timeout=30)
    logged = process.stdout.read()
    assert logged.count("Invalid HTTP request received.") == len(MALFORMED)
    assert PERSONAL.decode() not in logged


@pytest.fixture(scope="module")
def h11_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The application served by uvicorn with wire.framing's h11 protocol: its port."""
    from openprofiles.wire.framing import AwsH11Protocol

    settings = Settings(data_dir=tmp_path_factory.mktemp("h11") / "data")
    app = create_app(settings)
    with bound_loopback_socket() as sock:
        config = uvicorn.Config(app, http=AwsH11Protocol, log_level="warning", access_log=False)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        try:
            yield int(sock.getsockname()[1])
        finally:
            server.should_exit = True
            thread.join(timeout=20)
            app.state.services.database.dispose()


@pytest.mark.parametrize("case", MALFORMED)
def test_h11_answers_malformed_framing_in_the_aws_format(h11_server, case) -> None:
    data, fault = MALFORMED[case]
    _assert_aws_bad_request(h11_server, data, fault)


def test_h11_still_answers_well_formed_requests(h11_server) -> None:
    data, fault = MALFORMED["two different Content-Length headers"]
    _assert_aws_bad_request(h11_server, data, fault)
    assert httpx.get(f"http://127.0.0.1:{h11_server}/health", timeout=10).json() == {"status": "ok"}


def test_a_request_without_a_host_header_is_told_so_by_h11(h11_server) -> None:
    _assert_aws_bad_request(
        h11_server, b"GET /domains HTTP/1.1\r\n\r\n", "a missing or repeated Host header"
    )


def test_the_protocol_is_uvicorns_auto_choice_extended() -> None:
    """`serve` runs the protocol uvicorn's http="auto" would (httptools when installed), with
    only the answer to a malformed request changed."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    from openprofiles.wire.framing import AutoProtocol

    assert issubclass(AutoProtocol, AutoHTTPProtocol)
    assert AutoProtocol is not AutoHTTPProtocol
