"""Every API request must be SigV4-signed by a known key; roles limit what a key may do."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import botocore.auth
import httpx
import pytest
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

pytestmark = pytest.mark.parametrize("live_server", ["sqlite"], indirect=True)


def _client(server, key_id: str, secret: str):
    return boto3.client(
        "customer-profiles",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )


def _signed(server, key: tuple[str, str], body: bytes, when: datetime | None = None):
    """A ListDomains-style request signed by botocore itself, optionally at another time."""
    request = AWSRequest(method="GET", url=f"{server.url}/domains", data=body)
    signer = botocore.auth.SigV4Auth(Credentials(*key), "profile", "us-east-1")
    if when is None:
        signer.add_auth(request)
    else:
        original = botocore.auth.get_current_datetime
        botocore.auth.get_current_datetime = lambda: when.replace(tzinfo=None)
        try:
            signer.add_auth(request)
        finally:
            botocore.auth.get_current_datetime = original
    return dict(request.headers.items())


def test_unknown_access_key(live_server):
    with pytest.raises(ClientError) as exc:
        _client(live_server, "OPUNKNOWN00000000000", "x").list_domains()
    assert exc.value.response["Error"]["Code"] == "UnrecognizedClientException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_wrong_secret(live_server):
    with pytest.raises(ClientError) as exc:
        _client(live_server, live_server.admin_key[0], "not-the-secret").list_domains()
    assert exc.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_unsigned_request(live_server):
    response = httpx.get(f"{live_server.url}/domains")
    assert response.status_code == 403
    assert response.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    assert json.loads(response.content)["Message"]


def test_signature_covers_the_body(live_server):
    headers = _signed(live_server, live_server.admin_key, b'{"a":1}')
    response = httpx.request(
        "GET", f"{live_server.url}/domains", headers=headers, content=b'{"a":2}'
    )
    assert response.status_code == 403
    assert response.headers["x-amzn-ErrorType"] == "InvalidSignatureException"


def test_a_correctly_signed_raw_request_is_accepted(live_server):
    headers = _signed(live_server, live_server.admin_key, b"")
    response = httpx.get(f"{live_server.url}/domains", headers=headers)
    assert response.status_code == 200, response.text
    assert "Items" in response.json()


@pytest.mark.parametrize("offset", [timedelta(minutes=16), timedelta(minutes=-16)])
def test_request_time_too_far_off(live_server, offset):
    headers = _signed(live_server, live_server.admin_key, b"", datetime.now(UTC) + offset)
    response = httpx.get(f"{live_server.url}/domains", headers=headers)
    assert response.status_code == 403
    assert response.headers["x-amzn-ErrorType"] == "InvalidSignatureException"
    # AWS's wording: "Signature expired: ..." / "Signature not yet current: ...".
    message = response.json()["Message"]
    assert message.startswith("Signature") and "15 min" in message


def test_request_time_within_the_window(live_server):
    headers = _signed(
        live_server, live_server.admin_key, b"", datetime.now(UTC) - timedelta(minutes=10)
    )
    assert httpx.get(f"{live_server.url}/domains", headers=headers).status_code == 200


def test_malformed_json_body(live_server):
    request = AWSRequest(
        method="POST",
        url=f"{live_server.url}/domains/bad-json",
        data=b'{"DefaultExpirationDays": ',
        headers={"Content-Type": "application/json"},
    )
    botocore.auth.SigV4Auth(Credentials(*live_server.admin_key), "profile", "us-east-1").add_auth(
        request
    )
    response = httpx.post(request.url, headers=dict(request.headers.items()), content=request.body)
    assert response.status_code == 400
    assert response.headers["x-amzn-ErrorType"] == "BadRequestException"
    assert "JSON" in response.json()["Message"]


def test_unknown_path_is_an_aws_error_not_a_bare_404(live_server):
    headers = _signed(live_server, live_server.admin_key, b"")
    response = httpx.get(f"{live_server.url}/no/such/thing", headers=headers)
    assert response.status_code == 404
    assert response.headers["x-amzn-ErrorType"]
    assert response.json()["Message"]


@pytest.mark.parametrize("path", ["/domains/d/profiles/keys", "/templates"])
def test_a_known_path_with_another_method_is_405_not_404(live_server, path):
    request = AWSRequest(method="PUT", url=f"{live_server.url}{path}", data=b"{}")
    botocore.auth.SigV4Auth(Credentials(*live_server.admin_key), "profile", "us-east-1").add_auth(
        request
    )
    response = httpx.put(request.url, headers=dict(request.headers.items()), content=request.body)
    assert response.status_code == 405
    assert response.headers["x-amzn-ErrorType"] == "MethodNotAllowedException"
    assert response.headers["Allow"] in ("POST", "GET")
    assert response.json()["Message"].startswith(f"PUT is not allowed on {path}; it accepts ")


def test_not_implemented_operation_names_itself(live_server):
    with pytest.raises(ClientError) as exc:
        live_server.client().list_workflows(DomainName="any")
    assert exc.value.response["Error"]["Code"] == "NotImplementedException"
    assert "ListWorkflows" in exc.value.response["Error"]["Message"]


def test_health_needs_no_signature(live_server):
    assert httpx.get(f"{live_server.url}/health").json() == {"status": "ok"}
