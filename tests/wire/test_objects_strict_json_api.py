"""Bad JSON through the API is a BadRequestException that says what is wrong, never a 500 and
never stored: PutProfileObject's Object and every request body are strict JSON (no NaN or
Infinity, no lone surrogate, at most MAX_JSON_DEPTH levels of nesting). Also how a Handlebars
Source renders a JSON array into an attribute, end to end. Real boto3 against a live server on
both backends."""

from __future__ import annotations

import json
import uuid
from typing import Any

import botocore.auth
import httpx
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from openprofiles.json_text import MAX_JSON_DEPTH

T: dict[str, Any] = {
    "Description": "records with a custom key",
    "AllowProfileCreation": True,
    "Fields": {
        "id": {"Source": "_source.id"},
        "cust": {"Source": "_source.cust"},
        "n": {"Source": "_source.n", "Target": "_profile.Attributes.n"},
        "e": {"Source": "{{_source.a}}", "Target": "_profile.Attributes.e"},
    },
    "Keys": {
        "custId": [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["cust"]}],
        "uid": [{"StandardIdentifiers": ["UNIQUE"], "FieldNames": ["id"]}],
    },
}
TOO_DEEP = (
    "is nested too deeply: JSON arrays and objects may be nested at most "
    f"{MAX_JSON_DEPTH} levels deep."
)


@pytest.fixture
def domain(live_server: Any) -> str:
    name = f"sj-{uuid.uuid4().hex[:10]}"
    client = live_server.client()
    client.create_domain(DomainName=name, DefaultExpirationDays=30)
    client.put_profile_object_type(DomainName=name, ObjectTypeName="T", **T)
    return name


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    response = exc.value.response
    return (
        str(response["Error"]["Code"]),
        int(response["ResponseMetadata"]["HTTPStatusCode"]),
        str(response["Error"]["Message"]),
    )


def _profiles(client: Any, domain: str, cust: str) -> list[dict[str, Any]]:
    found = client.search_profiles(DomainName=domain, KeyName="custId", Values=[cust])
    return list(found["Items"])


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (
            '{"a":' + "[" * 100_000 + "]" * 100_000 + "}",
            f"The Object {TOO_DEEP}",
        ),
        (
            '{"id":"1","cust":"c1","n":' + "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH + "}",
            f"The Object {TOO_DEEP}",
        ),
        (
            '{"id":"2","cust":"c1","n":NaN}',
            "The Object is not valid JSON: NaN is not a JSON value (JSON numbers cannot be NaN "
            "or infinite).",
        ),
        (
            '{"id":"3","cust":"c1","n":Infinity}',
            "The Object is not valid JSON: Infinity is not a JSON value (JSON numbers cannot be "
            "NaN or infinite).",
        ),
        ('{"id":"4","cust":"c1","n":-Infinity}', "-Infinity is not a JSON value"),
        (
            '{"id":"7","cust":"c1","n":1e999}',
            "The Object is not valid JSON: a number is too large to be stored (beyond about "
            "1.8e308, infinite).",
        ),
        (
            '{"id":"5","cust":"\\ud800","n":1}',
            "The Object is not valid Unicode JSON text: the string at cust contains a lone "
            "surrogate (a \\uD800-\\uDFFF escape without its pair).",
        ),
        ('{"id":"6","cust":"c1","x":{"\\udfff":1}}', "the member name at x.\\udfff contains"),
    ],
    ids=[
        "deep",
        "one-too-deep",
        "nan",
        "infinity",
        "minus-infinity",
        "overflowing-number",
        "surrogate",
        "key-name",
    ],
)
def test_put_profile_object_rejects_what_is_not_strict_json(
    live_server: Any, domain: str, obj: str, message: str
) -> None:
    client = live_server.client()
    with pytest.raises(ClientError) as exc:
        client.put_profile_object(DomainName=domain, ObjectTypeName="T", Object=obj)
    code, status, text = _error(exc)
    assert (code, status) == ("BadRequestException", 400)
    assert message in text
    # Nothing of it was stored.
    assert _profiles(client, domain, "c1") == []


def test_a_lone_surrogate_in_any_request_body_is_a_bad_request(
    live_server: Any, domain: str
) -> None:
    client = live_server.client()
    with pytest.raises(ClientError) as exc:
        client.create_profile(DomainName=domain, FirstName="Ada\ud800")
    code, status, text = _error(exc)
    assert (code, status) == ("BadRequestException", 400)
    assert text == (
        "The request body is not valid Unicode JSON text: the string at FirstName contains a "
        "lone surrogate (a \\uD800-\\uDFFF escape without its pair)."
    )
    # A surrogate pair (what boto3 sends for an emoji) is ordinary text.
    pid = client.create_profile(DomainName=domain, FirstName="Ada \U0001f600")["ProfileId"]
    found = client.search_profiles(DomainName=domain, KeyName="_profileId", Values=[pid])
    assert found["Items"][0]["FirstName"] == "Ada \U0001f600"


def _send_signed(live_server: Any, method: str, path: str, body: str) -> httpx.Response:
    """A request botocore signs but does not serialize: its body is exactly `body`."""
    request = AWSRequest(
        method=method,
        url=f"{live_server.url}{path}",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    botocore.auth.SigV4Auth(Credentials(*live_server.admin_key), "profile", "us-east-1").add_auth(
        request
    )
    return httpx.request(
        method, request.url, headers=dict(request.headers.items()), content=request.body
    )


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        (
            "PUT",
            "/domains/{domain}/object-types/U",
            '{"Description":"x","Fields":' + "[" * 50_000 + "]" * 50_000 + "}",
        ),
        (
            "PUT",
            "/domains/{domain}/profiles/objects",
            '{"ObjectTypeName":"T","Object":"{}","x":' + "[" * 50_000 + "]" * 50_000 + "}",
        ),
    ],
    ids=["PutProfileObjectType", "PutProfileObject"],
)
def test_a_deeply_nested_request_body_is_a_bad_request(
    live_server: Any, domain: str, method: str, path: str, body: str
) -> None:
    response = _send_signed(live_server, method, path.format(domain=domain), body)
    assert response.status_code == 400
    assert response.headers["x-amzn-ErrorType"] == "BadRequestException"
    assert response.json()["Message"] == f"The request body {TOO_DEEP}"


def test_nan_in_a_request_body_is_a_bad_request(live_server: Any, domain: str) -> None:
    # botocore never writes NaN into JSON; a body that has it is malformed.
    response = _send_signed(
        live_server, "POST", f"/domains/{domain}/profiles", '{"FirstName":"a","Attributes":NaN}'
    )
    assert response.status_code == 400
    assert response.headers["x-amzn-ErrorType"] == "BadRequestException"
    assert "NaN is not a JSON value" in response.json()["Message"]


def test_a_template_over_an_array_stores_json_in_the_attribute(
    live_server: Any, domain: str
) -> None:
    client = live_server.client()
    obj = {"id": "9", "cust": "c9", "n": 1, "a": ["p", {"q": "ü"}]}
    client.put_profile_object(DomainName=domain, ObjectTypeName="T", Object=json.dumps(obj))
    [profile] = _profiles(client, domain, "c9")
    assert profile["Attributes"] == {"n": "1", "e": '["p",{"q":"ü"}]'}
