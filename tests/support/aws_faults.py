"""An HTTP relay in front of the moto server that answers chosen AWS calls itself, for what moto
never does: throttle a Kinesis shard (ProvisionedThroughputExceededException), let an iterator
expire, or answer an empty GetRecords page while the shard still has records further on.

It speaks the AWS JSON protocol (Kinesis): a call is known by its `X-Amz-Target` header. Every
call is counted (`calls`), whether the relay answers it or moto does. A client made with
`client("kinesis")` talks to moto through it, without botocore's own retries, so a test sees
every failure the code under test sees.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


class FaultRelay:
    """The relay; `url` is its endpoint. Faults are queued per operation and used in order."""

    def __init__(self, target_url: str) -> None:
        target = urlsplit(target_url)
        self._target = (target.hostname or "127.0.0.1", target.port or 80)
        self._lock = threading.Lock()
        self._answers: dict[str, deque[tuple[int, dict[str, Any]]]] = {}
        self.calls: Counter[str] = Counter()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def fail(self, operation: str, code: str, *, times: int = 1, status: int = 400) -> None:
        """Answer the next `times` calls of `operation` with the AWS error `code`."""
        error = {"__type": code, "message": f"{code} (injected by the test relay)"}
        self._queue(operation, [(status, error)] * times)

    def empty_pages(self, times: int, millis_behind: int = 60_000) -> None:
        """Answer the next `times` GetRecords with an empty page whose NextShardIterator is the
        iterator it was asked with (moto's iterators name a position), the shard `millis_behind`
        ms behind: a stretch of the shard without records, as Kinesis documents."""
        page = {"Records": [], "MillisBehindLatest": millis_behind}
        self._queue("GetRecords", [(200, page)] * times)

    def client(self, service: str = "kinesis") -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name="us-east-1",
            config=Config(retries={"total_max_attempts": 1}),
        )

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def _queue(self, operation: str, answers: list[tuple[int, dict[str, Any]]]) -> None:
        with self._lock:
            self._answers.setdefault(operation, deque()).extend(answers)

    def _take(self, operation: str) -> tuple[int, dict[str, Any]] | None:
        with self._lock:
            self.calls[operation] += 1
            queued = self._answers.get(operation)
            return queued.popleft() if queued else None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:  # noqa: N802 — http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                operation = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
                answer = relay._take(operation)
                if answer is None:
                    self._forward(body)
                    return
                status, payload = answer
                if status == 200 and operation == "GetRecords":
                    payload = {**payload, "NextShardIterator": json.loads(body)["ShardIterator"]}
                headers = {} if status == 200 else {"x-amzn-ErrorType": payload["__type"]}
                self._send(status, json.dumps(payload).encode(), headers)

            def _forward(self, body: bytes) -> None:
                connection = http.client.HTTPConnection(*relay._target, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    headers["Host"] = "{}:{}".format(*relay._target)
                    connection.request("POST", self.path, body=body, headers=headers)
                    response = connection.getresponse()
                    data = response.read()
                    kept = {
                        k: v
                        for k, v in response.getheaders()
                        if k.lower() in ("x-amzn-requestid", "x-amzn-errortype")
                    }
                    self._send(response.status, data, kept)
                finally:
                    connection.close()

            def _send(self, status: int, data: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


@contextmanager
def fault_relay(target_url: str) -> Iterator[FaultRelay]:
    relay = FaultRelay(target_url)
    try:
        yield relay
    finally:
        relay.close()
