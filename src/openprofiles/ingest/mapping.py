"""The mapping engine: what an object type makes of one source record (spec §1.2-1.5, §1.7).

`map_object` extracts every field (a `_source` path or a Handlebars template), builds what the
record writes into standard objects (`targets`), computes and normalises its keys, and reads
`SourceLastUpdatedTimestamp`. It does no I/O: resolving profiles and storing are the pipeline's.

Value rules:
* Fields are strings: a JSON string as is, numbers as their JSON text, booleans "true"/"false",
  null or a missing path "" (spec §1.2). A Source yielding a JSON object or array feeds only
  targets that take one (`_profile.Address`, `_order.OrderItems`, ...); anywhere else it is a
  MappingError, since a standard field or key cannot hold a structure: a field that feeds a
  key, or whose ContentType (EMAIL_ADDRESS, PHONE_NUMBER) makes it an inferred profile's
  EmailAddress or PhoneNumber, included. A field no key or target reads keeps it as JSON text.
* Only non-empty values are written to targets: an empty value never clears a field (spec §1.8).
* A value outside the Gender/PartyType enums lands in GenderString/PartyTypeString (spec §7.10);
  one outside the ProfileType enum (PROFILE, ACCOUNT_PROFILE), which has no such twin, is a
  MappingError. A NUL (U+0000) in a profile value is one too: the API refuses it.
* A value longer than its standard profile field holds (the botocore model's `Profile` shape:
  the bounds CreateProfile and UpdateProfile check, and SearchProfiles' output promises) is a
  MappingError naming the field and the bound, never the value: stored, it would make a profile
  the API can neither return as its shape says nor take back in UpdateProfile.
* A key value is its fields' values joined with "_" (composite keys), normalised by the key's
  ContentType: a predefined key (`_email`, `_phone`, ...) always uses its fixed type so ingestion
  and SearchProfiles agree; a composite key is compared as written (see
  object_types.models.key_content_type_of).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from openprofiles.errors import shown_value
from openprofiles.ingest.handlebars import TemplateError, is_template, record_budget, render
from openprofiles.normalize import ContentType, normalize
from openprofiles.object_types.models import FieldDefinition, ObjectType, key_content_type_of
from openprofiles.object_types.standard_objects import (
    ENUM_TARGETS,
    LIST_FIELDS,
    SOURCE_LAST_UPDATED_TARGET,
    WRITABLE_FIELDS,
)
from openprofiles.profiles.keys import PREDEFINED_CONTENT_TYPES
from openprofiles.wire.model import load_service_model


class MappingError(Exception):
    """The record cannot be mapped: a value the mapping cannot convert, or invalid source data."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ComputedKey:
    name: str
    identifiers: frozenset[str]
    value: str
    normalised: str
    content_type: ContentType


@dataclass(frozen=True)
class MappedObject:
    field_values: Mapping[str, str]
    targets: Mapping[str, Mapping[str, Any]]
    keys: tuple[ComputedKey, ...]
    unique_key: ComputedKey | None
    source_last_updated: datetime | None
    inferred_email: str | None
    inferred_phone: str | None


def map_object(
    object_type: ObjectType, source: Mapping[str, Any], *, phone_region: str
) -> MappedObject:
    if not isinstance(source, Mapping):
        raise MappingError("The object must be a JSON object.")
    field_values: dict[str, str] = {}
    targets: dict[str, dict[str, Any]] = {}
    source_last_updated: datetime | None = None
    # The fields whose Source gave a JSON object or array, and which of the two.
    structured: list[tuple[str, str]] = []
    # The templates of all the record's fields render within one bound (ingest.handlebars).
    with record_budget():
        for name, field in object_type.fields.items():
            raw = _extract(name, field, source)
            if not _scalar(raw):
                structured.append((name, _kind(raw)))
            text = _text(raw)
            field_values[name] = text
            if field.content_type is ContentType.NUMBER and text and not _is_number(text):
                raise MappingError(
                    f"Field {name}: {shown_value(text)} is not a number (ContentType NUMBER)."
                )
            if field.target == SOURCE_LAST_UPDATED_TARGET:
                if text:
                    source_last_updated = parse_source_timestamp(
                        text,
                        object_type.source_last_updated_timestamp_format or "",
                        field_name=name,
                    )
            elif field.target:
                _write_target(targets, name, field.target, raw, text)
    if structured:
        _refuse_structures(object_type, structured)
    keys, unique_key = _compute_keys(object_type, field_values, phone_region)
    return MappedObject(
        field_values=field_values,
        targets=targets,
        keys=keys,
        unique_key=unique_key,
        source_last_updated=source_last_updated,
        inferred_email=_first_typed(object_type, field_values, ContentType.EMAIL_ADDRESS),
        inferred_phone=_first_typed(object_type, field_values, ContentType.PHONE_NUMBER),
    )


