"""Serializes a handler's result dict into a rest-json HTTP response for its output shape.

Only members of the output shape are sent (unknown keys and None values are dropped).
Timestamps go out as epoch seconds, the rest-json default that botocore parses into datetimes.
"""

from __future__ import annotations

import base64
import json
import math
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import format_datetime
from typing import Any

from botocore.model import OperationModel, Shape

JSON_CONTENT_TYPE = "application/json"


def serialize_output(
    operation_model: OperationModel, result: dict[str, Any]
) -> tuple[int, dict[str, str], bytes]:
    """Return (status, headers, body) for `result` under the operation's output shape."""
    status = int(operation_model.http.get("responseCode", 200))
    headers = {"Content-Type": JSON_CONTENT_TYPE}
    shape = operation_model.output_shape
    if shape is None:
        return status, headers, b"{}"
    payload_member = shape.serialization.get("payload")
    document: dict[str, Any] = {}
    body: bytes | None = None
    for name, member in shape.members.items():
        value = result.get(name)
        if value is None:
            continue
        location = member.serialization.get("location")
        wire_name = member.serialization.get("name", name)
        if location == "statusCode":
            status = int(value)
        elif location == "header":
            headers[wire_name] = _header_text(member, value)
        elif location == "headers":
            for key, text in value.items():
                headers[f"{wire_name}{key}"] = str(text)
        elif name == payload_member:
            body = _payload(member, value)
        else:
            document[wire_name] = _to_json(member, value)
    if body is None:
        body = json.dumps(document, separators=(",", ":")).encode()
    return status, headers, body


def _payload(member: Shape, value: Any) -> bytes:
    if member.type_name == "blob":
        return bytes(value)
    if member.type_name == "string":
        return str(value).encode()
    return json.dumps(_to_json(member, value), separators=(",", ":")).encode()


def _header_text(member: Shape, value: Any) -> str:
    kind = member.type_name
    if kind == "string" and member.serialization.get("jsonvalue"):
        return base64.b64encode(json.dumps(value, separators=(",", ":")).encode()).decode()
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "timestamp":
        fmt = member.serialization.get("timestampFormat", "rfc822")
        return str(_timestamp(value, fmt))
    if kind == "list":
        return ",".join(_header_text(member.member, item) for item in value)
    return str(value)


def _to_json(shape: Shape, value: Any) -> Any:
    kind = shape.type_name
    if kind == "structure":
        if shape.metadata.get("document"):
            return value
        out: dict[str, Any] = {}
        for name, member in shape.members.items():
            item = value.get(name)
            if item is not None:
                out[member.serialization.get("name", name)] = _to_json(member, item)
        return out
    if kind == "list":
        return [_to_json(shape.member, item) for item in value if item is not None]
    if kind == "map":
        return {
            str(key): _to_json(shape.value, item) for key, item in value.items() if item is not None
        }
    if kind == "timestamp":
        return _timestamp(value, shape.serialization.get("timestampFormat", "unixTimestamp"))
    if kind == "blob":
        return base64.b64encode(bytes(value)).decode()
    if kind in ("integer", "long"):
        return int(value)
    if kind in ("double", "float"):
        number = float(value)
        # JSON has no NaN/Infinity; the AWS JSON protocols send them as strings.
        if math.isnan(number):
            return "NaN"
        if math.isinf(number):
            return "Infinity" if number > 0 else "-Infinity"
        return number
    if kind == "boolean":
        return bool(value)
    return value


def _timestamp(value: Any, fmt: str) -> float | int | str:
    moment = _as_datetime(value)
    if fmt == "iso8601":
        return moment.isoformat().replace("+00:00", "Z")
    if fmt == "rfc822":
        return format_datetime(moment, usegmt=True)
    seconds = moment.timestamp()
    return int(seconds) if seconds.is_integer() else round(seconds, 3)


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        # A naive datetime is taken as UTC: every time OpenProfiles stores is UTC.
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, int | float | Decimal):
        return datetime.fromtimestamp(float(value), tz=UTC)
    raise TypeError(f"cannot serialize {type(value).__name__} as a timestamp")
