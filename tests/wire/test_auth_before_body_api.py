"""A request its headers show to be unauthenticated is refused before its body is read, by the
API and by the contact feeds, against a live server (both backends).

Each request here declares a body of about 30 MB (the API's largest) and sends none of it: a
server that read the body before checking the headers would wait for it, and hold what came
(wire.dispatch.check_before_body, auth.authenticator). The answer must come without the body,
with the AWS error the whole signature check gives for the same fault. The socket's timeout is
only a guard against waiting forever on a server that does wait.
"""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest

DECLARED = 30_000_000
# A guard against a test that would otherwise hang on a server waiting for the body.
GUARD_SECONDS = 20
API_PATH = "/domains/nowhere/profiles/objects/batch-put-profile-object"
PATHS = [("PUT", API_PATH), ("POST", "/contact-records"), ("POST", "/contact-events")]
NOT_COMPUTED = "The provided 'x-amz-content-sha256' header does not match what was computed."


def _authorization(key_id: str, when: datetime) -> dict[str, str]:
    """Well-formed SigV4 headers by `key_id` at `when`, whose signature is never reached."""
    stamp = when.strftime("%Y%m%dT%H%M%SZ")
    credential = f"{key_id}/{stamp[:8]}/us-east-1/profile/aws4_request"
    return {
        "X-Amz-Date": stamp,
        "Authorization": (
            f"AWS4-HMAC-SHA256 Credential={credential}, "
            f"SignedHeaders=host;x-amz-date, Signature={'0' * 64}"
        ),
    }


def _send_headers_only(
    live_server: Any, method: str, path: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    """Send a request line and headers declaring a DECLARED-byte body, send no body, and read
    the answer: (status, lower-cased headers, body)."""
    address = urlsplit(live_server.url)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {address.netloc}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += ["Content-Type: application/json", f"Content-Length: {DECLARED}", "", ""]
    with socket.create_connection((address.hostname, address.port)) as sock:
        sock.settimeout(GUARD_SECONDS)
        sock.sendall("\r\n".join(lines).encode())
        received = b""
        while b"\r\n\r\n" not in received:
            received += _recv(sock)
        head, _, body = received.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        answer_headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            answer_headers[name.strip().lower()] = value.strip()
        while len(body) < int(answer_headers["content-length"]):
            body += _recv(sock)
    return int(status_line.split()[1]), answer_headers, body


def _recv(sock: socket.socket) -> bytes:
    try:
        data = sock.recv(65536)
    except TimeoutError:
        pytest.fail("no answer: the server waits for the body before checking the headers")
    if not data:
        pytest.fail("the server closed the connection without an answer")
    return data


def _error(answer: tuple[int, dict[str, str], bytes]) -> tuple[int, str, str]:
    status, headers, body = answer
    assert headers["x-amzn-requestid"]
    return status, headers["x-amzn-errortype"], json.loads(body)["Message"]


@pytest.mark.parametrize(("method", "path"), PATHS)
def test_an_unsigned_request_is_refused_before_its_body(live_server, method, path):
    answer = _send_headers_only(live_server, method, path, {})
    assert _error(answer) == (
        403,
        "MissingAuthenticationTokenException",
        "Missing Authentication Token",
    )


@pytest.mark.parametrize(("method", "path"), PATHS)
def test_an_unknown_access_key_is_refused_before_its_body(live_server, method, path):
    headers = _authorization("OPUNKNOWN00000000000", datetime.now(UTC))
    answer = _send_headers_only(live_server, method, path, headers)
    assert _error(answer) == (
        403,
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    )


@pytest.mark.parametrize(("method", "path"), PATHS)
def test_a_request_signed_too_long_ago_is_refused_before_its_body(live_server, method, path):
    when = datetime.now(UTC) - timedelta(minutes=20)
    headers = _authorization(live_server.admin_key[0], when)
    status, code, message = _error(_send_headers_only(live_server, method, path, headers))
    assert (status, code) == (403, "InvalidSignatureException")
    assert message.startswith(f"Signature expired: {headers['X-Amz-Date']} is now earlier than")


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        ("UNSIGNED-PAYLOAD", "Unsigned payloads are not accepted by this service."),
        ("not-a-hash", NOT_COMPUTED),
        ("A" * 64, NOT_COMPUTED),
    ],
)
def test_a_payload_hash_no_body_can_have_is_refused_before_the_body(live_server, declared, message):
    headers = _authorization(live_server.admin_key[0], datetime.now(UTC))
    headers["x-amz-content-sha256"] = declared
    answer = _send_headers_only(live_server, "PUT", API_PATH, headers)
    assert _error(answer) == (403, "InvalidSignatureException", message)


@pytest.mark.parametrize(
    "authorization",
    [
        "AWS4-HMAC-SHA1 Credential=x, SignedHeaders=host, Signature=0",
        "AWS4-HMAC-SHA256 Credential=OPX/20260101/us-east-1/profile/aws4_request",
    ],
)
def test_a_malformed_authorization_is_refused_before_the_body(live_server, authorization):
    answer = _send_headers_only(live_server, "PUT", API_PATH, {"Authorization": authorization})
    status, code, _ = _error(answer)
    assert (status, code) == (403, "InvalidSignatureException")


def test_a_declared_body_over_the_limit_is_refused_before_it_is_read(live_server):
    # GetDomain's limit is the least one (wire.dispatch.DEFAULT_MAX_BODY_BYTES), below DECLARED.
    answer = _send_headers_only(live_server, "GET", "/domains/any", {})
    status, code, message = _error(answer)
    assert (status, code) == (413, "RequestEntityTooLargeException")
    assert message.startswith("The request body exceeds ")


def test_an_unknown_path_is_answered_without_its_body(live_server):
    answer = _send_headers_only(live_server, "PUT", "/no/such/operation", {})
    status, code, _ = _error(answer)
    assert (status, code) == (404, "UnknownOperationException")


def test_a_whole_signed_request_is_still_accepted(live_server):
    """The two steps together accept what botocore signs (the other wire tests do much more)."""
    client = live_server.client()
    assert "Items" in client.list_domains()
    assert "Items" in live_server.client("agent").list_domains()


@pytest.mark.parametrize("signature", ["\u00e9" * 64, "0" * 63, "F" * 64])
def test_a_signature_no_hmac_can_be_is_refused_before_the_body(live_server, signature):
    """A non-ASCII signature by a known key made hmac.compare_digest raise TypeError: a 500,
    logged as an error, for anyone who knows a key id."""
    headers = _authorization(live_server.admin_key[0], datetime.now(UTC))
    authorization = headers["Authorization"]
    headers["Authorization"] = authorization[: authorization.rindex("=") + 1] + signature
    answer = _send_headers_only(live_server, "PUT", API_PATH, headers)
    status, code, message = _error(answer)
    assert (status, code) == (403, "InvalidSignatureException")
    assert message.startswith("The request signature we calculated does not match")
