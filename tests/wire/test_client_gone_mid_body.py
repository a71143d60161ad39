"""A client that leaves before its request's body is complete: the part that came is not run as
the request, answered, counted nor audited, on the API and on the contact feeds. It was read
as the whole body: run (refused by its signature, the body's hash being signed), answered to
no one, and counted and audited as a request."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from tests.support.event_loop import run_in_fresh_thread
from tests.support.server import LiveServer
from tests.unit.integrations.integ_helpers import ctr

from openprofiles import audit


def _signed(
    live_server: LiveServer, path: str, body: bytes, method: str = "POST"
) -> list[tuple[bytes, bytes]]:
    request = AWSRequest(
        method=method,
        url=live_server.url + path,
        data=body,
        headers={"Content-Type": "application/json"},
    )
    SigV4Auth(Credentials(*live_server.admin_key), "profile", live_server.settings.region).add_auth(
        request
    )
    headers = {**dict(request.headers.items()), "host": live_server.url.split("//", 1)[1]}
    headers["content-length"] = str(len(body))
    return [(name.lower().encode(), value.encode()) for name, value in headers.items()]


async def _drive(
    app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], messages: list[Any]
) -> list[Any]:
    """Call the ASGI app as uvicorn would, its receive answering `messages` in turn and the
    last (a disconnect: uvicorn repeats it) from then on; what the app sent."""
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if len(messages) > 1 else messages[0]

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    return sent


DISCONNECT = {"type": "http.disconnect"}


def _metrics(live_server: LiveServer, name: str) -> list[str]:
    text = httpx.get(live_server.url + "/metrics", timeout=10).text
    return sorted(line for line in text.splitlines() if line.startswith(name))


@pytest.mark.parametrize(
    ("path", "body", "counter"),
    [
        ("/domains/{domain}", {"DefaultExpirationDays": 30}, "openprofiles_api_requests_total"),
        ("/contact-records", [ctr("gone-1")], "openprofiles_feed_requests_total"),
        (
            "/contact-events",
            {"ContactId": "gone-2", "InstanceARN": "arn:aws:connect:us-east-1:1:instance/x"},
            "openprofiles_feed_requests_total",
        ),
    ],
    ids=["api", "contact-records", "contact-events"],
)
def test_a_body_cut_short_by_the_client_is_not_run_answered_counted_or_audited(
    live_server: LiveServer,
    caplog: pytest.LogCaptureFixture,
    path: str,
    body: Any,
    counter: str,
) -> None:
    domain = f"gone-{uuid.uuid4().hex[:8]}"
    path = path.format(domain=domain)
    raw = json.dumps(body).encode()
    caplog.set_level(logging.INFO, logger=audit.logger.name)
    counted = _metrics(live_server, counter)

    # The client leaves after half the body.
    half = {"type": "http.request", "body": raw[: len(raw) // 2], "more_body": True}
    headers = _signed(live_server, path, raw)
    sent = run_in_fresh_thread(_drive(live_server.app, "POST", path, headers, [half, DISCONNECT]))

    assert sent == []
    assert _metrics(live_server, counter) == counted
    assert [r for r in caplog.records if r.name == audit.logger.name] == []
    domains = live_server.client().list_domains()["Items"]
    assert domain not in [d["DomainName"] for d in domains]


def test_a_request_without_a_body_is_whole_with_its_headers(live_server: LiveServer) -> None:
    """DeleteDomain sent whole and half-closed: it has no body to wait for, so it runs, as it
    did before ClientGone (which took the disconnect for a body cut short)."""
    domain = f"whole-{uuid.uuid4().hex[:8]}"
    admin = live_server.client()
    admin.create_domain(DomainName=domain, DefaultExpirationDays=30)
    path = f"/domains/{domain}"
    headers = _signed(live_server, path, b"", method="DELETE")
    # uvicorn reports the disconnect to the first receive, before the app asked for the
    # (empty) body.
    sent = run_in_fresh_thread(_drive(live_server.app, "DELETE", path, headers, [DISCONNECT]))

    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200, sent
    assert domain not in [d["DomainName"] for d in admin.list_domains()["Items"]]
