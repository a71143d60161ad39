"""A web page on another origin (a custom agent desktop, say) calls the API from Chromium with
SigV4-signed requests: allowed when its origin is in OPENPROFILES_CORS_ORIGINS, blocked by the
browser otherwise — the browser, not the test, decides."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from playwright.sync_api import Browser
from tests.support.server import LiveServer, run_server
from tests.unit.integrations.integ_helpers import ctr

from openprofiles.settings import Settings

PAGE = b"<!doctype html><title>agent desktop</title><p>desk</p>"

FETCH = """
async ([url, init]) => {
  try {
    const response = await fetch(url, init);
    return {status: response.status, body: await response.json(),
            requestId: response.headers.get('x-amzn-RequestId')};
  } catch (error) {
    return {blocked: String(error)};
  }
}
"""


@contextmanager
def desk_origin() -> Iterator[str]:
    """A plain web server for the page, on a port of its own: another origin than the API's."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(PAGE)

        def log_message(self, *_args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join()


def _presigned_list_domains(server: LiveServer) -> str:
    client = boto3.client(
        "customer-profiles",
        endpoint_url=server.url,
        region_name=server.settings.region,
        aws_access_key_id=server.admin_key[0],
        aws_secret_access_key=server.admin_key[1],
    )
    return str(client.generate_presigned_url("list_domains", ExpiresIn=300))


def _signed_create_domain(server: LiveServer, name: str) -> tuple[str, dict[str, Any]]:
    """URL and fetch() options of a header-signed CreateDomain: a request a browser checks with
    a preflight first (its Authorization and X-Amz-* headers are not 'simple')."""
    url = f"{server.url}/domains/{name}"
    body = json.dumps({"DefaultExpirationDays": 30})
    request = AWSRequest(
        method="POST", url=url, data=body, headers={"Content-Type": "application/json"}
    )
    SigV4Auth(Credentials(*server.admin_key), "profile", server.settings.region).add_auth(request)
    headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
    return url, {"method": "POST", "headers": headers, "body": body}


def _calls_from_the_desk(browser: Browser, desk: str, server: LiveServer) -> list[dict[str, Any]]:
    page = browser.new_page()
    try:
        page.goto(desk)
        listed = page.evaluate(FETCH, [_presigned_list_domains(server), {}])
        created = page.evaluate(FETCH, list(_signed_create_domain(server, "from-the-desk")))
        return [listed, created]
    finally:
        page.close()


def test_an_allowed_origin_calls_the_api_from_a_browser(browser: Browser, tmp_path) -> None:
    with desk_origin() as desk:
        settings = Settings(data_dir=tmp_path / "data", cors_origins=(desk,))
        with run_server(settings) as server:
            listed, created = _calls_from_the_desk(browser, desk, server)
            assert listed["status"] == 200 and listed["body"]["Items"] == []
            assert listed["requestId"]  # exposed to the page
            assert created["status"] == 200 and created["body"]["DomainName"] == "from-the-desk"
            names = [d["DomainName"] for d in server.client().list_domains()["Items"]]
            assert names == ["from-the-desk"]


def test_without_the_origin_allowed_the_browser_blocks_the_page(browser: Browser, tmp_path) -> None:
    with desk_origin() as desk:
        settings = Settings(data_dir=tmp_path / "data", cors_origins=("https://other.example",))
        with run_server(settings) as server:
            listed, created = _calls_from_the_desk(browser, desk, server)
            assert "blocked" in listed and "blocked" in created
            # The preflight stopped the write before it was sent.
            assert server.client().list_domains()["Items"] == []


def _signed_contact_record(
    server: LiveServer, record: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """URL and fetch() options of a header-signed POST /contact-records (preflighted)."""
    url = f"{server.url}/contact-records"
    body = json.dumps(record)
    request = AWSRequest(
        method="POST", url=url, data=body, headers={"Content-Type": "application/json"}
    )
    SigV4Auth(Credentials(*server.admin_key), "profile", server.settings.region).add_auth(request)
    headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
    return url, {"method": "POST", "headers": headers, "body": body}


def test_an_allowed_origin_may_call_the_api_only_not_the_contact_feed(
    browser: Browser, tmp_path
) -> None:
    """The contact feed is a machine feed: the API's CORS grant must not reach it (the API is
    mounted at the root, behind the feed's POST-only routes). Had the preflight passed, the
    signed record would have been sent and applied, even with its answer hidden from the page."""
    instance = "arn:aws:connect:us-east-1:111122223333:instance/cors-feed"
    with desk_origin() as desk:
        settings = Settings(data_dir=tmp_path / "data", cors_origins=(desk,))
        with run_server(settings) as server:
            client = server.client()
            client.create_domain(DomainName="desk", DefaultExpirationDays=30)
            client.put_integration(DomainName="desk", Uri=instance)
            record = ctr("from-the-desk", instance=instance)
            page = browser.new_page()
            try:
                page.goto(desk)
                sent = page.evaluate(FETCH, list(_signed_contact_record(server, record)))
            finally:
                page.close()
            assert "blocked" in sent
            found = client.search_profiles(
                DomainName="desk", KeyName="_ctrContactId", Values=["from-the-desk"]
            )["Items"]
            assert found == []


@pytest.mark.parametrize(
    "value", ["https://desk.example.com/", "desk.example.com", "ftp://x", "https://a b"]
)
def test_an_origin_that_is_not_one_is_a_settings_error(value: str) -> None:
    with pytest.raises(ValueError, match="OPENPROFILES_CORS_ORIGINS must list origins"):
        Settings.from_env({"OPENPROFILES_CORS_ORIGINS": f"http://ok.example, {value}"})
    allowed = Settings.from_env({"OPENPROFILES_CORS_ORIGINS": "http://a.example:3000, *"})
    assert allowed.cors_origins == ("http://a.example:3000", "*")
