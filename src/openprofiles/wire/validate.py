"""Checks a parsed input against its botocore shape: required, types, limits, enums, patterns.

Messages name the member path (`ProfileIds.2`, `Fields.entry.1.key`) and the broken
constraint, and never echo the offending value: inputs carry personal data, and some shapes
are `sensitive`. Only model facts (limits, enum lists, patterns) appear in messages.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from botocore.model import Shape

from openprofiles.errors import BadRequest

# Places where the model's pattern is NOT enforced, as (container shape, member) pairs; for a
# list the member is "member", for a map "key" or "value". The shape name alone is not enough
# because the same shape (`name`) is used for domain names, key names and many more.
PATTERN_EXEMPT: frozenset[tuple[str, str]] = frozenset(
    {
        # ObjectTypeKey.FieldNames entries name fields of the object type; the spec allows dots
        # in field names (e.g. "Attributes.AccountId" style names coming from templates),
        # while the model's `name` pattern ^[a-zA-Z0-9_-]+$ forbids them.
        ("FieldNameList", "member"),
    }
)

# Enum members that also take "" (container shape, member): UpdateProfile documents that an
# empty string removes a field's value, and the model's enum lists only the values themselves.
CLEARABLE_ENUMS: frozenset[tuple[str, str]] = frozenset(
    {
        ("UpdateProfileRequest", "Gender"),
        ("UpdateProfileRequest", "PartyType"),
        ("UpdateProfileRequest", "ProfileType"),
    }
)

# Lists and maps the model sets no bound on, as (container shape, member) → most items. A
# list's values each become a term of one statement: without a bound, tens of thousands of them
# broke the database's parameter limit (PostgreSQL 65,535) with a 500 after four tries.
# SearchProfiles' own bound is over all its keys (profiles.service.MAX_SEARCH_VALUES).
# ObjectTypeNames maps an application's event types (Segment's or Shopify's are a few dozen):
# 150,000 of them, a 2 MB body, took 7 s to store, and the 16 MB body limit allows a million.
ITEM_BOUNDS: dict[tuple[str, str], int] = {
    ("ObjectFilter", "Values"): 100,
    ("AddProfileKeyRequest", "Values"): 1000,
    ("DeleteProfileKeyRequest", "Values"): 1000,
    ("PutIntegrationRequest", "ObjectTypeNames"): 1000,
}

_MAX_LISTED = 10
_INT_RANGE = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
_INT_BITS = {"integer": 32, "long": 64}


def validate_input(shape: Shape | None, params: dict[str, Any]) -> None:
    """Raise BadRequest listing every violation of `shape` by `params` (None: no input)."""
    if shape is None:
        return
    problems = list(_check(shape, params, "", None))
    if not problems:
        return
    count = len(problems)
    noun = "error" if count == 1 else "errors"
    listed = "; ".join(problems[:_MAX_LISTED])
    more = f"; and {count - _MAX_LISTED} more" if count > _MAX_LISTED else ""
    raise BadRequest(f"{count} validation {noun} detected: {listed}{more}")


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str] | None:
    """Compile a model (Java) regex for `re.search`; None if Python cannot compile it.

    AWS patterns are not implicitly anchored (search semantics). A trailing `$` becomes `\\Z`
    so an anchored pattern does not accept a value followed by a newline, which Python's `$`
    would.
    """
    source = pattern
    if source.endswith("$") and not source.endswith("\\$"):
        source = source[:-1] + r"\Z"
    try:
        return re.compile(source)
    except re.error:
        return None


def _label(path: str) -> str:
    return path or "input"


def _check(
    shape: Shape, value: Any, path: str, exempt_key: tuple[str, str] | None
) -> Iterator[str]:
    kind = shape.type_name
    where = _label(path)
    if kind == "structure":
        if not isinstance(value, dict):
            yield f"{where} must be a structure"
            return
        if shape.metadata.get("document"):
            return
        members = shape.members
        required = shape.metadata.get("required", [])
        for name in required:
            if value.get(name) is None:
                yield f"{_join(path, name)} is required"
        if shape.metadata.get("union"):
            present = [name for name in members if value.get(name) is not None]
            if len(present) != 1:
                yield f"{where} must have exactly one member set, got {len(present)}"
        for name, member in members.items():
            if value.get(name) is not None:
                yield from _check(member, value[name], _join(path, name), (shape.name, name))
        return
    if kind == "list":
        if not isinstance(value, list):
            yield f"{where} must be a list"
            return
        yield from _length(shape, len(value), where)
        if (over := _over_bound(len(value), where, exempt_key)) is not None:
            yield over
            return
        for index, item in enumerate(value, start=1):
            item_path = f"{where}.{index}"
            if item is None:
                yield f"{item_path} must not be null"
            else:
                yield from _check(shape.member, item, item_path, (shape.name, "member"))
        return
    if kind == "map":
        if not isinstance(value, dict):
            yield f"{where} must be a map"
            return
        yield from _length(shape, len(value), where)
        if (over := _over_bound(len(value), where, exempt_key)) is not None:
            yield over
            return
        for index, (key, item) in enumerate(value.items(), start=1):
            # Map keys are data (often personal); name the entry by position, not by key.
            entry = f"{where}.entry.{index}"
            yield from _check(shape.key, key, f"{entry}.key", (shape.name, "key"))
            if item is None:
                yield f"{entry}.value must not be null"
            else:
                yield from _check(shape.value, item, f"{entry}.value", (shape.name, "value"))
        return
    yield from _scalar(shape, value, where, exempt_key)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _over_bound(count: int, where: str, exempt_key: tuple[str, str] | None) -> str | None:
    """The problem of a list or map over its ITEM_BOUNDS bound, if it has one and is over."""
    bound = ITEM_BOUNDS.get(exempt_key) if exempt_key else None
    if bound is not None and count > bound:
        return f"{where} must have length at most {bound}"
    return None


def _length(shape: Shape, length: int, where: str) -> Iterator[str]:
    low = shape.metadata.get("min")
    high = shape.metadata.get("max")
    if low is not None and length < low:
        yield f"{where} must have length at least {low}"
    if high is not None and length > high:
        yield f"{where} must have length at most {high}"


def _scalar(
    shape: Shape, value: Any, where: str, exempt_key: tuple[str, str] | None
) -> Iterator[str]:
    kind = shape.type_name
    if kind == "string":
        if not isinstance(value, str):
            yield f"{where} must be a string"
            return
        if "\x00" in value:
            # No field of a customer record holds one, and PostgreSQL's text columns and
            # parameters refuse it: a name, ARN or URI with one would be a 500 there (and
            # accepted on SQLite), so it is refused here, the same on both.
            yield f"{where} must not contain the NUL character (U+0000)"
            return
        yield from _length(shape, len(value), where)
        enum = shape.metadata.get("enum")
        if enum and value not in enum and not (value == "" and exempt_key in CLEARABLE_ENUMS):
            yield f"{where} must be one of: {', '.join(enum)}"
        pattern = shape.metadata.get("pattern")
        if pattern and exempt_key not in PATTERN_EXEMPT:
            compiled = _compiled(pattern)
            if compiled is not None and compiled.search(value) is None:
                yield f"{where} must satisfy the pattern {pattern}"
        return
    if kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            yield f"{where} must be an integer"
            return
        low, high = _INT_RANGE[kind]
        if not low <= value <= high:
            yield f"{where} is out of range for a {_INT_BITS[kind]}-bit integer"
            return
        yield from _range(shape, value, where)
        return
    if kind in ("double", "float"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            yield f"{where} must be a number"
            return
        yield from _range(shape, value, where)
        return
    if kind == "boolean":
        if not isinstance(value, bool):
            yield f"{where} must be a boolean"
        return
    if kind == "timestamp":
        if not isinstance(value, datetime):
            yield f"{where} must be a timestamp (epoch seconds or ISO 8601)"
        return
    if kind == "blob":
        if not isinstance(value, bytes | bytearray):
            yield f"{where} must be base64-encoded binary data"
            return
        yield from _length(shape, len(value), where)


def _range(shape: Shape, value: float, where: str) -> Iterator[str]:
    low = shape.metadata.get("min")
    high = shape.metadata.get("max")
    if low is not None and value < low:
        yield f"{where} must be at least {low}"
    if high is not None and value > high:
        yield f"{where} must be at most {high}"
