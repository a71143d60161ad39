"""Helpers that capture the exact HTTP requests a real boto3 client would send.

A `before-send` hook records the signed request and answers with a canned response, so the
wire layer is tested against real botocore serialization and SigV4 without a network.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.awsrequest
from botocore.config import Config
from botocore.model import Shape

ENDPOINT = "http://openprofiles.test:8080"
ACCESS_KEY = "AKIDTEST"
SECRET_KEY = "secret"


@dataclass
class CapturedRequest:
    method: str
    raw_path: str
    raw_query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Capture:
    requests: list[CapturedRequest] = field(default_factory=list)
    # What the fake server answers: (status, headers, body), or computed by `server`.
    reply: tuple[int, dict[str, str], bytes] = (200, {}, b"{}")
    server: Callable[[CapturedRequest], tuple[int, dict[str, str], bytes]] | None = None

    @property
    def last(self) -> CapturedRequest:
        return self.requests[-1]

    def hook(self, request: Any, **_: Any) -> botocore.awsrequest.AWSResponse:
        url = urlsplit(request.url)
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        headers = {name: _text(value) for name, value in request.headers.items()}
        # The HTTP client adds Host from the URL; botocore signs it the same way.
        headers.setdefault("host", url.netloc)
        captured = CapturedRequest(request.method, url.path, url.query, headers, body)
        self.requests.append(captured)
        reply = self.server(captured) if self.server is not None else self.reply
        status, reply_headers, reply_body = reply
        return botocore.awsrequest.AWSResponse(
            request.url, status, reply_headers, _RawBody(reply_body)
        )


class _RawBody:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data

    def read(self, *_: Any) -> bytes:
        return self._data


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def make_client(capture: Capture, **credentials: str) -> Any:
    client = boto3.client(
        "customer-profiles",
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id=credentials.get("access_key", ACCESS_KEY),
        aws_secret_access_key=credentials.get("secret_key", SECRET_KEY),
        aws_session_token=credentials.get("token"),
        config=Config(
            retries={"total_max_attempts": 1},
            parameter_validation=credentials.get("validate", "yes") == "yes",
        ),
    )
    client.meta.events.register("before-send.customer-profiles.*", capture.hook)
    return client


# Values that satisfy the model's patterns, by string shape name; other strings get 'a's.
PATTERN_SAMPLES = {
    "Arn": "arn:aws:profile:us-east-1:000000000000:domains/d",
    "TagArn": "arn:aws:profile:us-east-1:000000000000:domains/d",
    "RoleArn": "arn:aws:iam::000000000000:role/r",
    "DestinationRoleArn": "arn:aws:iam::000000000000:role/r",
    "KmsArn": "arn:aws:kms:us-east-1:000000000000:key/k",
    "JobScheduleTime": "12:30",
    "RecommenderVersionName": "v/2024-01-01T00-00-00Z",
    "DiversityTargetExpression": "1",
    "uuid": "0123456789abcdef0123456789abcdef",
    "Object": "{}",
    "FlowName": "flow1",
}
SAMPLE_TIME = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def minimal_value(shape: Shape, depth: int = 0, *, full: bool = False) -> Any:
    """A value of `shape` valid for the model's constraints.

    With `full`, every member of every structure is set (so every member's wire location and
    type is exercised); otherwise only the required ones.
    """
    kind = shape.type_name
    meta = shape.metadata
    if kind == "structure":
        if depth > 8:
            return {}
        names = list(shape.members if full else meta.get("required", []))
        if meta.get("union"):
            names = [next(iter(shape.members))]
        result = {}
        for name in names:
            member = shape.members[name]
            if member.serialization.get("location") == "statusCode":
                result[name] = 200
            else:
                result[name] = minimal_value(member, depth + 1, full=full)
        return result
    if kind == "list":
        count = max(meta.get("min", 0), 1)
        return [minimal_value(shape.member, depth + 1, full=full) for _ in range(count)]
    if kind == "map":
        count = max(meta.get("min", 0), 1)
        keys = [minimal_value(shape.key, depth + 1, full=full) for _ in range(count)]
        keys = [key if i == 0 else key + str(i) for i, key in enumerate(keys)]
        return {key: minimal_value(shape.value, depth + 1, full=full) for key in keys}
    if kind == "string":
        if meta.get("enum"):
            return meta["enum"][0]
        if shape.name in PATTERN_SAMPLES:
            return PATTERN_SAMPLES[shape.name]
        return "a" * max(meta.get("min", 1), 1)
    if kind in ("integer", "long"):
        return max(meta.get("min", 1), 1)
    if kind in ("double", "float"):
        return float(max(meta.get("min", 1), 1))
    if kind == "boolean":
        return True
    if kind == "timestamp":
        return SAMPLE_TIME
    if kind == "blob":
        return b"x"
    raise AssertionError(f"unknown shape type {kind}")
