"""Strict-Transport-Security on the pages' answers served over HTTPS (ui.web.hsts), decided as
Secure cookies are (ui.web.served_over_https): by the server terminating TLS, or a trusted
proxy's X-Forwarded-Proto. Never over plain HTTP, nor when an untrusted client claims HTTPS.
The pages used to send no HSTS at all, so a visit starting at http:// could be kept off TLS."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from starlette.testclient import TestClient
from tests.support.ports import bound_loopback_socket
from tests.unit.ui.test_ui_sessions import PASSWORD, csrf_of

from openprofiles.app import create_app
from openprofiles.settings import Settings
from openprofiles.users import service as users

HSTS = "strict-transport-security"
# Answers of every kind the pages give: a page, a redirect, a static file, the pages' 404.
PATHS = ["/ui/sign-in", "/", "/ui/", "/admin/domains", "/static/ui.css", "/ui/no-such-page"]


@contextmanager
def app_client(settings: Settings, base_url: str) -> Iterator[TestClient]:
    app = create_app(settings)
    with app.state.services.write() as tx:
        users.create_user(tx, username="boss", password=PASSWORD, role="admin")
    with TestClient(app, base_url=base_url, follow_redirects=False) as client:
        yield client
    app.state.services.database.dispose()


def test_every_answer_over_https_carries_hsts(settings: Settings) -> None:
    with app_client(settings, "https://testserver") as client:
        for path in PATHS:
            response = client.get(path)
            assert response.headers.get_list(HSTS) == ["max-age=31536000"], path
        page = client.get("/ui/sign-in")
        signed_in = client.post(
            "/ui/sign-in",
            data={"username": "boss", "password": PASSWORD, "csrf_token": csrf_of(page.text)},
        )
        assert signed_in.status_code == 303
        assert signed_in.headers[HSTS] == "max-age=31536000"
        assert "preload" not in signed_in.headers[HSTS]
        assert client.get("/admin/").headers[HSTS] == "max-age=31536000"


def test_no_hsts_over_plain_http(sqlite_settings: Settings) -> None:
    with app_client(sqlite_settings, "http://testserver") as client:
        for path in PATHS:
            assert HSTS not in client.get(path).headers, path


@contextmanager
def live(settings: Settings, *, trusted_proxy: str | None) -> Iterator[str]:
    """The app served by uvicorn as `openprofiles serve` runs it (serving.py): proxy headers
    trusted only from `trusted_proxy` (OPENPROFILES_FORWARDED_ALLOW_IPS)."""
    app = create_app(settings)
    sock = bound_loopback_socket()  # held from here: no other connection can take the port
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
            proxy_headers=trusted_proxy is not None,
            forwarded_allow_ips=trusted_proxy,
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:  # the server's own readiness flag, bounded
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()
        app.state.services.database.dispose()


@pytest.mark.parametrize(
    ("trusted_proxy", "forwarded_proto", "expected"),
    [
        # Behind the TLS proxy named: its X-Forwarded-Proto says how the browser came.
        ("127.0.0.1", "https", True),
        ("127.0.0.1", "http", False),
        ("127.0.0.1", None, False),
        # No proxy trusted: a client's own X-Forwarded-Proto changes nothing.
        (None, "https", False),
        # A proxy trusted, but not this client's address.
        ("192.0.2.7", "https", False),
    ],
)
def test_behind_a_proxy_hsts_follows_the_trusted_forwarded_proto(
    sqlite_settings: Settings,
    trusted_proxy: str | None,
    forwarded_proto: str | None,
    expected: bool,
) -> None:
    headers = {"X-Forwarded-Proto": forwarded_proto} if forwarded_proto else {}
    with live(sqlite_settings, trusted_proxy=trusted_proxy) as url:
        for path in ("/ui/sign-in", "/static/ui.css"):
            response = httpx.get(url + path, headers=headers, follow_redirects=False)
            assert response.status_code == 200
            assert (HSTS in response.headers) is expected, path
            # The same decision as the cookie's Secure flag.
            if path == "/ui/sign-in":
                assert ("secure" in response.headers["set-cookie"].lower()) is expected
