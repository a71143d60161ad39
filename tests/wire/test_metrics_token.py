"""OPENPROFILES_METRICS_TOKEN (Settings.metrics_token, openprofiles.metrics.access): with it set,
GET /metrics answers only a scrape that carries `Authorization: Bearer TOKEN`, as Prometheus
sends it, and 401 with a `WWW-Authenticate: Bearer` challenge to any other, before anything is
read. A live server on both backends, scraped over HTTP.

A security review: /metrics, on by default, answered anyone, and its labels name domains."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.support.server import LiveServer, run_server

from openprofiles.settings import Settings

TOKEN = "Zx9-scrape.token_0123456789~abc"


@pytest.fixture
def guarded(settings: Settings) -> Iterator[LiveServer]:
    with run_server(settings.with_overrides(metrics_token=TOKEN)) as server:
        yield server


def _scrape(server: LiveServer, authorization: str | None) -> httpx.Response:
    headers = {} if authorization is None else {"Authorization": authorization}
    return httpx.get(server.url + "/metrics", headers=headers, timeout=10)


def _refused(response: httpx.Response) -> bool:
    # Nothing of the server's configuration either: a caller without the token is not told
    # which variable holds it (a newcomer review).
    return (
        response.status_code == 401
        and response.headers["www-authenticate"].startswith('Bearer realm="openprofiles-metrics"')
        and response.text
        == "A bearer token is required: GET /metrics with Authorization: Bearer TOKEN.\n"
    )


def test_a_scrape_needs_the_bearer_token(
    guarded: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    guarded.client().create_domain(DomainName="named-in-labels", DefaultExpirationDays=30)

    no_token = _scrape(guarded, None)
    assert _refused(no_token)
    assert "error=" not in no_token.headers["www-authenticate"]
    for wrong in (
        f"Bearer {TOKEN[:-1]}",  # all but its last character
        f"Bearer {TOKEN}x",
        f"Basic {TOKEN}",  # the right secret under another scheme
        "Bearer",
        f"{TOKEN}",
    ):
        assert _refused(_scrape(guarded, wrong)), wrong
    assert 'error="invalid_token"' in _scrape(guarded, "Bearer not-it").headers["www-authenticate"]

    for right in (f"Bearer {TOKEN}", f"bearer {TOKEN}"):  # schemes are case-insensitive
        response = _scrape(guarded, right)
        assert response.status_code == 200
        names = {family.name for family in text_string_to_metric_families(response.text)}
        assert "openprofiles_api_requests" in names
        assert "openprofiles_database_state_up" in names

    assert TOKEN not in caplog.text
    assert TOKEN not in repr(guarded.settings)


def test_without_a_token_a_scrape_is_answered_as_before(live_server: LiveServer) -> None:
    assert live_server.settings.metrics_token is None
    assert _scrape(live_server, None).status_code == 200
    # A header meant for something else changes nothing.
    assert _scrape(live_server, "Bearer anything-at-all-here").status_code == 200