# ---------------------------------------------------------------------------- extraction


def resolve_path(path: str, document: Mapping[str, Any]) -> Any:
    """The value at `_source.a.b` (array members by index, `_source.items.0.id`); None if absent."""
    current: Any = document
    for segment in _segments(path):
        # Parsed JSON is made of dicts: checked first, as the ABC check costs several times more.
        if type(current) is dict or isinstance(current, Mapping):
            current = current.get(segment)
        # ASCII digits only: str.isdigit() also takes '²' and '٣', which int() refuses or reads
        # as an index no JSON path means.
        elif (
            isinstance(current, list)
            and segment.isascii()
            and segment.isdigit()
            and int(segment) < len(current)
        ):
            current = current[int(segment)]
        else:
            return None
        if current is None:
            return None
    return current


# An object type's paths recur in every record it maps: split once.
@functools.lru_cache(maxsize=4096)
def _segments(path: str) -> tuple[str, ...]:
    return tuple(path.split(".")[1:])


def _extract(name: str, field: FieldDefinition, source: Mapping[str, Any]) -> Any:
    if is_template(field.source):
        try:
            return render(field.source, source)
        except TemplateError as exc:
            raise MappingError(f"Field {name}: its Source template failed: {exc}") from None
    return resolve_path(field.source, source)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if type(value) is str or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _is_number(text: str) -> bool:
    try:
        return Decimal(text.strip()).is_finite()
    except InvalidOperation:
        return False


# ---------------------------------------------------------------------------- targets


# What a Target is, by the shape of its name: decided once per distinct Target, not per record.
_ATTRIBUTE, _LIST, _PART, _WRITABLE, _SCALAR = range(5)

# The model's shape of the standard profile as the API returns it.
_PROFILE_SHAPE = "Profile"


@dataclass(frozen=True)
class _ProfileBounds:
    """Most characters of the standard profile's strings, from the model's Profile shape."""

    # "FirstName", "Address.City": the member paths mapping Targets name under `_profile`.
    strings: Mapping[str, int]
    # "Attributes": (most characters of a key, of a value).
    maps: Mapping[str, tuple[int | None, int | None]]


@functools.cache
def _profile_bounds() -> _ProfileBounds:
    # Read from the model CreateProfile/UpdateProfile are validated against (wire.validate), so
    # there is one table of bounds, the installed botocore's; read once, on the first mapping.
    strings: dict[str, int] = {}
    maps: dict[str, tuple[int | None, int | None]] = {}
    shape = load_service_model().shape_for(_PROFILE_SHAPE)
    for name, member in shape.members.items():
        kind = member.type_name
        if kind == "string" and member.metadata.get("max") is not None:
            strings[name] = member.metadata["max"]
        elif kind == "structure":  # the addresses
            for part_name, part in member.members.items():
                if part.type_name == "string" and part.metadata.get("max") is not None:
                    strings[f"{name}.{part_name}"] = part.metadata["max"]
        elif kind == "map":  # Attributes
            maps[name] = (member.key.metadata.get("max"), member.value.metadata.get("max"))
    return _ProfileBounds(strings=strings, maps=maps)


