"""Every answer of the server carries `X-Content-Type-Options: nosniff` once (wire.nosniff): the
API's successes and errors, on the /domains shortcut and on the API's mount at the root, the
static files and the health check, while the pages keep their own security headers unchanged."""

from __future__ import annotations

import httpx
import pytest
from botocore.exceptions import ClientError


def _nosniff(headers: httpx.Headers) -> list[str]:
    return headers.get_list("x-content-type-options")


def test_api_success_carries_nosniff(live_server) -> None:
    client = live_server.client()
    client.create_domain(DomainName="nosniff", DefaultExpirationDays=30)
    answered = client.get_domain(DomainName="nosniff")
    assert answered["ResponseMetadata"]["HTTPHeaders"]["x-content-type-options"] == "nosniff"
    # Off the shortcut: ListDomains is GET /domains, ListIntegrations is under the mount.
    listed = client.list_account_integrations(Uri="arn:aws:flow:us-east-1:1:flow/none")
    assert listed["ResponseMetadata"]["HTTPHeaders"]["x-content-type-options"] == "nosniff"


def test_api_error_carries_nosniff(live_server) -> None:
    with pytest.raises(ClientError) as raised:
        live_server.client().get_domain(DomainName="no-such-domain")
    answer = raised.value.response
    assert answer["Error"]["Code"] == "ResourceNotFoundException"
    assert answer["ResponseMetadata"]["HTTPHeaders"]["x-content-type-options"] == "nosniff"
    # Unsigned, on the mount (no operation's path): the API's error, with it too.
    unsigned = httpx.get(f"{live_server.url}/no-such-path", timeout=10)
    assert unsigned.headers["x-amzn-ErrorType"] == "UnknownOperationException"
    assert _nosniff(unsigned.headers) == ["nosniff"]


def test_static_files_and_health_carry_nosniff(live_server) -> None:
    static = httpx.get(f"{live_server.url}/static/ui.css", timeout=10)
    assert static.status_code == 200
    assert static.headers["content-type"].startswith("text/css")
    assert _nosniff(static.headers) == ["nosniff"]
    health = httpx.get(f"{live_server.url}/health", timeout=10)
    assert _nosniff(health.headers) == ["nosniff"]


def test_pages_keep_their_own_security_headers_once(live_server) -> None:
    page = httpx.get(f"{live_server.url}/ui/sign-in", timeout=10)
    assert page.status_code == 200
    assert _nosniff(page.headers) == ["nosniff"]
    assert page.headers["x-frame-options"] == "DENY"
