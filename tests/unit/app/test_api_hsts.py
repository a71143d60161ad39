"""Strict-Transport-Security on the API's answers served over HTTPS — the AWS endpoints (the
/domains shortcut and the mount at the root), the contact feeds and /health — as on the web
pages' (tests/unit/ui/test_ui_hsts.py), by the same rule (ui.web.served_over_https). They used
to carry none, so a browser calling the API or opening /health was not kept to HTTPS."""

from __future__ import annotations

import httpx
import pytest
from tests.unit.ui.test_ui_hsts import HSTS, app_client, live

from openprofiles.settings import Settings

# One of each: /health, a contact feed (unsigned: refused), an operation under /domains (the
# shortcut past the router), an operation at the root (the mount), and a path nothing serves.
REQUESTS = [
    ("GET", "/health"),
    ("POST", "/contact-records"),
    ("POST", "/contact-events"),
    ("GET", "/domains"),
    ("GET", "/domains/nowhere/profiles/objects"),
    ("POST", "/keys"),
    ("GET", "/no-such-thing"),
]


def test_every_api_answer_over_https_carries_hsts(settings: Settings) -> None:
    with app_client(settings, "https://testserver") as client:
        for method, path in REQUESTS:
            response = client.request(method, path)
            assert response.headers.get_list(HSTS) == ["max-age=31536000"], (path, response)
        assert client.get("/health").json() == {"status": "ok"}


def test_no_hsts_on_api_answers_over_plain_http(sqlite_settings: Settings) -> None:
    with app_client(sqlite_settings, "http://testserver") as client:
        for method, path in REQUESTS:
            assert HSTS not in client.request(method, path).headers, path


@pytest.mark.parametrize(
    ("trusted_proxy", "expected"),
    # Behind the TLS proxy named, its X-Forwarded-Proto counts; from anyone else it does not.
    [("127.0.0.1", True), (None, False), ("192.0.2.7", False)],
)
def test_behind_a_proxy_the_api_follows_the_trusted_forwarded_proto(
    sqlite_settings: Settings, trusted_proxy: str | None, expected: bool
) -> None:
    with live(sqlite_settings, trusted_proxy=trusted_proxy) as url:
        for method, path in REQUESTS:
            response = httpx.request(method, url + path, headers={"X-Forwarded-Proto": "https"})
            assert (HSTS in response.headers) is expected, path
