"""The largest request body a model-valid request of each operation can have.

The API reads a body whole before it checks the signature, so it must stop reading at some
size; but a size limit must never refuse a request the model allows. The model bounds most
operations' inputs, so their largest body is known: every string at its `max` length in
characters (botocore checks the length of the Python str, i.e. code points), every list and
map at its `max` count, and each character at the most JSON can spend on one, 12 bytes — a
character outside the Basic Multilingual Plane as a surrogate pair of escapes, `\\ud83d\\ude00`,
which is what botocore's `json.dumps` (ensure_ascii) writes for an emoji. Ten
BatchPutProfileObject items of 256,000 emoji are thus about 30.7 MB, not the 2.6 million
characters they count as. Separators are counted as botocore writes them (`", "`, `": "`),
wider than compact JSON.

An operation with an unbounded member (a string, list or map without `max`, a recursive shape)
or a body that is not a JSON document (an http payload) has no largest body: None.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from types import MappingProxyType

from botocore.model import OperationModel, ServiceModel, Shape

# `\ud83d\ude00`: the longest any JSON encoding writes one code point.
MAX_BYTES_PER_CHARACTER = 12
# The longest JSON number botocore writes for an integer, long, double or epoch timestamp
# (a long's minimum is 20 characters, a double's repr at most 24).
MAX_NUMBER_BYTES = 32
# `false`
MAX_BOOLEAN_BYTES = 5
QUOTES = 2
BRACKETS = 2
ITEM_SEPARATOR = len(", ")
KEY_SEPARATOR = len(": ")


@functools.cache
def largest_bodies(service_model: ServiceModel) -> Mapping[str, int]:
    """The largest body of each operation that has one (see the module docstring). Cached:
    every app of a process shares the one loaded model (wire.model)."""
    found = {}
    for name in service_model.operation_names:
        size = largest_body(service_model.operation_model(name))
        if size is not None:
            found[name] = size
    return MappingProxyType(found)


def largest_body(operation: OperationModel) -> int | None:
    """The largest JSON body a model-valid request of `operation` can have, in bytes; None
    when the model does not bound it."""
    shape = operation.input_shape
    if shape is None:
        return 0
    if shape.serialization.get("payload"):
        return None
    size = _structure(shape, (), in_body_only=True)
    return None if math.isinf(size) else int(size)


def _structure(shape: Shape, stack: tuple[str, ...], *, in_body_only: bool = False) -> float:
    members = []
    for name, member in shape.members.items():
        if in_body_only and member.serialization.get("location"):
            continue  # in the path, the query or a header: not in the body
        key = member.serialization.get("name", name)
        members.append(QUOTES + len(key) + KEY_SEPARATOR + _value(member, stack) + ITEM_SEPARATOR)
    if not members:
        return BRACKETS
    if shape.metadata.get("union"):
        return BRACKETS + max(members)  # exactly one member is set
    return BRACKETS + sum(members)


def _value(shape: Shape, stack: tuple[str, ...]) -> float:
    if shape.name in stack:
        return math.inf  # a recursive shape nests without bound
    stack = (*stack, shape.name)
    kind = shape.type_name
    high = shape.metadata.get("max")
    if kind == "structure":
        return _structure(shape, stack)
    if kind == "string":
        if high is None and shape.enum:
            high = max(len(value) for value in shape.enum)
        return math.inf if high is None else QUOTES + MAX_BYTES_PER_CHARACTER * high
    if kind == "blob":
        return math.inf if high is None else QUOTES + 4 * math.ceil(high / 3)  # base64
    if kind == "list":
        item = _value(shape.member, stack) + ITEM_SEPARATOR
        return math.inf if high is None else BRACKETS + high * item
    if kind == "map":
        key = _value(shape.key, stack)
        entry = key + KEY_SEPARATOR + _value(shape.value, stack) + ITEM_SEPARATOR
        return math.inf if high is None else BRACKETS + high * entry
    if kind == "boolean":
        return MAX_BOOLEAN_BYTES
    if kind in ("integer", "long", "float", "double", "timestamp"):
        return MAX_NUMBER_BYTES
    return math.inf  # a kind this model does not use (a document): not bounded
