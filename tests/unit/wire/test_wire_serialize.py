"""Output serialization, checked by parsing the result with botocore's own rest-json parser."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from botocore.awsrequest import HeadersDict
from botocore.parsers import create_parser
from tests.unit.wire.synthetic import SYNTHETIC

from openprofiles.wire.model import load_service_model
from openprofiles.wire.serialize import serialize_output

MODEL = load_service_model()


def _botocore_reads(operation_model: Any, response: tuple[int, dict[str, str], bytes]) -> Any:
    status, headers, body = response
    parsed = create_parser("rest-json").parse(
        {"status_code": status, "headers": HeadersDict(headers), "body": body},
        operation_model.output_shape,
    )
    parsed.pop("ResponseMetadata", None)
    return parsed


def test_get_domain_timestamps_are_epoch_seconds() -> None:
    operation = MODEL.operation_model("GetDomain")
    created = datetime(2026, 1, 2, 3, 4, 5, 250000, tzinfo=UTC)
    result = {
        "DomainName": "d",
        "DefaultExpirationDays": 7,
        "CreatedAt": created,
        "LastUpdatedAt": datetime(2026, 1, 2, 4, 4, 5, tzinfo=timezone(timedelta(hours=1))),
        "Tags": {"k": "v"},
        "DeadLetterQueueUrl": None,
        "internal_secret": "never sent",
    }
    status, headers, body = serialize_output(operation, result)
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    document = json.loads(body)
    assert document["CreatedAt"] == 1767323045.25
    assert document["LastUpdatedAt"] == 1767323045
    assert "DeadLetterQueueUrl" not in document
    assert "internal_secret" not in document
    parsed = _botocore_reads(operation, (status, headers, body))
    assert parsed["CreatedAt"] == created
    assert parsed["LastUpdatedAt"] == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parsed["Tags"] == {"k": "v"}


def test_numbers_and_naive_datetimes() -> None:
    operation = MODEL.operation_model("GetDomain")
    naive = datetime(2026, 1, 2, 3, 4, 5)
    _, _, body = serialize_output(operation, {"DomainName": "d", "CreatedAt": naive})
    assert json.loads(body)["CreatedAt"] == 1767323045
    _, _, body = serialize_output(operation, {"DomainName": "d", "CreatedAt": 1767323045.5})
    assert json.loads(body)["CreatedAt"] == 1767323045.5


def test_nested_lists_and_structures_drop_unknown_keys() -> None:
    operation = MODEL.operation_model("ListDomains")
    result = {
        "Items": [
            {"DomainName": "a", "CreatedAt": 0, "LastUpdatedAt": 0, "Extra": 1},
            {"DomainName": "b", "CreatedAt": 1, "LastUpdatedAt": 1, "Tags": {"x": "y"}},
        ],
        "NextToken": "t",
    }
    _, _, body = serialize_output(operation, result)
    assert json.loads(body) == {
        "Items": [
            {"DomainName": "a", "CreatedAt": 0, "LastUpdatedAt": 0},
            {"DomainName": "b", "CreatedAt": 1, "LastUpdatedAt": 1, "Tags": {"x": "y"}},
        ],
        "NextToken": "t",
    }


def test_response_code_and_status_code_member() -> None:
    assert serialize_output(MODEL.operation_model("CreateRecommender"), {})[0] == 200
    operation = MODEL.operation_model("CreateSegmentEstimate")
    status, _, body = serialize_output(operation, {"StatusCode": 202, "EstimateId": "e"})
    assert status == 202
    assert json.loads(body) == {"EstimateId": "e"}


def test_header_members_and_payloads() -> None:
    operation = SYNTHETIC.operation_model("GetThing")
    result = {"ETag": "abc", "Meta": {"a": "1"}, "Data": {"Value": "v", "Raw": b"hi"}}
    status, headers, body = serialize_output(operation, result)
    assert headers["ETag"] == "abc"
    assert headers["x-meta-a"] == "1"
    assert json.loads(body) == {"Value": "v", "Raw": "aGk="}
    parsed = _botocore_reads(operation, (status, headers, body))
    assert parsed == {"ETag": "abc", "Meta": {"a": "1"}, "Data": {"Value": "v", "Raw": b"hi"}}
    blob = SYNTHETIC.operation_model("PutBlob")
    assert serialize_output(blob, {"Body": b"\x00"})[0::2] == (201, b"\x00")


def test_no_output_shape_gives_empty_object() -> None:
    operation = SYNTHETIC.operation_model("GetOther")
    assert serialize_output(operation, {"x": 1}) == (
        200,
        {"Content-Type": "application/json"},
        b"{}",
    )
