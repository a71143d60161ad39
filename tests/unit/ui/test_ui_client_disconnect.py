"""A form whose browser left before sending it whole (a second click on a submit button aborts
the first request) is dropped quietly: it was logged as "Exception in ASGI application" with
a whole traceback, for nothing anyone could do."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from tests.unit.ui.test_ui_pages import signed_in_admin

from openprofiles.settings import Settings
from openprofiles.ui.web import SESSION_COOKIE, cookie_name


def _post_then_leave(app: Any, path: str, cookie: str) -> list[dict[str, Any]]:
    """POST a form body the client never finishes sending; the messages the app sent back."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"content-length", b"1000"),
            (b"cookie", cookie.encode()),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    parts = [
        {"type": "http.request", "body": b"csrf_token=abc&FirstName=A", "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return parts.pop(0) if parts else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    # In a thread of its own: the test's thread may already run an event loop (another test's,
    # under xdist), where asyncio.run refuses to start.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, app(scope, receive, send)).result()
    return sent


@pytest.mark.parametrize("path", ["/agent/domains/acme/profiles/new", "/ui/sign-in"])
def test_a_form_cut_short_is_dropped_without_an_error_logged(
    sqlite_settings: Settings, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    with signed_in_admin(sqlite_settings) as client:
        name = cookie_name(client.app.state.services, SESSION_COOKIE)  # type: ignore[attr-defined]
        cookie = f"{name}={client.cookies.get(name)}"
        app = client.app
        caplog.set_level(logging.ERROR)
        sent = _post_then_leave(app, path, cookie)
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [400]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
