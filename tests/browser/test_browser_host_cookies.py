"""In Chromium against a live server over HTTPS (TLS terminated by the server, a certificate of
its own): the pages' cookies are named with the `__Host-` prefix, and Chromium, which drops such
a cookie unless it is Secure, for Path=/ and with no Domain, keeps them and signs the agent in
(ui.web.browser_name). A session cookie under the plain name, as a sibling subdomain could plant
it, opens no session. A search address copied to another agent's browser opens nothing there
(agent_pages._search_scope).

The names used to be plain over HTTPS too, and search addresses opened for anyone signed in."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
import uvicorn
from botocore.config import Config
from playwright.sync_api import Browser, BrowserContext, Page, expect
from tests.browser.conftest import PASSWORD
from tests.conftest import BACKENDS
from tests.support.backends import database_url_for
from tests.support.ports import bound_loopback_socket
from tests.support.tls_cert import self_signed

from openprofiles.app import create_app
from openprofiles.auth.credentials import create_credential
from openprofiles.settings import Settings
from openprofiles.ui.web import SESSION_COOKIE, cookie_name
from openprofiles.users.service import create_user

pytestmark = pytest.mark.browser

EMAIL = "efua.owusu@example.com"


@dataclass
class TlsServer:
    url: str
    session_cookie: str  # this installation's session cookie's name over plain HTTP
    domain: str


@pytest.fixture(scope="module", params=BACKENDS)
def tls_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TlsServer]:
    """The app served over HTTPS by uvicorn, with users ana and ben (agents) and a domain of 21
    profiles sharing an email address."""
    tmp = tmp_path_factory.mktemp("tls")
    cert_file, key_file = self_signed(tmp)
    with database_url_for(request.param, tmp) as url, bound_loopback_socket() as sock:
        port = int(sock.getsockname()[1])
        app = create_app(Settings(data_dir=tmp / "data", database_url=url, port=port))
        services = app.state.services
        with services.write() as tx:
            key = create_credential(tx, role="admin")
            for username in ("ana", "ben"):
                create_user(tx, username=username, password=PASSWORD, role="agent")
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=port,
                log_level="warning",
                access_log=False,
                ssl_certfile=str(cert_file),
                ssl_keyfile=str(key_file),
            )
        )
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:  # the server's own readiness flag, bounded
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        try:
            base = f"https://127.0.0.1:{port}"
            client = boto3.client(
                "customer-profiles",
                endpoint_url=base,
                region_name=services.settings.region,
                aws_access_key_id=key.access_key_id,
                aws_secret_access_key=key.secret_access_key,
                verify=str(cert_file),  # the test's own certificate, trusted as itself
                config=Config(retries={"max_attempts": 1}),
            )
            domain = f"tls-{uuid.uuid4().hex[:8]}"
            client.create_domain(DomainName=domain, DefaultExpirationDays=366)
            for n in range(21):
                client.create_profile(
                    DomainName=domain, FirstName="Efua", LastName=f"Owusu{n}", EmailAddress=EMAIL
                )
            yield TlsServer(base, cookie_name(services, SESSION_COOKIE), domain)
        finally:
            server.should_exit = True
            thread.join(timeout=20)
            services.database.dispose()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A browser of its own (its own cookies) that takes the test's certificate."""
    opened = browser.new_context(ignore_https_errors=True, viewport={"width": 1366, "height": 800})
    try:
        yield opened
    finally:
        opened.close()


def signed_in(context: BrowserContext, server: TlsServer, username: str) -> Page:
    page = context.new_page()
    page.goto(f"{server.url}/ui/sign-in")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    return page


def test_over_https_chromium_keeps_host_only_cookies_and_signs_in(
    context: BrowserContext, tls_server: TlsServer
) -> None:
    page = signed_in(context, tls_server, "ana")
    session = [c for c in context.cookies() if c["name"].endswith(tls_server.session_cookie)]
    assert [c["name"] for c in session] == [f"__Host-{tls_server.session_cookie}"]
    assert session[0]["secure"] and session[0]["path"] == "/"
    assert session[0]["domain"] == "127.0.0.1"  # host-only: no Domain attribute was given
    assert all(c["name"].startswith("__Host-") for c in context.cookies())
    page.goto(f"{tls_server.url}/agent/domains/{tls_server.domain}")
    expect(page.get_by_label("Search customers")).to_be_visible()


def test_over_https_a_planted_plain_session_cookie_opens_no_session(
    browser: Browser, context: BrowserContext, tls_server: TlsServer
) -> None:
    signed_in(context, tls_server, "ana")
    (session,) = (c for c in context.cookies() if c["name"].endswith(tls_server.session_cookie))
    planted = browser.new_context(ignore_https_errors=True)
    try:
        # Under the plain name, for the whole site, as a sibling subdomain (or another port of
        # this host) can set it: the browser sends it, the server does not take it.
        planted.add_cookies(
            [
                {
                    "name": tls_server.session_cookie,
                    "value": session["value"],
                    "domain": "127.0.0.1",
                    "path": "/",
                    "secure": True,
                }
            ]
        )
        page = planted.new_page()
        page.goto(f"{tls_server.url}/agent/domains/{tls_server.domain}")
        assert page.url.startswith(f"{tls_server.url}/ui/sign-in")
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    finally:
        planted.close()


def test_a_search_address_copied_to_another_agent_opens_nothing(
    browser: Browser, context: BrowserContext, tls_server: TlsServer
) -> None:
    page = signed_in(context, tls_server, "ana")
    page.goto(f"{tls_server.url}/agent/domains/{tls_server.domain}")
    page.get_by_label("Search customers").fill(EMAIL)
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#results-heading")).to_contain_text("20+ results")
    address = page.url
    assert EMAIL not in address and "?s=" in address

    other = browser.new_context(ignore_https_errors=True)
    try:
        copied = signed_in(other, tls_server, "ben")
        copied.goto(address)
        expect(copied.get_by_text("This search address is not valid")).to_be_visible()
        expect(copied.locator("#results-heading")).to_have_count(0)
        expect(copied.get_by_label("Search customers")).to_have_value("")
        assert "Owusu" not in copied.content()
    finally:
        other.close()
    # Where it was made, it still opens.
    page.goto(address)
    expect(page.locator("#results-heading")).to_contain_text("20+ results")
