"""An HTTP relay in front of the moto server that breaks off the body of a chosen S3 object's
GET, as a network or a load balancer does mid-download — what moto never does.

Every request is forwarded to moto as it came (its Host header too: the signature covers it)
and moto's answer relayed, except the next GETs of an object given to `cut`: their status and
headers are moto's, Content-Length the whole object's, but only the first `after` bytes of the
body are sent, and then the connection ends

* "short": closed cleanly (FIN), the body shorter than its Content-Length said;
* "reset": reset (RST), as a peer or a middlebox that drops the connection does;
* "garbled" (a relay speaking HTTPS): a TLS record that does not decrypt is sent first, as a
  corrupted or tampered packet is ("bad record mac").

A client made for the relay's `url` talks to moto through it; `gets` counts the GETs of each
object ("bucket/key") the relay saw, broken off or not. Made with a directory for `tls`, the
relay speaks HTTPS with a self-signed certificate, `ca_bundle`, for the client to trust.
"""

from __future__ import annotations

import fcntl
import http.client
import os
import socket
import ssl
import struct
import termios
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from tests.support.tls_cert import self_signed

HOST = "127.0.0.1"
# Headers about the connection, not the answer: the relay's own connection has its own.
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"}
# A TLS 1.2/1.3 application-data record (type 23, version 3.3, 32 bytes) of bytes that are no
# encryption under the connection's keys: the client cannot authenticate it.
_GARBLED_RECORD = bytes([23, 3, 3, 0, 32]) + bytes(range(32))
Break = Literal["short", "reset", "garbled"]
# How long a reset waits for the bytes sent before it to be acknowledged by the client.
_SENT_TIMEOUT_SECONDS = 10.0


@dataclass
class _Cut:
    after: int
    how: Break
    times: int


class S3FaultRelay:
    """The relay's controls and its `url`; made by `s3_fault_relay`."""

    def __init__(self, moto_url: str) -> None:
        target = urlsplit(moto_url)
        self._target = (target.hostname or HOST, target.port or 80)
        self._lock = threading.Lock()
        self._cuts: dict[str, _Cut] = {}
        self.gets: Counter[str] = Counter()
        self.url = ""
        self.ca_bundle: Path | None = None

    def cut(
        self,
        bucket: str,
        key: str,
        *,
        after: int,
        how: Break = "short",
        times: int = 1,
    ) -> None:
        """Break off the body of the next `times` GETs of s3://bucket/key after `after` bytes."""
        with self._lock:
            self._cuts[f"{bucket}/{key}"] = _Cut(after, how, times)

    def _take(self, method: str, path: str) -> _Cut | None:
        if method != "GET":
            return None
        # Path-style addressing (an IP endpoint): /bucket/key.
        name = unquote(urlsplit(path).path).lstrip("/")
        with self._lock:
            self.gets[name] += 1
            cut = self._cuts.get(name)
            if cut is None or cut.times == 0:
                return None
            cut.times -= 1
            return cut

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(*self._target, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()


def _wait_until_acknowledged(sock: socket.socket) -> None:
    """Wait until the client's kernel has acknowledged every byte sent (Linux: TIOCOUTQ is the
    unacknowledged bytes): a reset discards what is still unsent, and the test needs the bytes
    before the break delivered, as a real break mid-download delivers them."""
    deadline = time.monotonic() + _SENT_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        unsent = struct.unpack("i", fcntl.ioctl(sock, termios.TIOCOUTQ, b"\0\0\0\0"))[0]
        if unsent == 0:
            return
        time.sleep(0.001)
    raise RuntimeError(f"the client did not acknowledge the body in {_SENT_TIMEOUT_SECONDS}s")


def _handler(relay: S3FaultRelay) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            """Quiet: the test's output is the test's."""

        def _relay(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            cut = relay._take(self.command, self.path)
            status, headers, data = relay._forward(
                self.command, self.path, dict(self.headers.items()), body
            )
            self.send_response(status)
            for name, value in headers:
                if name.lower() not in _HOP_BY_HOP:
                    self.send_header(name, value)
            if self.command == "HEAD":
                size = next((v for k, v in headers if k.lower() == "content-length"), "0")
                self.send_header("Content-Length", size)
                self.end_headers()
                return
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if cut is None:
                self.wfile.write(data)
                return
            self.wfile.write(data[: cut.after])
            self.close_connection = True
            if cut.how == "garbled":
                # Under the TLS layer, straight onto the connection's socket.
                os.write(self.connection.fileno(), _GARBLED_RECORD)
            if cut.how == "reset":
                _wait_until_acknowledged(self.connection)
                # Closed with a zero linger, the socket sends RST instead of FIN.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _relay  # noqa: N815 — http.server's

    return Handler


@contextmanager
def s3_fault_relay(moto_url: str, *, tls: Path | None = None) -> Iterator[S3FaultRelay]:
    """An S3FaultRelay in front of `moto_url`, listening on a free port while the block runs;
    speaking HTTPS, its certificate written into the directory `tls`, if given."""
    relay = S3FaultRelay(moto_url)
    server = ThreadingHTTPServer((HOST, 0), _handler(relay))
    server.daemon_threads = True
    scheme = "http"
    if tls is not None:
        cert, key = self_signed(tls, HOST)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        # The handshake on the handler's thread, at its first read, not on the accepting one.
        server.socket = context.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
        relay.ca_bundle, scheme = cert, "https"
    relay.url = f"{scheme}://{HOST}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="s3-fault-relay")
    thread.start()
    try:
        yield relay
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
