"""Parsing members from URI, query string, headers, payload and JSON body."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from tests.unit.wire.synthetic import SYNTHETIC

from openprofiles.errors import BadRequest
from openprofiles.wire.model import load_service_model
from openprofiles.wire.parse import _from_json, parse_request

MODEL = load_service_model()


def _parse(operation: str, uri: dict[str, str], body: bytes = b"", query=None, headers=None):
    return parse_request(MODEL.operation_model(operation), uri, query or [], headers or {}, body)


def test_uri_and_body_members() -> None:
    body = (
        b'{"DefaultExpirationDays": 7, "Tags": {"k": "v"}, "Unknown": 1,'
        b' "DeadLetterQueueUrl": null}'
    )
    assert _parse("CreateDomain", {"DomainName": "d"}, body) == {
        "DomainName": "d",
        "DefaultExpirationDays": 7,
        "Tags": {"k": "v"},
    }


def test_empty_body() -> None:
    assert _parse("CreateDomain", {"DomainName": "d"}) == {"DomainName": "d"}
    assert _parse("CreateDomain", {"DomainName": "d"}, b"  ") == {"DomainName": "d"}


@pytest.mark.parametrize("body", [b"{", b"\xff\xfe", b'{"a": }'])
def test_malformed_json(body: bytes) -> None:
    with pytest.raises(BadRequest, match="could not be parsed as JSON"):
        _parse("CreateDomain", {"DomainName": "d"}, body)


@pytest.mark.parametrize("body", [b"[]", b'"x"', b"3", b"null"])
def test_body_must_be_an_object(body: bytes) -> None:
    with pytest.raises(BadRequest, match="JSON object"):
        _parse("CreateDomain", {"DomainName": "d"}, body)


def test_querystring_members() -> None:
    parsed = _parse(
        "ListIntegrations",
        {"DomainName": "d"},
        query=[("max-results", "10"), ("next-token", "a+b="), ("include-hidden", "true")],
    )
    assert parsed == {
        "DomainName": "d",
        "MaxResults": 10,
        "NextToken": "a+b=",
        "IncludeHidden": True,
    }


def test_querystring_list_and_bad_integer_passes_through() -> None:
    parsed = _parse(
        "UntagResource", {"resourceArn": "a"}, query=[("tagKeys", "x"), ("tagKeys", "y")]
    )
    assert parsed["tagKeys"] == ["x", "y"]
    # Left as text so validation reports it with the member name.
    parsed = _parse("ListDomains", {}, query=[("max-results", "ten")])
    assert parsed == {"MaxResults": "ten"}


@pytest.mark.parametrize("text", ["1_0", " 1", "1\n", "+1", "\uff11", "\u0661", "1.0", ""])
def test_an_integer_in_another_form_than_the_protocols_is_left_as_text(text: str) -> None:
    """int() took these: max-results=1_0 was answered as 10, a full-width "１" as 1."""
    assert _parse("ListDomains", {}, query=[("max-results", text)]) == {"MaxResults": text}
    assert _parse("ListDomains", {}, query=[("max-results", "-3")]) == {"MaxResults": -3}


@pytest.mark.parametrize("text", ["TRUE", "True", "1", " true"])
def test_a_boolean_other_than_true_or_false_is_left_as_text(text: str) -> None:
    parsed = _parse("ListIntegrations", {"DomainName": "d"}, query=[("include-hidden", text)])
    assert parsed["IncludeHidden"] == text


@pytest.mark.parametrize(
    "value",
    [
        "1767323045",
        "1767323045.0",
        '"1767323045"',
        '"2026-01-02T03:04:05Z"',
        '"2026-01-02T04:04:05+01:00"',
        '"2026-01-02T03:04:05"',
    ],
)
def test_body_timestamps(value: str) -> None:
    assert _list_workflows_start(value) == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _list_workflows_start(value: str) -> object:
    body = f'{{"QueryStartDate": {value}}}'.encode()
    return _parse("ListWorkflows", {"DomainName": "d"}, body)["QueryStartDate"]


@pytest.mark.parametrize(
    "value",
    [
        '"yesterday"',
        "true",
        "[1]",
        # Beyond what a datetime holds once in UTC, or at all: an OverflowError was a 500.
        '"9999-12-31T23:59:59-00:01"',
        '"0001-01-01T00:00:00+01:00"',
        '"Wed, 02 Dec 12345678901234567890 10:00:00 GMT"',
    ],
)
def test_unparsable_timestamp_passes_through_for_validation(value: str) -> None:
    assert not isinstance(_list_workflows_start(value), datetime)


def test_headers_prefix_maps_payload_and_greedy_labels() -> None:
    operation = SYNTHETIC.operation_model("GetThing")
    parsed = parse_request(
        operation,
        {"Key": "a/b"},
        [("flag", "false"), ("since", "2026-01-02T03:04:05Z"), ("f1", "x"), ("f1", "y")],
        {
            "X-Token": "t",
            "x-count": "3",
            "X-When": "Fri, 02 Jan 2026 03:04:05 GMT",
            "X-Meta-A": "1",
        },
        b"",
    )
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parsed == {
        "Key": "a/b",
        "Token": "t",
        "Count": 3,
        "When": when,
        "Meta": {"a": "1"},
        "Flag": False,
        "Since": when,
        "Filters": {"f1": ["x", "y"]},
    }


def test_blob_payload_and_integer_label() -> None:
    operation = SYNTHETIC.operation_model("PutBlob")
    assert parse_request(operation, {"Id": "7"}, [], {}, b"\x00\x01") == {
        "Id": 7,
        "Body": b"\x00\x01",
    }


def test_base64_blob_in_json() -> None:
    operation = SYNTHETIC.operation_model("GetThing")
    shape = operation.output_shape
    assert shape is not None
    data = shape.members["Data"]
    raw = base64.b64encode(b"hi").decode()
    assert _from_json(data, {"Raw": raw, "Value": "v"}) == {"Raw": b"hi", "Value": "v"}