def attribute_name_limit(root: str) -> int | None:
    """The most characters of an attribute's name under the standard object `root` (the
    model's, for `_profile`; None: unbounded): PutProfileObjectType refuses a Target naming a
    longer one, which no value could be written to."""
    return _profile_bounds().maps.get("Attributes", (None, None))[0] if root == "_profile" else None


# (root, member, part, kind, limit, part_limits, refusal) of a Target: `limit` the most
# characters its value may have (None: unbounded), `part_limits` those of each part of a whole
# structure (_WRITABLE), `refusal` why no value can be written there (an attribute name longer
# than the model allows). A plain tuple, unpacked on every value.
_Plan = tuple[str, str, str, int, int | None, Mapping[str, int], str | None]


@functools.lru_cache(maxsize=4096)
def _target_plan(target: str) -> _Plan:
    """How values are written to a Target such as `_profile.Address.City`."""
    root, _, rest = target.partition(".")
    member, _, part = rest.partition(".")
    # Only the standard profile has a shape in the model: _asset, _case and _order have none.
    bounds = _profile_bounds() if root == "_profile" else _ProfileBounds({}, {})
    limit: int | None = None
    part_limits: Mapping[str, int] = {}
    refusal: str | None = None
    if member == "Attributes":
        kind = _ATTRIBUTE
        key_limit, limit = bounds.maps.get(member, (None, None))
        if key_limit is not None and len(part) > key_limit:
            refusal = (
                f"Target {target} names an attribute of {len(part)} characters; attribute "
                f"names have at most {key_limit}."
            )
    elif (root, member) in LIST_FIELDS:
        kind = _LIST
    elif part:
        kind = _PART
        limit = bounds.strings.get(f"{member}.{part}")
    elif WRITABLE_FIELDS.get(root, {}).get(member):
        kind = _WRITABLE
        parts = WRITABLE_FIELDS[root][member] or ()
        part_limits = {
            p: bounds.strings[f"{member}.{p}"] for p in parts if f"{member}.{p}" in bounds.strings
        }
    else:
        kind = _SCALAR
        # An enum's own values are short; what is not one of them lands in its fallback field.
        fallback = (
            ENUM_TARGETS[member][1] if root == "_profile" and member in ENUM_TARGETS else None
        )
        limit = bounds.strings.get(fallback or member)
    return root, member, part, kind, limit, part_limits, refusal


def _write_target(
    targets: dict[str, dict[str, Any]], name: str, target: str, raw: Any, text: str
) -> None:
    root, member, part, kind, limit, part_limits, refusal = _target_plan(target)
    out = targets.setdefault(root, {})
    if kind == _ATTRIBUTE:
        _require_scalar(name, target, raw)
        if text:
            if refusal is not None:
                raise MappingError(f"Field {name}: {refusal}")
            _check_text(name, target, text, limit)
            out.setdefault("Attributes", {})[part] = text
    elif kind == _LIST:
        if raw in (None, ""):
            pass
        elif not isinstance(raw, list) or not all(isinstance(i, Mapping) for i in raw):
            raise MappingError(f"Field {name}: Target {target} takes a JSON array of objects.")
        else:
            items = [{k: _text(v) for k, v in i.items() if _scalar(v) and _text(v)} for i in raw]
            out[member] = [i for i in items if i]
    elif kind == _PART:
        _require_scalar(name, target, raw)
        if text:
            _check_text(name, target, text, limit)
            out.setdefault(member, {})[part] = text
    elif kind == _WRITABLE:
        parts = WRITABLE_FIELDS[root][member] or ()
        if raw in (None, ""):
            pass
        elif not isinstance(raw, Mapping):
            raise MappingError(
                f"Field {name}: Target {target} takes a JSON object with members "
                f"{', '.join(parts)}; the Source gave {_kind(raw)}."
            )
        else:
            values = {p: _text(raw.get(p)) for p in parts if _scalar(raw.get(p))}
            values = {p: v for p, v in values.items() if v}
            for p, v in values.items():
                _check_text(name, f"{target}.{p}", v, part_limits.get(p))
            if values:
                out.setdefault(member, {}).update(values)
    else:
        _require_scalar(name, target, raw)
        if text:
            _check_text(name, target, text, limit)
            if root == "_profile" and member in ENUM_TARGETS:
                member = _enum_member(name, target, member, text)
            out[member] = text
    if not out:
        del targets[root]


