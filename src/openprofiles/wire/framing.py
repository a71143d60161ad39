"""The answer to a request whose HTTP framing cannot be read, in the AWS error format.

A request uvicorn's HTTP parser refuses (a Content-Length of -5 or `abc`, two Content-Length
headers, a chunked body whose chunk sizes are not hex, a request line or header that is not
HTTP) never reaches the application: uvicorn answered it with a bare text/plain 400 of its own,
which an SDK reads as an unknown error with no message. `AutoProtocol` is uvicorn's HTTP
protocol, chosen as its `http="auto"` chooses it (httptools when installed, else h11), with
that answer replaced by the API's: 400, `x-amzn-ErrorType: BadRequestException` and
`{"Message": ...}` saying what is wrong, then the connection closed (a stream whose framing
is lost cannot be read on). `serving` hands it to uvicorn.

What is wrong is told in words of our own, from the parser's error: h11's errors quote the
request's bytes (a request line, a header line), which may be a path or a header value holding
personal data, and neither parser's wording is an API's.

Only framing errors are answered here. uvicorn's other answers of its own stay as they are:
a 500 when the application fails before answering (the API renders its own errors, so only a
crash outside it), a 503 past `limit_concurrency` (which `serve` does not set), and the
websockets library's answers to a WebSocket handshake (no route of this server takes one).
Bodies have no size limit in uvicorn: the API bounds them itself (wire.dispatch).
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from openprofiles.errors import BadRequest
from openprofiles.wire.errors import render_error
from openprofiles.wire.nosniff import NOSNIFF

# What each kind of parser error means, by words its message holds (lower case), first match
# first: httptools' (llhttp's) and h11's messages for the same fault differ ("Duplicate
# Content-Length", "conflicting Content-Length headers"). A message none matches, or one that
# says uvicorn's own code failed on the request (httptools' "`on_headers_complete` callback
# error", which no word below must read as the client's fault), is told as framing that cannot
# be read, without a detail.
_FAULTS: tuple[tuple[tuple[str, ...], str | None], ...] = (
    (("callback error",), None),
    (("content-length", "transfer-encoding"), "Content-Length and Transfer-Encoding together"),
    (("content-length", "duplicate"), "more than one Content-Length header"),
    (("content-length", "conflicting"), "more than one Content-Length header"),
    (("content-length",), "invalid Content-Length"),
    (("transfer-encoding",), "unsupported Transfer-Encoding (only chunked is accepted)"),
    (("chunk",), "invalid chunked encoding of the body"),
    (("host:",), "a missing or repeated Host header"),
    (("too long",), "request line and headers too long"),
    (("header",), "invalid header"),
    (("continuation line",), "invalid header"),
    (("method",), "invalid method"),
    (("url",), "invalid request line"),
    (("target",), "invalid request line"),
    (("request line",), "invalid request line"),
    (("version",), "invalid request line"),
    (("http/",), "invalid request line"),
    (("start line",), "invalid request line"),
)

MALFORMED = "The request's HTTP framing is malformed"


def framing_message(parser_error: str | None) -> str:
    """The API message for a parser's error message (None: not known)."""
    said = (parser_error or "").lower()
    fault = next((fault for words, fault in _FAULTS if all(word in said for word in words)), None)
    if fault is None:
        return f"{MALFORMED}: it cannot be read as an HTTP/1.1 request."
    return f"{MALFORMED}: {fault}."


def _answer(default_headers: list[tuple[bytes, bytes]]) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """(headers, body) of the 400 for the parser error being handled: uvicorn calls
    `send_400_response` inside its `except` for the parser's error, whose message is read here
    (the `msg` uvicorn passes is the same generic text for every fault). Counted as an API
    answer of no operation, as an unknown path is (metrics.events)."""
    # Imported here, in the worker that answers: counting sets up prometheus_client's files.
    from openprofiles.metrics.events import observe_api_request

    error = sys.exc_info()[1]
    refused = BadRequest(framing_message(str(error) if error is not None else None))
    status, headers, body = render_error(refused, str(uuid.uuid4()))
    observe_api_request(None, status, refused.code, time.perf_counter())
    raw = [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
    ]
    return [
        *default_headers,
        *raw,
        (b"content-length", str(len(body)).encode("ascii")),
        # The rest of the stream cannot be told apart into requests any more.
        (b"connection", b"close"),
        NOSNIFF,
    ], body


class AwsH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, answering a request it cannot parse in the AWS error format."""

    def send_400_response(self, msg: str) -> None:
        headers, body = _answer(self.server_state.default_headers)
        # h11 lets a server answer a request whose bytes it refused (their state is ERROR).
        for event in (
            h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event))
        self.transport.close()


AutoProtocol: type[asyncio.Protocol]
try:
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools comes with uvicorn[standard]
    AutoProtocol = AwsH11Protocol
else:

    class AwsHttpToolsProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol, answering a request it cannot parse in the AWS error
        format."""

        def send_400_response(self, msg: str) -> None:
            headers, body = _answer(self.server_state.default_headers)
            lines = [name + b": " + value + b"\r\n" for name, value in headers]
            self.transport.write(b"".join([STATUS_LINE[400], *lines, b"\r\n", body]))
            self.transport.close()

    AutoProtocol = AwsHttpToolsProtocol
