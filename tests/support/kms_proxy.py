"""A KMS endpoint that enforces key state as AWS KMS does, in front of moto's server.

moto 5 keeps a key's state (DisableKey, ScheduleKeyDeletion) and reports it on DescribeKey, but
still answers Decrypt, Encrypt and GenerateDataKey under a disabled or pending-deletion key. A
test that disables a key in moto and expects a domain's data key to stop unwrapping would pass
only because of something else (a cached data key, another path failing), or fail. This proxy
forwards every request to moto and, for the operations that use a key, answers what KMS answers
when the key named in moto's reply is not enabled: `DisabledException` (disabled) or
`KMSInvalidStateException` (pending deletion, pending import).

`delete(key_arn)` makes the key deleted, as AWS KMS has it once the waiting period is over and moto
never does, answering as KMS (and moto, for a key it never had) answers then: an operation that
names the key (KeyId: DescribeKey, Decrypt with KeyId, ...) or an alias of it (KMS deletes a key's
aliases with it) answers `NotFoundException`; a Decrypt without KeyId of a data key wrapped under
it answers `AccessDeniedException` ("The ciphertext refers to a customer master key that does not
exist, ..."), which KMS answers for a key the caller may not use too; ListKeys leaves it out.

`hold(op)` keeps the next call of an operation waiting, once it has arrived, until the test
releases it: what a caller does meanwhile (a KMS call that takes its timeouts) is then seen.

`refuse(op, code, after=N, times=M)` also answers the next M calls of an operation, after N that
go through, with an AWS error: KMS throttling, or a key disabled between two calls of one pass,
at a chosen call (moto never throttles).
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import boto3

HOST = "127.0.0.1"
# What KMS answers a Decrypt (without KeyId) of a data key wrapped under a key it deleted.
_CIPHERTEXT_OF_NO_KEY = (
    "The ciphertext refers to a customer master key that does not exist, does not exist in this "
    "region, or you are not allowed to access."
)
# The operations whose reply names the key used (KeyId), and which KMS refuses under a key that
# is not enabled.
KEY_OPERATIONS = {"Decrypt", "Encrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext"}
_NOT_ENABLED = {
    "Disabled": ("DisabledException", "{key} is disabled."),
    "PendingDeletion": ("KMSInvalidStateException", "{key} is pending deletion."),
    "PendingImport": ("KMSInvalidStateException", "{key} is pending import."),
}


@dataclass
class Held:
    """A call kept waiting by `KmsProxy.hold`: `reached` is set when it arrives; it goes on to
    moto when `release` is set."""

    reached: threading.Event
    release: threading.Event


@dataclass
class _Fault:
    code: str
    after: int
    times: int


class KmsProxy:
    """The proxy's URL (`url`) and its controls; made by `kms_proxy`."""

    def __init__(self, moto_url: str) -> None:
        self.moto_url = moto_url
        self.url = ""
        self._faults: dict[str, _Fault] = {}
        self._deleted: set[str] = set()
        self._held: dict[str, Held] = {}
        self._lock = threading.Lock()
        # moto's own client per region, to read a key's state.
        self._clients: dict[str, Any] = {}

    def refuse(self, op: str, code: str, *, after: int = 0, times: int = 1) -> None:
        """Answer `code` to `times` calls of `op`, after `after` calls that go through."""
        with self._lock:
            self._faults[op] = _Fault(code, after, times)

    def hold(self, op: str) -> Held:
        """Keep the next call of `op` waiting until the returned Held is released."""
        held = Held(threading.Event(), threading.Event())
        with self._lock:
            self._held[op] = held
        return held

    def delete(self, key_arn: str) -> None:
        """From now on, answer for the key `key_arn` as KMS does for a deleted key."""
        with self._lock:
            self._deleted.add(key_arn)

    def _names_deleted(self, reply: bytes) -> str | None:
        found = json.loads(reply) if reply else {}
        named = {found.get("KeyId"), found.get("KeyMetadata", {}).get("Arn")}
        with self._lock:
            return next((k for k in named if k in self._deleted), None)

    def _without_deleted(self, reply: bytes) -> bytes:
        found = json.loads(reply)
        with self._lock:
            found["Keys"] = [
                k for k in found.get("Keys", []) if k.get("KeyArn") not in self._deleted
            ]
        return json.dumps(found).encode()

    def _fault(self, op: str) -> str | None:
        with self._lock:
            fault = self._faults.get(op)
            if fault is None or fault.times == 0:
                return None
            if fault.after > 0:
                fault.after -= 1
                return None
            fault.times -= 1
            return fault.code

    def _key_state(self, key_id: str) -> str:
        region = key_id.split(":")[3] if key_id.startswith("arn:") else "us-east-1"
        with self._lock:
            kms = self._clients.get(region)
            if kms is None:
                kms = self._clients[region] = boto3.client(
                    "kms",
                    endpoint_url=self.moto_url,
                    region_name=region,
                    aws_access_key_id="testing",
                    aws_secret_access_key="testing",
                )
        return str(kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"])

    def answer(self, op: str | None, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """What the endpoint answers a POST of `op` with `body` (status, JSON body)."""
        with self._lock:
            held = self._held.pop(op, None) if op is not None else None
        if held is not None:
            held.reached.set()
            held.release.wait(timeout=120)
        if op is not None and (code := self._fault(op)) is not None:
            return 400, json.dumps({"__type": code, "message": "refused by the test"}).encode()
        status, reply = self._forward(body, headers)
        if status == 200 and (gone := self._names_deleted(reply)) is not None:
            if op == "Decrypt" and "KeyId" not in json.loads(body or b"{}"):
                return 400, json.dumps(
                    {"__type": "AccessDeniedException", "message": _CIPHERTEXT_OF_NO_KEY}
                ).encode()
            message = f"Key '{gone}' does not exist"
            return 400, json.dumps({"__type": "NotFoundException", "message": message}).encode()
        if status == 200 and op == "ListKeys":
            return status, self._without_deleted(reply)
        if status == 200 and op in KEY_OPERATIONS:
            key_id = json.loads(reply).get("KeyId")
            state = self._key_state(key_id) if key_id else "Enabled"
            if state in _NOT_ENABLED:
                code, message = _NOT_ENABLED[state]
                return 400, json.dumps(
                    {"__type": code, "message": message.format(key=key_id)}
                ).encode()
        return status, reply

    def _forward(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        target = urlsplit(self.moto_url)
        connection = http.client.HTTPConnection(target.hostname or HOST, target.port, timeout=30)
        try:
            sent = {k: v for k, v in headers.items() if k.lower() != "host"}
            connection.request("POST", "/", body=body, headers=sent)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


@contextmanager
def kms_proxy(moto_url: str) -> Iterator[KmsProxy]:
    """A KmsProxy in front of `moto_url`, listening on a free port while the block runs."""
    proxy = KmsProxy(moto_url)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            """Quiet: the test's output is the test's."""

        def do_POST(self) -> None:  # noqa: N802 — http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            target = self.headers.get("X-Amz-Target", "")
            op = target.rsplit(".", 1)[-1] if target else None
            status, reply = proxy.answer(op, body, dict(self.headers.items()))
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    server = ThreadingHTTPServer((HOST, 0), Handler)
    proxy.url = f"http://{HOST}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="kms-proxy")
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