def _check_text(name: str, target: str, text: str, limit: int | None) -> None:
    # The length, never the value: it is personal data, and lands in the dead-letter reason.
    if limit is not None and len(text) > limit:
        raise MappingError(
            f"Field {name}: its value has {len(text)} characters, but {target} holds at most "
            f"{limit}."
        )
    # CreateProfile and UpdateProfile refuse a NUL in any profile value (and UpdateProfile
    # would refuse the stored value given back); a profile field ingestion fills is one.
    if "\x00" in text and target.startswith("_profile."):
        raise MappingError(
            f"Field {name}: its value holds a NUL character (U+0000), which {target} cannot hold."
        )


def _enum_member(name: str, target: str, member: str, text: str) -> str:
    """The member an enum target's value is written to: its own for a value of the enum, else
    its free-text twin; a MappingError for an enum without one (ProfileType), whose value the
    API could neither return nor take back in UpdateProfile. The value is not quoted (as in
    `_check_text`)."""
    allowed, fallback = ENUM_TARGETS[member]
    if text in allowed:
        return member
    if fallback is None:
        raise MappingError(
            f"Field {name}: its value is not one of {', '.join(sorted(allowed))}, the values "
            f"{target} takes."
        )
    return fallback


def _scalar(value: Any) -> bool:
    # JSON's scalars first: the ABC check for Mapping costs several times more.
    return type(value) in _JSON_SCALARS or not isinstance(value, Mapping | list)


_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a JSON object"
    if isinstance(value, list):
        return "a JSON array"
    return "a single value"


def _require_scalar(name: str, target: str, raw: Any) -> None:
    if not _scalar(raw):
        raise MappingError(
            f"Field {name}: the Source gives {_kind(raw)}, but Target {target} takes a single "
            "value; map one of its members instead."
        )


# ---------------------------------------------------------------------------- keys

# The ContentTypes whose fields an inferred profile takes its EmailAddress and PhoneNumber from
# (`_first_typed`).
_INFERRED_FROM: Mapping[ContentType, str] = {
    ContentType.EMAIL_ADDRESS: "EmailAddress",
    ContentType.PHONE_NUMBER: "PhoneNumber",
}


def _refuse_structures(object_type: ObjectType, structured: list[tuple[str, str]]) -> None:
    """A MappingError for the first of the `structured` fields (name, what its Source gave: a
    JSON object or array) that feeds a key or an inferred profile: either would hold the
    structure's JSON text, which no search for the key or the address could find. The value is
    not quoted (personal data, and the reason lands in the dead letter)."""
    for name, kind in structured:
        for key_name, definitions in object_type.keys.items():
            if any(name in d.field_names for d in definitions):
                raise MappingError(
                    f"Field {name}: the Source gives {kind}, but the field feeds "
                    f"key {key_name}, which takes a single value; map one of its members instead."
                )
        profile_field = _INFERRED_FROM.get(object_type.fields[name].content_type)
        if profile_field is not None:
            raise MappingError(
                f"Field {name}: the Source gives {kind}, but its ContentType "
                f"{object_type.fields[name].content_type.value} makes it a profile's "
                f"{profile_field}, which takes a single value; map one of its members instead."
            )


def _compute_keys(
    object_type: ObjectType, field_values: Mapping[str, str], phone_region: str
) -> tuple[tuple[ComputedKey, ...], ComputedKey | None]:
    keys: list[ComputedKey] = []
    unique: ComputedKey | None = None
    for key_name, definitions in object_type.keys.items():
        for definition in definitions:
            names = definition.field_names
            if len(names) == 1:  # the usual key, without the composite key's list and join
                raw = field_values.get(names[0], "")
                if not raw:
                    continue
            else:
                values = [field_values.get(f, "") for f in names]
                if not values or not all(values):
                    continue
                raw = "_".join(values)
            content_type = PREDEFINED_CONTENT_TYPES.get(key_name) or key_content_type_of(
                tuple(object_type.fields[f].content_type for f in names)
            )
            normalised = normalize(content_type, raw, phone_region=phone_region)
            if not normalised:
                continue
            key = ComputedKey(
                name=key_name,
                identifiers=definition.standard_identifiers,
                value=raw,
                normalised=normalised,
                content_type=content_type,
            )
            keys.append(key)
            if "UNIQUE" in definition.standard_identifiers and unique is None:
                unique = key
    return tuple(keys), unique


