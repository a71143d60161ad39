"""SigV4 verification against requests signed by real botocore."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from tests.unit.wire.helpers import ACCESS_KEY, SECRET_KEY, Capture, CapturedRequest, make_client

from openprofiles.errors import (
    InvalidSignature,
    MissingAuthenticationToken,
    ServiceError,
    UnrecognizedClient,
)
from openprofiles.wire.sigv4 import canonical_path, verify_request

ARN = "arn:aws:profile:us-east-1:000000000000:domains/name"


def _secrets(key: str) -> str | None:
    return {ACCESS_KEY: SECRET_KEY}.get(key)


def _verify(
    request: CapturedRequest,
    *,
    now: datetime | None = None,
    find_secret: Callable[[str], str | None] = _secrets,
) -> str:
    return verify_request(
        request.method,
        request.raw_path,
        request.raw_query,
        request.headers,
        request.body,
        find_secret,
        now or datetime.now(UTC),
        900,
    )


def _signed(call: Callable[[Any], Any], **credentials: str) -> CapturedRequest:
    capture = Capture()
    call(make_client(capture, **credentials))
    return capture.last


def _raises(error: type[ServiceError], request: CapturedRequest, **kwargs: Any) -> str:
    with pytest.raises(error) as caught:
        _verify(request, **kwargs)
    assert type(caught.value) is error
    return caught.value.message


CALLS: dict[str, Callable[[Any], Any]] = {
    "tag-resource-arn-label": lambda c: c.tag_resource(resourceArn=ARN, tags={"k": "v"}),
    "untag-list-query": lambda c: c.untag_resource(resourceArn=ARN, tagKeys=["a b", "c+d", "e"]),
    "query-with-reserved": lambda c: c.list_domains(NextToken="a=b+c/d e%f~", MaxResults=5),
    "get-no-body": lambda c: c.get_domain(DomainName="d"),
    "unicode-body": lambda c: c.create_profile(DomainName="d", FirstName="Zoë 山田"),
    "label-with-space": lambda c: c.get_profile_object_type_template(TemplateId="a b~c"),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_botocore_signed_requests_verify(name: str) -> None:
    assert _verify(_signed(CALLS[name])) == ACCESS_KEY


def test_session_token_is_accepted() -> None:
    request = _signed(CALLS["get-no-body"], token="session-token")
    assert "x-amz-security-token" in request.headers["Authorization"]
    assert _verify(request) == ACCESS_KEY


def test_header_whitespace_is_folded() -> None:
    capture = Capture()
    client = make_client(capture)

    def add_header(request: Any, **_: Any) -> None:
        request.headers["X-Amz-Meta-Note"] = "  a   b \t c  "

    client.meta.events.register_first("before-sign.customer-profiles.*", add_header)
    client.get_domain(DomainName="d")
    assert "x-amz-meta-note" in capture.last.headers["Authorization"]
    assert _verify(capture.last) == ACCESS_KEY


def test_path_is_double_encoded_like_botocore() -> None:
    assert canonical_path("/tags/arn%3Aaws%2Fx") == "/tags/arn%253Aaws%252Fx"
    assert canonical_path("/a/./b/../c//d/") == "/a/c/d/"
    assert canonical_path("") == "/"


def test_wrong_secret() -> None:
    request = _signed(CALLS["get-no-body"], secret_key="not-the-secret")
    message = _raises(InvalidSignature, request)
    assert message.startswith("The request signature we calculated does not match")


def test_unknown_access_key() -> None:
    request = _signed(CALLS["get-no-body"], access_key="AKIDUNKNOWN")
    message = _raises(UnrecognizedClient, request)
    assert message == "The security token included in the request is invalid."


def test_missing_authorization() -> None:
    request = _signed(CALLS["get-no-body"])
    headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
    _raises(MissingAuthenticationToken, dataclasses.replace(request, headers=headers))


@pytest.mark.parametrize(
    "change",
    [
        {"body": b'{"tags": {"k": "w"}}'},
        {"raw_path": "/tags/arn%3Aaws%3Aprofile%3Aus-east-1%3A000000000000%3Adomains%2Fother"},
        {"raw_query": "x=1"},
        {"method": "PUT"},
    ],
)
def test_modified_request(change: dict[str, Any]) -> None:
    request = dataclasses.replace(_signed(CALLS["tag-resource-arn-label"]), **change)
    _raises(InvalidSignature, request)


def test_modified_signed_header() -> None:
    request = _signed(CALLS["tag-resource-arn-label"])
    headers = {**request.headers, "Content-Type": "text/plain"}
    _raises(InvalidSignature, dataclasses.replace(request, headers=headers))


def test_skewed_clock() -> None:
    request = _signed(CALLS["get-no-body"])
    signed = datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert _verify(request, now=signed + timedelta(seconds=899)) == ACCESS_KEY
    message = _raises(InvalidSignature, request, now=signed + timedelta(minutes=16))
    assert message.startswith(f"Signature expired: {request.headers['X-Amz-Date']} is now earlier")
    message = _raises(InvalidSignature, request, now=signed - timedelta(minutes=16))
    assert message.startswith("Signature not yet current:")
    assert "is still later than" in message


def _with_authorization(request: CapturedRequest, value: str) -> CapturedRequest:
    return dataclasses.replace(request, headers={**request.headers, "Authorization": value})


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda a: a.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1"), "Only AWS4-HMAC-SHA256"),
        (lambda a: a.replace("/profile/", "/s3/"), "correct service: 'profile', not 's3'"),
        (lambda a: a.replace("aws4_request", "aws5_request"), "terminator"),
        (lambda a: a.split(", Signature")[0], "requires 'Credential'"),
        (lambda a: "AWS4-HMAC-SHA256 garbage", "requires 'Credential'"),
        (lambda a: a.replace("SignedHeaders=host;x-amz-date", "SignedHeaders=x-amz-date"), "host"),
        (lambda a: a.replace("host;x-amz-date", "host;x-amz-date;x-nope"), "x-nope"),
    ],
)
def test_malformed_authorization(mutate: Callable[[str], str], expected: str) -> None:
    request = _signed(CALLS["get-no-body"])
    bad = _with_authorization(request, mutate(request.headers["Authorization"]))
    assert expected in _raises(InvalidSignature, bad)


@pytest.mark.parametrize("extra", ["Expires=604800", "Date=20200101T000000Z, Expires=1"])
def test_parts_appended_to_the_authorization_header_change_no_check(extra: str) -> None:
    # The header is not covered by its signature: anyone holding a captured request can append
    # to it. An `Expires` there once turned the 15 minutes' skew into a pre-signed URL's
    # lifetime, so a request captured days ago was accepted again.
    request = _signed(CALLS["get-no-body"])
    signed = datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    replayed = _with_authorization(request, f"{request.headers['Authorization']}, {extra}")
    message = _raises(InvalidSignature, replayed, now=signed + timedelta(days=2))
    assert message.startswith(f"Signature expired: {request.headers['X-Amz-Date']} is now earlier")
    assert _verify(replayed, now=signed + timedelta(seconds=60)) == ACCESS_KEY


def test_scope_date_must_match_request_date() -> None:
    request = _signed(CALLS["get-no-body"])
    date = request.headers["X-Amz-Date"][:8]
    bad = _with_authorization(request, request.headers["Authorization"].replace(date, "20000101"))
    assert "Date in Credential scope does not match" in _raises(InvalidSignature, bad)


@pytest.mark.parametrize(
    "shape",
    [
        lambda d: d[:8] + "T2561" + d[13:],  # hour 25
        lambda d: d[:8] + "T" + d[10:],  # a digit short, which strptime would accept
        lambda d: d[:9] + "\u0661" + d[10:],  # an Arabic-Indic digit
        lambda d: d[:8] + " " + d[9:],
        lambda d: d.rstrip("Z"),
    ],
)
def test_malformed_request_date(shape: Callable[[str], str]) -> None:
    request = _signed(CALLS["get-no-body"])
    bad = dataclasses.replace(
        request, headers={**request.headers, "X-Amz-Date": shape(request.headers["X-Amz-Date"])}
    )
    assert "X-Amz-Date must be in the form" in _raises(InvalidSignature, bad)


def test_any_region_is_accepted() -> None:
    capture = Capture()
    client = boto3.client(
        "customer-profiles",
        endpoint_url="http://openprofiles.test:8080",
        region_name="eu-west-3",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    client.meta.events.register("before-send.customer-profiles.*", capture.hook)
    client.list_domains()
    assert "/eu-west-3/profile/" in capture.last.headers["Authorization"]
    assert _verify(capture.last) == ACCESS_KEY


def test_payload_hash_header_must_match_body() -> None:
    request = _signed(CALLS["tag-resource-arn-label"])
    for value, expected in [("UNSIGNED-PAYLOAD", "Unsigned"), ("0" * 64, "x-amz-content-sha256")]:
        bad = dataclasses.replace(
            request, headers={**request.headers, "X-Amz-Content-SHA256": value}
        )
        assert expected in _raises(InvalidSignature, bad)


def test_presigned_url() -> None:
    client = make_client(Capture())
    url = client.generate_presigned_url("list_domains", Params={"MaxResults": 5}, ExpiresIn=60)
    parts = urlsplit(url)
    request = CapturedRequest("GET", parts.path, parts.query, {"host": parts.netloc}, b"")
    assert _verify(request) == ACCESS_KEY
    _raises(InvalidSignature, request, now=datetime.now(UTC) + timedelta(seconds=120))
    tampered = dataclasses.replace(
        request, raw_query=parts.query.replace("max-results=5", "max-results=6")
    )
    _raises(InvalidSignature, tampered)


def test_a_query_escape_that_is_not_utf8_is_verified_on_its_bytes() -> None:
    # botocore signs a query written into the URL as it is: `%FF` must be canonicalised as the
    # byte it is, not as U+FFFD (`%EF%BF%BD`), or a correctly signed request fails.
    request = AWSRequest(method="GET", url="http://openprofiles.test/domains?next-token=%FF&a=%C3")
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "profile", "us-east-1").add_auth(request)
    headers = {name: str(value) for name, value in request.headers.items()}
    signed = CapturedRequest(
        "GET", "/domains", "next-token=%FF&a=%C3", {**headers, "host": "openprofiles.test"}, b""
    )
    assert _verify(signed) == ACCESS_KEY
    _raises(InvalidSignature, dataclasses.replace(signed, raw_query="next-token=%FE&a=%C3"))
    _raises(InvalidSignature, dataclasses.replace(signed, raw_query="next-token=%EF%BF%BD&a=%C3"))
