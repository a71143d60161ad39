"""Unknown addresses under the web pages' prefixes get an HTML "not found" page (signed in or
not); every other unknown address keeps the API's JSON error."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient
from tests.unit.ui.test_ui_admin_ops import signed_in

from openprofiles.app import create_app
from openprofiles.settings import Settings

UNKNOWN_PAGES = [
    ("GET", "/ui/sign-out"),  # the sign-out page takes POST only
    ("GET", "/ui/no-such-page"),
    ("POST", "/ui/no-such-page"),
    ("GET", "/ui"),
    ("GET", "/agent"),
    ("GET", "/admin"),
    ("GET", "/admin/no/such/page"),
    ("GET", "/agent/domains/care/profiles/..%2Fetc"),
    ("GET", "/agent/domains/care/profiles/abc/nothing-here"),
]


@pytest.fixture
def agent(sqlite_settings: Settings) -> Iterator[TestClient]:
    yield from signed_in(sqlite_settings, "agent")


@pytest.fixture
def anonymous(sqlite_settings: Settings) -> Iterator[TestClient]:
    app = create_app(sqlite_settings)
    with TestClient(app, follow_redirects=False) as client:
        yield client
    app.state.services.database.dispose()


@pytest.mark.parametrize(("method", "path"), UNKNOWN_PAGES)
def test_an_unknown_page_is_an_html_not_found_page(
    agent: TestClient, method: str, path: str
) -> None:
    response = agent.request(method, path)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "x-amzn-ErrorType" not in response.headers
    assert "<h1>Page not found</h1>" in response.text
    # The pages' header, with the session's sign-out button, as on every other page.
    assert "agent1" in response.text and "Sign out" in response.text
    assert response.headers["cache-control"] == "no-store"


def test_an_unknown_page_is_html_before_signing_in_too(anonymous: TestClient) -> None:
    response = anonymous.get("/agent/domains/care/profiles/..%2Fetc")
    assert response.status_code == 404
    assert "<h1>Page not found</h1>" in response.text


def test_known_pages_still_answer(agent: TestClient) -> None:
    assert agent.get("/ui/").status_code in (200, 303)
    assert agent.get("/ui/sign-in").status_code in (200, 303)


@pytest.mark.parametrize("path", ["/no/such/path", "/domains/x/no-such-thing", "/uix", "/admins"])
def test_other_unknown_addresses_keep_the_api_error(anonymous: TestClient, path: str) -> None:
    response = anonymous.get(path)
    assert response.headers["content-type"].startswith("application/")
    assert "x-amzn-ErrorType" in response.headers
    assert "Message" in response.json()
