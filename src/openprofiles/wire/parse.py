"""Turns a rest-json HTTP request into the operation's input as a dict of model member names.

Each member is read from where the model says it lives (URI label, query string, header,
header-prefix map, payload member or JSON body) and converted from its wire form (query strings
and headers are text; JSON timestamps are epoch seconds or ISO strings; blobs are base64). The
parser is lenient about types on purpose: a value of the wrong type is passed through as is, so
that `validate.validate_input` reports it with the member's path.

JSON text itself is parsed strictly (`load_json`, also used for PutProfileObject's Object; the
rules are openprofiles.json_text's): NaN/Infinity, a lone UTF-16 surrogate and nesting beyond
MAX_JSON_DEPTH are a BadRequest, not a 500 from a later layer.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from botocore.model import OperationModel, Shape, StructureShape

from openprofiles import json_text
from openprofiles.errors import BadRequest


def load_json(text: str | bytes, what: str) -> Any:
    """Parse strict JSON text (openprofiles.json_text); BadRequest naming `what` ("The request
    body") when it is not."""
    try:
        return json_text.load_json(text, what)
    except json_text.JsonTextError as exc:
        raise BadRequest(exc.message) from None


def parse_request(
    operation_model: OperationModel,
    uri_params: Mapping[str, str],
    query: list[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
) -> dict[str, Any]:
    """Return the operation's input keyed by member name (PascalCase as in the model)."""
    shape = operation_model.input_shape
    if shape is None:
        return {}
    lowered = {name.lower(): value for name, value in headers.items()}
    result: dict[str, Any] = {}
    payload_member = shape.serialization.get("payload")
    body_members: dict[str, Shape] = {}
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        wire_name = member.serialization.get("name", name)
        value: Any = None
        if location == "uri":
            if wire_name in uri_params:
                value = _from_text(member, uri_params[wire_name], "iso8601")
        elif location == "querystring":
            value = _from_query(member, wire_name, query, shape)
        elif location == "header":
            if wire_name.lower() in lowered:
                value = _from_header(member, lowered[wire_name.lower()])
        elif location == "headers":
            prefix = wire_name.lower()
            found = {
                key[len(prefix) :]: text for key, text in lowered.items() if key.startswith(prefix)
            }
            value = found or None
        elif location == "statusCode":
            continue
        elif name == payload_member:
            value = _from_payload(member, body)
        else:
            body_members[name] = member
            continue
        if value is not None:
            result[name] = value
    if body_members and payload_member is None:
        document = _json_object(body)
        for name, member in body_members.items():
            wire_name = member.serialization.get("name", name)
            if document.get(wire_name) is not None:
                result[name] = _from_json(member, document[wire_name])
    return result


def _json_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    document = load_json(body, "The request body")
    if not isinstance(document, dict):
        raise BadRequest("The request body must be a JSON object.")
    return document


def _from_payload(member: Shape, body: bytes) -> Any:
    if member.type_name == "blob":
        return body or None
    if member.type_name == "string":
        return body.decode("utf-8", errors="replace") or None
    document = _json_object(body)
    return _from_json(member, document) if document else None


def _from_query(
    member: Shape, wire_name: str, query: list[tuple[str, str]], shape: StructureShape
) -> Any:
    if member.type_name == "map":
        # A querystring map without a name collects every parameter no other member binds.
        bound = {
            m.serialization.get("name", n)
            for n, m in shape.members.items()
            if m.serialization.get("location") == "querystring" and m.type_name != "map"
        }
        found: dict[str, Any] = {}
        for key, text in query:
            if key in bound:
                continue
            if member.value.type_name == "list":
                found.setdefault(key, []).append(text)
            else:
                found.setdefault(key, text)
        return found or None
    values = [text for key, text in query if key == wire_name]
    if not values:
        return None
    if member.type_name == "list":
        return [_from_text(member.member, text, "iso8601") for text in values]
    return _from_text(member, values[0], "iso8601")


def _from_header(member: Shape, text: str) -> Any:
    if member.type_name == "string" and member.serialization.get("jsonvalue"):
        try:
            decoded = base64.b64decode(text)
        except (ValueError, binascii.Error):
            raise BadRequest("A header value could not be decoded as base64 JSON.") from None
        return load_json(decoded, "A base64 JSON header value")
    if member.type_name == "list":
        return [_from_text(member.member, part.strip(), "rfc822") for part in text.split(",")]
    return _from_text(member, text.strip(), "rfc822")


_INTEGER_TEXT = re.compile(r"-?[0-9]+")
# A JSON number, or one of the names the AWS protocols give the floats JSON has none for.
_NUMBER_TEXT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|NaN|-?Infinity")


def _from_text(shape: Shape, text: str, default_format: str) -> Any:
    """Convert a URI, query or header string; leave it as text if it does not parse."""
    kind = shape.type_name
    # Only the forms the protocol writes: Python's int() and float() also take "1_0", " 1",
    # "+1" and other scripts' digits ("１"), which a request would then have had answered as
    # if it had sent 10 or 1. Anything else stays text, refused by validation as not a number.
    if kind in ("integer", "long"):
        return int(text) if _INTEGER_TEXT.fullmatch(text) else text
    if kind in ("double", "float"):
        return float(text) if _NUMBER_TEXT.fullmatch(text) else text
    if kind == "boolean":
        return {"true": True, "false": False}.get(text, text)
    if kind == "timestamp":
        return _timestamp(text, shape.serialization.get("timestampFormat", default_format))
    return text


def _from_json(shape: Shape, value: Any) -> Any:
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict) or shape.metadata.get("document"):
            return value
        result: dict[str, Any] = {}
        for name, member in shape.members.items():
            wire_name = member.serialization.get("name", name)
            if value.get(wire_name) is not None:
                result[name] = _from_json(member, value[wire_name])
        return result
    if kind == "list":
        if not isinstance(value, list):
            return value
        return [None if item is None else _from_json(shape.member, item) for item in value]
    if kind == "map":
        if not isinstance(value, dict):
            return value
        return {
            key: None if item is None else _from_json(shape.value, item)
            for key, item in value.items()
        }
    if kind == "timestamp":
        return _timestamp(value, shape.serialization.get("timestampFormat"))
    if kind == "blob" and isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (ValueError, binascii.Error):
            return value
    return value


def _timestamp(value: Any, fmt: str | None) -> Any:
    """Parse epoch seconds, ISO 8601 or HTTP-date into an aware UTC datetime; else pass through.

    The JSON body accepts both numbers and ISO strings whatever the declared format, because
    SDKs other than botocore (and hand-written clients) send either.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return value
    if not isinstance(value, str):
        return value
    # Epoch seconds only as the protocols write them (_NUMBER_TEXT): float() also takes
    # "1_900_000_000", " 1900000000", "+1900000000" and other scripts' digits, which would have
    # been stored as the time they spell instead of refused as not a timestamp.
    if _NUMBER_TEXT.fullmatch(value):
        try:
            return datetime.fromtimestamp(float(value), tz=UTC)
        except (OverflowError, OSError, ValueError):
            pass
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None and fmt != "iso8601":
        try:
            parsed = parsedate_to_datetime(value)
        except (TypeError, ValueError, OverflowError):  # a year no datetime holds
            parsed = None
    if parsed is None:
        return value
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        # At a datetime's edge an offset moves it out (9999-12-31T23:59:59-00:01 in UTC): not
        # a time, passed through as the text it is, which the shape check then refuses (400).
        return value
