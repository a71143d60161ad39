"""wire.body_size: the largest body of a model-valid request, checked against what botocore
itself writes for the largest request of each operation, and the dispatcher's limit built
on it."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from botocore.model import Shape
from botocore.serialize import create_serializer

from openprofiles.wire.body_size import largest_bodies, largest_body
from openprofiles.wire.dispatch import DEFAULT_MAX_BODY_BYTES, ApiDispatcher
from openprofiles.wire.model import load_service_model

MODEL = load_service_model()
BOUNDED = sorted(largest_bodies(MODEL))
# The character JSON spends the most bytes on: one code point, `\ud83d\ude00` once escaped.
EMOJI = "\U0001f600"


def _largest_value(shape: Shape, distinct: int = 0) -> Any:
    """The value of `shape` that serialises longest; `distinct` varies it (map keys)."""
    kind = shape.type_name
    high = shape.metadata.get("max")
    if kind == "structure":
        values = {
            name: _largest_value(member)
            for name, member in shape.members.items()
            if not member.serialization.get("location")
        }
        if shape.metadata.get("union"):
            name = max(values, key=lambda n: len(repr(values[n]).encode("unicode_escape")))
            return {name: values[name]}
        return values
    if kind == "string":
        length = high if high is not None else max(len(v) for v in shape.enum)
        return chr(0x1F600 + distinct) + EMOJI * (length - 1)
    if kind == "list":
        return [_largest_value(shape.member) for _ in range(high)]
    if kind == "map":
        return {_largest_value(shape.key, n): _largest_value(shape.value) for n in range(high)}
    if kind == "boolean":
        return False
    if kind in ("integer", "long"):
        return -(2**63)
    if kind in ("float", "double"):
        return -1.7976931348623157e308
    if kind == "timestamp":
        return datetime.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=datetime.UTC)
    raise AssertionError(f"no largest value for {kind}")


def _botocore_body(operation: str) -> bytes:
    model = MODEL.operation_model(operation)
    params = {
        name: _largest_value(member)
        for name, member in model.input_shape.members.items()
        if not member.serialization.get("location")
    }
    # Path labels, as botocore needs them to build the request (they are not in the body).
    for name, member in model.input_shape.members.items():
        if member.serialization.get("location") == "uri":
            params[name] = "x"
    body = create_serializer("rest-json", include_validation=False).serialize_to_request(
        params, model
    )["body"]
    return body if isinstance(body, bytes) else body.encode()


@pytest.mark.parametrize("operation", BOUNDED)
def test_no_model_valid_body_is_larger_than_its_operation_s_largest(operation: str) -> None:
    assert len(_botocore_body(operation)) <= largest_bodies(MODEL)[operation]


def test_a_batch_of_ten_objects_of_emoji_is_counted_as_botocore_writes_it() -> None:
    body = _botocore_body("BatchPutProfileObject")
    # Ten Objects of 256,000 characters, 12 bytes each once escaped: far over 16 MiB.
    assert len(body) > 10 * 256_000 * 12 > DEFAULT_MAX_BODY_BYTES
    largest = largest_body(MODEL.operation_model("BatchPutProfileObject"))
    assert largest is not None and len(body) <= largest < len(body) + 1024


def test_what_the_model_does_not_bound_has_no_largest_body() -> None:
    # SearchProfiles' Values are strings without a `max`.
    assert largest_body(MODEL.operation_model("SearchProfiles")) is None
    assert "SearchProfiles" not in largest_bodies(MODEL)
    assert largest_body(MODEL.operation_model("GetDomain")) == 2  # no body members: {}


def test_the_limit_is_the_largest_body_and_never_below_the_default() -> None:
    dispatcher = ApiDispatcher(MODEL, {})
    batch = dispatcher.operation_at("PUT", "/domains/d/profiles/objects/batch-put-profile-object")
    assert batch == "BatchPutProfileObject"
    assert dispatcher.body_limit(batch) == largest_bodies(MODEL)[batch]
    assert dispatcher.body_limit("GetDomain") == DEFAULT_MAX_BODY_BYTES
    assert dispatcher.body_limit("SearchProfiles") == DEFAULT_MAX_BODY_BYTES
    assert dispatcher.body_limit(None) == DEFAULT_MAX_BODY_BYTES