def _first_typed(
    object_type: ObjectType,
    field_values: Mapping[str, str],
    content_type: ContentType,
) -> str | None:
    """The value an inferred profile takes as its field of `content_type` (`_INFERRED_FROM`):
    the first of that type the field can hold (a longer one is no address the profile could
    show; the object keeps it)."""
    limit = _profile_bounds().strings.get(_INFERRED_FROM[content_type])
    for name, field in object_type.fields.items():
        value = field_values.get(name)
        if field.content_type is content_type and value and (limit is None or len(value) <= limit):
            return value
    return None


# ---------------------------------------------------------------------------- timestamps

EPOCH_MILLI = "epochmilli"

# Java SimpleDateFormat pattern letters -> strptime directives, by run length where it matters.
_JAVA_LETTERS: dict[str, Any] = {
    "y": lambda n: "%y" if n == 2 else "%Y",
    "M": lambda n: "%m" if n <= 2 else ("%b" if n == 3 else "%B"),
    "d": lambda n: "%d",
    "H": lambda n: "%H",
    "h": lambda n: "%I",
    "m": lambda n: "%M",
    "s": lambda n: "%S",
    "S": lambda n: "%f",
    "a": lambda n: "%p",
    "E": lambda n: "%a" if n <= 3 else "%A",
    "D": lambda n: "%j",
    "Z": lambda n: "%z",
    "X": lambda n: "%z",
    "z": lambda n: "%Z",
}
_JAVA_TOKEN = re.compile(r"'((?:[^']|'')*)'|([A-Za-z])\2*|([^A-Za-z']+)")


def java_format_to_strptime(pattern: str) -> str:
    """Translate a Java SimpleDateFormat pattern; ValueError for letters it does not support."""
    out: list[str] = []
    position = 0
    while position < len(pattern):
        match = _JAVA_TOKEN.match(pattern, position)
        if match is None:
            raise ValueError(f"unbalanced quote at position {position}")
        quoted, letter, literal = match.group(1), match.group(2), match.group(3)
        if quoted is not None:
            out.append((quoted.replace("''", "'") or "'").replace("%", "%%"))
        elif letter is not None:
            translate = _JAVA_LETTERS.get(letter)
            if translate is None:
                raise ValueError(f"the pattern letter {letter!r} is not supported")
            out.append(translate(len(match.group(0))))
        else:
            out.append(literal.replace("%", "%%"))
        position = match.end()
    return "".join(out)


def check_timestamp_format(fmt: str) -> None:
    """ValueError unless `fmt` is EpochMilli or a supported SimpleDateFormat pattern."""
    if fmt.strip().casefold() != EPOCH_MILLI:
        java_format_to_strptime(fmt)


def parse_source_timestamp(value: str, fmt: str, *, field_name: str = "") -> datetime:
    """Read a SourceLastUpdatedTimestamp; naive times are UTC (spec §1.3)."""
    label = f"Field {field_name}: " if field_name else ""
    if fmt.strip().casefold() == EPOCH_MILLI:
        try:
            millis = Decimal(value.strip())
            return datetime.fromtimestamp(float(millis / 1000), UTC)
        except (InvalidOperation, ValueError, OverflowError):
            raise MappingError(
                f"{label}{shown_value(value)} is not a time in milliseconds since the epoch "
                "(EpochMilli)."
            ) from None
    try:
        parsed = datetime.strptime(value.strip(), java_format_to_strptime(fmt))
    except ValueError:
        raise MappingError(
            f"{label}{shown_value(value)} does not match SourceLastUpdatedTimestampFormat {fmt!r}."
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
