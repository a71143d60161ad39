"""Request bodies are strict JSON: NaN/Infinity, lone surrogates and absurd nesting are a
BadRequest naming the problem, never a 500 from a later layer (or text stored as not JSON)."""

from __future__ import annotations

import base64
import json

import pytest
from botocore.model import Shape

from openprofiles.errors import BadRequest
from openprofiles.json_text import MAX_JSON_DEPTH
from openprofiles.wire.model import load_service_model
from openprofiles.wire.parse import _from_header, load_json, parse_request

MODEL = load_service_model()


def _parse(operation: str, uri: dict[str, str], body: bytes, headers=None):
    return parse_request(MODEL.operation_model(operation), uri, [], headers or {}, body)


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(constant: str) -> None:
    body = f'{{"DefaultExpirationDays": {constant}}}'.encode()
    with pytest.raises(BadRequest) as exc:
        _parse("CreateDomain", {"DomainName": "d"}, body)
    assert exc.value.message == (
        f"The request body is not valid JSON: {constant} is not a JSON value "
        "(JSON numbers cannot be NaN or infinite)."
    )


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, 5_000, 100_000])
def test_nesting_beyond_the_limit_is_rejected(depth: int) -> None:
    # One level for the body object itself.
    body = ('{"Tags": {"k": ' + _nested(depth) + "}}").encode()
    with pytest.raises(BadRequest) as exc:
        _parse("CreateDomain", {"DomainName": "d"}, body)
    assert exc.value.message == (
        "The request body is nested too deeply: JSON arrays and objects may be nested at most "
        f"{MAX_JSON_DEPTH} levels deep."
    )


def test_nesting_up_to_the_limit_is_accepted() -> None:
    assert load_json(_nested(MAX_JSON_DEPTH), "x") is not None


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (rb'{"FirstName": "a\ud800b"}', "the string at FirstName"),
        (rb'{"Attributes": {"k": "\udc00"}}', "the string at Attributes.k"),
        (rb'{"Attributes": {"\ud83dx": "v"}}', "the member name at Attributes.\\ud83dx"),
        # UTF-8 encoded surrogates (invalid UTF-8, which json.loads decodes with surrogatepass).
        (b'{"FirstName": "\xed\xa0\x80"}', "the string at FirstName"),
    ],
)
def test_lone_surrogates_are_rejected(body: bytes, where: str) -> None:
    with pytest.raises(BadRequest) as exc:
        _parse("CreateProfile", {"DomainName": "d"}, body)
    assert exc.value.message == (
        f"The request body is not valid Unicode JSON text: {where} contains a lone surrogate "
        "(a \\uD800-\\uDFFF escape without its pair)."
    )
    # The message itself must be encodable for the error response.
    exc.value.message.encode("utf-8")


def test_surrogate_pairs_and_escaped_backslashes_are_fine() -> None:
    body = rb'{"FirstName": "\ud83d\ude00", "LastName": "\\ud800"}'
    parsed = _parse("CreateProfile", {"DomainName": "d"}, body)
    assert parsed["FirstName"] == "\U0001f600"
    assert parsed["LastName"] == "\\ud800"


def test_a_lone_surrogate_in_a_list_member() -> None:
    with pytest.raises(BadRequest, match=r"the string at Values\.1 contains a lone surrogate"):
        load_json(rb'{"Values": ["ok", "\ud800"]}', "The request body")


def test_base64_json_header_is_strict_too() -> None:
    # No operation of Customer Profiles has a jsonvalue header; a shape of the kind stands in.
    shape = Shape("Doc", {"type": "string", "location": "header", "jsonvalue": True})
    assert _from_header(shape, base64.b64encode(b'{"a": 1}').decode()) == {"a": 1}
    with pytest.raises(BadRequest, match="A base64 JSON header value is not valid JSON: NaN"):
        _from_header(shape, base64.b64encode(b'{"a": NaN}').decode())


def test_ordinary_bodies_parse_as_before() -> None:
    body = json.dumps({"FirstName": "Zoë", "Attributes": {"a": "1"}}).encode()
    assert _parse("CreateProfile", {"DomainName": "d"}, body) == {
        "DomainName": "d",
        "FirstName": "Zoë",
        "Attributes": {"a": "1"},
    }


def test_a_number_with_too_many_digits_is_named_without_python_advice() -> None:
    # Python caps the digits of an integer it reads (4300 by default); its own message tells
    # the reader to call sys.set_int_max_str_digits(), which is no advice for a client.
    body = b'{"Attributes": {"a": ' + b"9" * 5000 + b"}}"
    with pytest.raises(BadRequest) as exc:
        _parse("CreateProfile", {"DomainName": "d"}, body)
    assert exc.value.message == (
        "The request body could not be parsed as JSON: a number in it has more than 4300 digits."
    )
