"""Validation against model shapes: required, types, lengths, ranges, enums, patterns."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from tests.unit.wire.synthetic import SYNTHETIC

from openprofiles.errors import BadRequest
from openprofiles.wire.model import load_service_model
from openprofiles.wire.validate import _compiled, validate_input

MODEL = load_service_model()


def _input(operation: str) -> Any:
    return MODEL.operation_model(operation).input_shape


def _error(operation: str, params: dict[str, Any]) -> str:
    with pytest.raises(BadRequest) as caught:
        validate_input(_input(operation), params)
    return caught.value.message


def _domain(**overrides: Any) -> dict[str, Any]:
    return {"DomainName": "d", "DefaultExpirationDays": 7, **overrides}


def test_valid_input_passes() -> None:
    validate_input(_input("CreateDomain"), _domain(Tags={"k": "v"}))
    validate_input(_input("ListDomains"), {})
    validate_input(None, {})


def test_required() -> None:
    message = _error("CreateDomain", {})
    assert message.startswith("2 validation errors detected: ")
    assert "DomainName is required" in message
    assert "DefaultExpirationDays is required" in message


def test_too_long_and_too_short() -> None:
    assert "DomainName must have length at most 64" in _error(
        "CreateDomain", _domain(DomainName="a" * 65)
    )
    assert "DomainName must have length at least 1" in _error(
        "CreateDomain", _domain(DomainName="")
    )


def test_numeric_range() -> None:
    message = _error("CreateDomain", _domain(DefaultExpirationDays=0))
    assert message == "1 validation error detected: DefaultExpirationDays must be at least 1"
    assert "at most 1098" in _error("CreateDomain", _domain(DefaultExpirationDays=5000))
    assert "out of range" in _error("CreateDomain", _domain(DefaultExpirationDays=2**40))


def test_integer_overflow_names_the_width() -> None:
    # SDKs that validate nothing before sending (the JS SDK v3) show this message to the user.
    message = _error("ListDomains", {"MaxResults": 10**10})
    assert message.endswith("MaxResults is out of range for a 32-bit integer")
    message = _error("CreateDomain", _domain(DefaultExpirationDays=2**64))
    assert message.endswith("DefaultExpirationDays is out of range for a 32-bit integer")


def test_enum() -> None:
    message = _error("CreateProfile", {"DomainName": "d", "PartyType": "ALIEN"})
    assert "PartyType must be one of: INDIVIDUAL, BUSINESS, OTHER" in message
    assert "ALIEN" not in message.split("one of")[0]


def test_pattern() -> None:
    message = _error("CreateDomain", _domain(DomainName="bad name!"))
    assert "DomainName must satisfy the pattern ^[a-zA-Z0-9_-]+$" in message
    assert "bad name!" not in message


def test_anchored_pattern_rejects_trailing_newline() -> None:
    assert "pattern" in _error("CreateDomain", _domain(DomainName="abc\n"))


def test_unanchored_pattern_uses_search() -> None:
    # Arn is 'arn:([a-z\d-]+):profile:.*:.*:.+', not anchored: AWS accepts a match anywhere.
    arn = "x-arn:aws:profile:us-east-1:000000000000:domains/d"
    assert "Uri" not in _pattern_problems(arn)


def _pattern_problems(uri: str) -> str:
    try:
        validate_input(_input("GetIntegration"), {"DomainName": "d", "Uri": uri})
    except BadRequest as error:
        return error.message
    return ""


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (_domain(DefaultExpirationDays="7"), "DefaultExpirationDays must be an integer"),
        (_domain(DefaultExpirationDays=True), "DefaultExpirationDays must be an integer"),
        (_domain(DomainName=5), "DomainName must be a string"),
        (_domain(Tags=["a"]), "Tags must be a map"),
        (_domain(Matching=[]), "Matching must be a structure"),
        (_domain(Matching={"Enabled": "yes"}), "Matching.Enabled must be a boolean"),
    ],
)
def test_wrong_types(params: dict[str, Any], expected: str) -> None:
    assert expected in _error("CreateDomain", params)


def test_list_items_and_map_entries_are_named_by_position() -> None:
    message = _error("BatchGetProfile", {"DomainName": "d", "ProfileIds": ["a", 3]})
    assert "ProfileIds.2 must be a string" in message
    message = _error("CreateDomain", _domain(Tags={"aws:bad-key-secret": "v"}))
    assert "Tags.entry.1.key must satisfy the pattern" in message
    assert "bad-key-secret" not in message


def test_timestamp_and_double_types() -> None:
    base = {"DomainName": "d"}
    validate_input(_input("ListWorkflows"), {**base, "QueryStartDate": datetime.now(UTC)})
    assert "QueryStartDate must be a timestamp" in _error(
        "ListWorkflows", {**base, "QueryStartDate": "yesterday"}
    )


def test_field_names_may_contain_dots() -> None:
    keys = {"_email": [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["Attributes.Email"]}]}
    params = {
        "DomainName": "d",
        "ObjectTypeName": "t",
        "Description": "desc",
        "Keys": keys,
    }
    validate_input(_input("PutProfileObjectType"), params)
    # ... while the same `name` shape keeps its pattern everywhere else.
    assert "DomainName must satisfy the pattern" in _error(
        "PutProfileObjectType", {**params, "DomainName": "a.b"}
    )


def test_sensitive_values_are_never_echoed() -> None:
    secret = "Zelda-" + "x" * 300
    message = _error("CreateProfile", {"DomainName": "d", "FirstName": secret})
    assert "FirstName must have length at most 255" in message
    assert "Zelda" not in message


def test_union_needs_exactly_one_member() -> None:
    shape = MODEL.shape_for("Dimension")
    assert "exactly one member" in _shape_error(shape, {})
    both: dict[str, Any] = {"ProfileAttributes": {}, "CalculatedAttributes": {}}
    assert "exactly one member" in _shape_error(shape, both)


def _shape_error(shape: Any, params: dict[str, Any]) -> str:
    with pytest.raises(BadRequest) as caught:
        validate_input(shape, params)
    return caught.value.message


def test_uncompilable_pattern_is_skipped() -> None:
    assert _compiled("(?<!a+)b") is None
    validate_input(SYNTHETIC.shape_for("BadPattern"), "b")


def test_many_errors_are_counted_and_truncated() -> None:
    ids = list(range(20))
    message = _error("BatchGetProfile", {"DomainName": "d", "ProfileIds": ids})
    assert message.startswith("20 validation errors detected: ")
    assert message.endswith("and 10 more")
