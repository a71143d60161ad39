"""In Chromium, a DNS rebinding as an attacker's page would do it: evil.example resolves to
127.0.0.1 (Chromium's own resolver rule standing for the attacker's DNS), and the browser then
asks `openprofiles serve`, bound to 127.0.0.1, for evil.example's pages. They are refused
(wire.allowed_hosts), while the same server answers the browser at localhost and 127.0.0.1.

A security review: the server answered any Host, so such a page read /metrics and posted
sign-ins from the operator's browser."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page
from tests.browser.conftest import CHROMIUM
from tests.support.ports import free_port
from tests.support.serve import serve_first_run, wait_for_workers

pytestmark = pytest.mark.browser

EVIL = "evil.example"


@pytest.fixture(scope="module")
def served_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    process = serve_first_run(tmp_path_factory.mktemp("rebound") / "data", port)
    try:
        wait_for_workers(process, 1)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def rebinding_browser(browser: Browser) -> Iterator[Browser]:
    """Chromium for which evil.example's DNS answers 127.0.0.1, as after the rebinding."""
    launched = browser.browser_type.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            f"--host-resolver-rules=MAP {EVIL} 127.0.0.1",
            # Chromium's Private Network Access checks would stop the script's fetch from a
            # page it takes for a public one to 127.0.0.1; other browsers (Firefox, Safari)
            # have none, and the server must not rely on them.
            "--disable-features=BlockInsecurePrivateNetworkRequests,"
            "PrivateNetworkAccessSendPreflights,PrivateNetworkAccessRespectPreflightResults,"
            "LocalNetworkAccessChecks",
        ],
    )
    try:
        yield launched
    finally:
        launched.close()


@pytest.fixture
def rebound_page(rebinding_browser: Browser) -> Iterator[Page]:
    context = rebinding_browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.mark.parametrize("path", ["/metrics", "/ui/sign-in"])
def test_the_rebound_name_is_refused(rebound_page: Page, served_port: int, path: str) -> None:
    answer = rebound_page.goto(f"http://{EVIL}:{served_port}{path}")
    assert answer is not None and answer.status == 400
    assert "OPENPROFILES_ALLOWED_HOSTS" in json.loads(answer.body())["Message"]


def test_a_script_of_the_rebound_page_reads_nothing(rebound_page: Page, served_port: int) -> None:
    """The attack itself: a script of evil.example's origin fetching /metrics, same-origin
    for the browser once the name points at 127.0.0.1."""
    rebound_page.route(
        f"http://{EVIL}:{served_port}/attack",
        lambda route: route.fulfill(status=200, content_type="text/html", body="<p>hi</p>"),
    )
    rebound_page.goto(f"http://{EVIL}:{served_port}/attack")
    status, text = rebound_page.evaluate(
        "async () => { const r = await fetch('/metrics'); return [r.status, await r.text()]; }"
    )
    assert status == 400
    assert "openprofiles_" not in text


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_the_server_answers_its_own_names(rebound_page: Page, served_port: int, host: str) -> None:
    answer = rebound_page.goto(f"http://{host}:{served_port}/ui/sign-in")
    assert answer is not None and answer.status == 200
    assert rebound_page.get_by_label("Username").is_visible()
