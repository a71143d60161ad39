"""Turns a rest-json HTTP request into the operation's input as a dict of model member names.

Each member is read from where the model says it lives (URI label, query string, header,
header-prefix map, payload member or JSON body) and converted from its wire form (query strings
and headers are text; JSON timestamps are epoch seconds or ISO strings; blobs are base64). The
parser is lenient about types on purpose: a value of the wrong type is passed through as is, so
that `validate.validate_input` reports it with the member's path.

JSON text itself is parsed strictly (`load_json`, also used for PutProfileObject's Object):
`NaN`/`Infinity` (which Python's json accepts but JSON does not have), a lone UTF-16 surrogate
(`"\\ud800"`, which no UTF-8 encoder or database accepts further down) and arrays or objects
nested more than MAX_JSON_DEPTH levels deep are a BadRequest, not a 500 from a later layer.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from botocore.model import OperationModel, Shape, StructureShape

from openprofiles.errors import BadRequest

# Real records nest a few levels; a few hundred leaves room for any of them while staying well
# inside Python's recursion limit for the code that walks parsed documents afterwards.
MAX_JSON_DEPTH = 200
# After parsing, every surrogate code point left in a string is unpaired (pairs become one
# character). The text can only hold one as an escape (\\ud800) or raw (bytes decoded with
# surrogatepass, as json.loads does): when the text has neither, no string needs checking.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_HINT = re.compile(r"[\ud800-\udfff]|\\u[dD][89a-fA-F]")


class _NotJson(ValueError):
    """A constant (NaN, Infinity, -Infinity) that Python's json accepts but JSON does not have."""


def _reject_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON value (JSON numbers cannot be NaN or infinite)")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def load_json(text: str | bytes, what: str) -> Any:
    """Parse strict JSON text; BadRequest naming `what` ("The request body") when it is not.

    Rejects what json.loads lets through but is not JSON, or not storable: NaN and Infinity,
    lone surrogates, and nesting deeper than MAX_JSON_DEPTH.
    """
    try:
        # Bytes are decoded as json.loads decodes them (UTF-8, or UTF-16/32 by their BOM).
        decoded = (
            text.decode(json.detect_encoding(text), "surrogatepass")
            if isinstance(text, bytes)
            else text
        )
        document = _DECODER.decode(decoded)
    except _NotJson as exc:
        raise BadRequest(f"{what} is not valid JSON: {exc}.") from None
    except RecursionError:
        raise BadRequest(_too_deep(what)) from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BadRequest(f"{what} could not be parsed as JSON: {exc}.") from None
    # Walking the whole document costs; skip it when the text rules both problems out.
    deep = decoded.count("[") + decoded.count("{") > MAX_JSON_DEPTH
    surrogates = _SURROGATE_HINT.search(decoded) is not None
    if deep or surrogates:
        _check_document(document, what, depth=deep, strings=surrogates)
    return document


def _too_deep(what: str) -> str:
    return (
        f"{what} is nested too deeply: JSON arrays and objects may be nested at most "
        f"{MAX_JSON_DEPTH} levels deep."
    )


def _check_document(document: Any, what: str, *, depth: bool, strings: bool) -> None:
    """BadRequest if `document` nests deeper than MAX_JSON_DEPTH or has a lone surrogate.

    Level by level, with no recursion (the document may be as deep as json.loads allows) and,
    as most documents pass, no paths: the strings are gathered and searched at once, and only a
    failing document is walked again to say where.
    """
    level: list[Any] = [document]
    texts: list[str] = [document] if isinstance(document, str) else []
    nesting = 0
    while level:
        nesting += 1
        if depth and nesting > MAX_JSON_DEPTH:
            raise BadRequest(_too_deep(what))
        below: list[Any] = []
        for node in level:
            if type(node) is dict:
                if strings:
                    texts.extend(node)
                values: Any = node.values()
            elif type(node) is list:
                values = node
            else:
                continue
            for value in values:
                kind = type(value)
                if kind is dict or kind is list:
                    below.append(value)
                elif strings and kind is str:
                    texts.append(value)
        level = below
    if strings and _LONE_SURROGATE.search("".join(texts)):
        raise BadRequest(_lone_surrogate(what, *_find_lone_surrogate(document)))


def _find_lone_surrogate(document: Any) -> tuple[str, tuple[str | int, ...]]:
    """(what holds it, path) of the first lone surrogate of a document known to have one."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(document, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            if _LONE_SURROGATE.search(node):
                return "the string", path
            continue
        children = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in children:
            if isinstance(key, str) and _LONE_SURROGATE.search(key):
                return "the member name", (*path, key)
            if isinstance(child, dict | list | str):
                stack.append((child, (*path, key)))
    raise AssertionError("no lone surrogate found")


def _lone_surrogate(what: str, where: str, path: tuple[str | int, ...]) -> str:
    # The path names members, not values; a surrogate in it is shown escaped (\\udc80), as
    # the error response must itself be valid UTF-8.
    shown = ".".join(str(p) for p in path).encode("utf-8", "backslashreplace").decode("utf-8")
    at = f"at {shown}" if path else "at the top level"
    return (
        f"{what} is not valid Unicode JSON text: {where} {at} contains a lone surrogate "
        "(a \\uD800-\\uDFFF escape without its pair)."
    )


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


def _from_text(shape: Shape, text: str, default_format: str) -> Any:
    """Convert a URI, query or header string; leave it as text if it does not parse."""
    kind = shape.type_name
    if kind in ("integer", "long"):
        try:
            return int(text)
        except ValueError:
            return text
    if kind in ("double", "float"):
        try:
            return float(text)
        except ValueError:
            return text
    if kind == "boolean":
        lowered = text.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        return text
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
        except (TypeError, ValueError):
            parsed = None
    if parsed is None:
        return value
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
