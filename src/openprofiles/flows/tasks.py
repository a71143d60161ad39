"""A flow's Tasks applied to each source record before the object type's mapping.

* `Filter` with `PROJECTION` keeps only the listed SourceFields; with a comparison operator
  (`EQUAL_TO`, `NOT_EQUAL_TO`, `LESS_THAN`, `GREATER_THAN`, `LESS_THAN_OR_EQUAL_TO`,
  `GREATER_THAN_OR_EQUAL_TO`, `BETWEEN`, `CONTAINS`; TaskProperties `VALUE`, `LOWER_BOUND`,
  `UPPER_BOUND`, `DATA_TYPE`) it drops records whose field does not satisfy it. As in AppFlow,
  where a filter compares a field by the field's type (a number field as numbers, whatever text
  it came as in a file), the comparison has one type, the task's, not one per record
  (`_numeric`): numbers when its DATA_TYPE names a number type (`integer`, `double`, ...), or
  when it names none and its VALUE (both bounds, for BETWEEN) is a number; text when DATA_TYPE
  is `string`, or the value is not a number. `CONTAINS` always compares text. Under a numeric
  comparison a record whose field is no finite number ("abc", "", true, "NaN", "Infinity") does
  not satisfy it, whatever the operator (`NOT_EQUAL_TO` too, as a missing field does not): it is
  dropped, counted as filtered, not compared as text ("abc" used to pass `GREATER_THAN 9`, "10"
  sorting before "9" as text) — a Validate task `VALIDATE_NUMERIC` before the filter
  dead-letters such records instead, with the reason, for those who want them seen.
  Compared as text, a value that is no JSON string is its JSON text: `true`, `false`, a number
  as JSON writes it (`10`, `9.5`; a float parsed from the file is written back in its shortest
  form, so `1E2` reads `100.0`), so VALUE "true" matches a JSON true (it used to be Python's
  "True", which no filter matched). When DATA_TYPE names a date type (`date`, `datetime`,
  `timestamp`) the comparison is of instants (`_instant`): the field and the VALUE (bounds) are
  each read as epoch milliseconds (a JSON number, or a text of digits alone) or as ISO-8601 text
  (`2023-05-01T10:00:00.000+0000`, `2021-01-01T00:00:00Z`, `2024-01-01`; with no offset, UTC),
  and a field that is no instant does not satisfy it (dropped, counted as filtered, as for
  numbers); PutIntegration refuses such a filter whose VALUE is no instant (`check_task`).
* `Validate` (`VALIDATE_NON_NULL`, `VALIDATE_NON_ZERO`, `VALIDATE_NON_NEGATIVE`,
  `VALIDATE_NUMERIC`) fails the record (dead-lettered with the reason) or, with TaskProperties
  `VALIDATION_ACTION: TerminateFlow`, stops the run. "NaN", "sNaN", "Infinity" and "-Infinity"
  (and a JSON number too large for a float) are no numbers: they fail VALIDATE_NUMERIC,
  VALIDATE_NON_ZERO and VALIDATE_NON_NEGATIVE.
* `Map` copies SourceFields[0] to DestinationField. When a flow has Map tasks, the record handed
  to the mapping holds only the mapped fields (as AppFlow delivers only mapped fields);
  without Map tasks it passes through whole (after any projection).

Field names may be dotted paths into nested objects (`default_address.city`): a projection of
`addr.city` keeps `{"addr": {"city": ...}}` and nothing else of `addr` (it kept the whole of
`addr`), and a Map task whose DestinationField is `x.y` writes `{"x": {"y": ...}}`, which the
object type reads as `_source.x.y` (it wrote a key "x.y" that no mapping reads).

`check_task` refuses, when a definition is put (models.parse_flow_definition), a task these
rules give no meaning: a Filter whose operator is no filter operator (`ADDITION`, a typo such
as `LESS_THEN`, which passed every record), a comparison with no SourceFields or without its
VALUE (LOWER_BOUND and UPPER_BOUND for BETWEEN), a Validate task with no validation operator,
a VALIDATION_ACTION other than AppFlow's `DropRecord` and `TerminateFlow`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from openprofiles.errors import BadRequest

if TYPE_CHECKING:
    # Only named: models imports this module (`check_task`) as it reads a definition.
    from openprofiles.flows.models import Task

# The operators of a Filter task that compare a field with the task's VALUE (or bounds), and
# the others it may have: PROJECTION keeps fields, NO_OP does nothing. CONTAINS is
# Salesforce's and ServiceNow's (the S3 member has none), taken from a definition written for
# one of those (models._operator).
COMPARISONS = frozenset(
    {
        "EQUAL_TO",
        "NOT_EQUAL_TO",
        "LESS_THAN",
        "GREATER_THAN",
        "LESS_THAN_OR_EQUAL_TO",
        "GREATER_THAN_OR_EQUAL_TO",
        "BETWEEN",
        "CONTAINS",
    }
)
FILTER_OPERATORS = COMPARISONS | {"PROJECTION", "NO_OP"}
VALIDATE_OPERATORS = frozenset(
    {"VALIDATE_NON_NULL", "VALIDATE_NON_ZERO", "VALIDATE_NON_NEGATIVE", "VALIDATE_NUMERIC"}
)
# AppFlow's: a record that fails is dropped (dead-lettered here, with the reason) — the
# default — or the run stops.
VALIDATION_ACTIONS = frozenset({"DropRecord", "TerminateFlow"})


class RecordFailed(Exception):
    """A Validate task failed for the record; `reason` says which and why."""

    def __init__(self, reason: str, terminate: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.terminate = terminate


def get_path(record: Mapping[str, Any], path: str) -> Any:
    if path in record:
        return record[path]
    current: Any = record
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return None
        current = current[part]
    return current


def apply_tasks(tasks: Sequence[Task], record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The record to ingest, or None when a filter drops it; RecordFailed on validation."""
    for task in tasks:
        if task.task_type == "Validate":
            _validate(task, record)
        elif (
            task.task_type == "Filter"
            and task.operator in COMPARISONS
            and not all(_compare(task, get_path(record, f)) for f in task.source_fields)
        ):
            return None
    out: dict[str, Any] = dict(record)
    projections = [t for t in tasks if t.task_type == "Filter" and t.operator == "PROJECTION"]
    if projections:
        out = _project(record, {f for t in projections for f in t.source_fields})
    maps = [t for t in tasks if t.task_type == "Map"]
    if maps:
        out = {}
        for t in maps:
            value = get_path(record, t.source_fields[0])
            if value is not None:
                _set_path(out, str(t.destination_field), value)
    return out


def _project(record: Mapping[str, Any], keep: set[str]) -> dict[str, Any]:
    """The record with only the `keep` paths: a field named whole is kept whole (a key with
    dots in its name too, as `get_path` reads it), one named by nested paths keeps only
    those of it (an object: a list or a value has no fields to name)."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key in keep:
            out[key] = value
            continue
        inner = {f[len(key) + 1 :] for f in keep if f.startswith(key + ".")}
        if inner and isinstance(value, Mapping):
            out[key] = _project(value, inner)
    return out


def _set_path(out: dict[str, Any], path: str, value: Any) -> None:
    """Write `value` at the dotted `path`, making the objects on the way. PutIntegration
    refuses Map tasks of which one writes inside another's value (models), so each object on
    the way is one this function made."""
    *parents, last = path.split(".")
    for part in parents:
        out = out.setdefault(part, {})
    out[last] = value


def _number(value: Any) -> Decimal | None:
    """The value as a finite number, or None. Decimal reads "NaN", "sNaN" and "Infinity" as
    numbers, but comparing a NaN raises InvalidOperation (an sNaN even for ==), which used to
    stop the run with an internal error; none of them is a number a task can check or compare
    (as ingest.mapping's `_is_number` says too). Only a number written in ASCII digits is
    one (`_NUMBER`): Decimal also reads "1_000" and other scripts' digits ("٣"), which no
    file's number column means."""
    if isinstance(value, bool) or value is None:
        return None
    text = str(value).strip()
    if not _NUMBER.fullmatch(text):
        return None
    try:
        number = Decimal(text)
    except InvalidOperation:  # an exponent past Decimal's bounds
        return None
    return number if number.is_finite() else None


# A number as a file or JSON writes it, in ASCII: sign, digits, fraction, exponent (also "+5",
# ".5" and "007", which Decimal and AppFlow's Java read too); re.ASCII so \d is 0-9 only.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


def check_task(task: Task) -> None:
    """BadRequest when the task means nothing these rules can run (the module docstring);
    models.parse_flow_definition calls it for a definition being put."""
    what = f"{task.task_type} task on {', '.join(task.source_fields) or 'no SourceFields'}"
    if task.task_type == "Filter":
        _check_filter(task, what)
    elif task.task_type == "Validate":
        if task.operator not in VALIDATE_OPERATORS:
            raise BadRequest(
                f"The {what} has the operator {task.operator}, which is no validation "
                f"operator; use {', '.join(sorted(VALIDATE_OPERATORS))}."
            )
        action = task.properties.get("VALIDATION_ACTION")
        if action is not None and action not in VALIDATION_ACTIONS:
            raise BadRequest(
                f"The {what} has VALIDATION_ACTION {action}; use DropRecord (the default) or "
                "TerminateFlow."
            )


def _check_filter(task: Task, what: str) -> None:
    op, props = task.operator, task.properties
    if op not in FILTER_OPERATORS:
        raise BadRequest(
            f"The {what} has the operator {op}, which is no filter operator; use "
            f"{', '.join(sorted(FILTER_OPERATORS))}."
        )
    if op != "NO_OP" and not task.source_fields:
        # A comparison of no field passed every record; a projection of none kept nothing.
        raise BadRequest(f"The Filter task {op} needs the SourceFields it filters on.")
    if op not in COMPARISONS:
        return
    needed = ("LOWER_BOUND", "UPPER_BOUND") if op == "BETWEEN" else ("VALUE",)
    missing = [k for k in needed if props.get(k) is None]
    if missing:
        raise BadRequest(
            f"The {what} with the operator {op} needs TaskProperties {' and '.join(missing)}: "
            "what to compare with."
        )
    unread = [k for k in needed if _instant(props[k]) is None]
    if op != "CONTAINS" and _kind(task) == "date" and unread:
        # Else every record would be dropped, each counted as filtered, and no one told why.
        raise BadRequest(
            f"The {what} compares dates (DATA_TYPE {props['DATA_TYPE']}), but its "
            f"{' and '.join(unread)} is no date: give epoch milliseconds or ISO-8601 text "
            "(2024-01-31T00:00:00Z)."
        )


def _validate(task: Task, record: Mapping[str, Any]) -> None:
    terminate = task.properties.get("VALIDATION_ACTION") == "TerminateFlow"
    for field in task.source_fields:
        value = get_path(record, field)
        number = _number(value)
        problem = None
        if task.operator == "VALIDATE_NON_NULL" and value in (None, ""):
            problem = "is null or empty"
        elif task.operator == "VALIDATE_NUMERIC" and number is None:
            problem = "is not numeric"
        elif task.operator == "VALIDATE_NON_ZERO" and (number is None or number == 0):
            problem = "is zero or not a number"
        elif task.operator == "VALIDATE_NON_NEGATIVE" and (number is None or number < 0):
            problem = "is negative or not a number"
        if problem:
            raise RecordFailed(
                f"Validate task {task.operator} failed: field {field} {problem}.", terminate
            )


# DATA_TYPE values (TaskProperties) of a Filter task that make its comparison numeric, of dates,
# or textual, whatever its VALUE looks like (AppFlow's field types, and the names of common
# schemas').
NUMBER_TYPES = frozenset(
    {"byte", "short", "int", "integer", "long", "bigint", "float", "double", "decimal", "number"}
)
TEXT_TYPES = frozenset({"string", "text", "varchar", "char"})
DATE_TYPES = frozenset({"date", "datetime", "timestamp"})


def _bounds(task: Task) -> list[Any]:
    """What the comparison Filter task compares a field with: its VALUE, or both bounds."""
    props = task.properties
    if task.operator == "BETWEEN":
        return [props.get("LOWER_BOUND"), props.get("UPPER_BOUND")]
    return [props.get("VALUE")]


def _kind(task: Task) -> str:
    """How the Filter task compares: "number", "date" or "text" (the module docstring)."""
    data_type = str(task.properties.get("DATA_TYPE", "")).strip().lower()
    if data_type in NUMBER_TYPES:
        return "number"
    if data_type in DATE_TYPES:
        return "date"
    if data_type not in TEXT_TYPES and all(_number(b) is not None for b in _bounds(task)):
        return "number"
    return "text"


def _instant(value: Any) -> datetime | None:
    """The value as an instant, or None: epoch milliseconds (a JSON number, or a text of
    digits alone — so "20240131", which ISO-8601 could read as a date, is milliseconds), or
    ISO-8601 text, read in UTC when it has no offset."""
    number = _number(value)
    try:
        if number is not None:
            return datetime.fromtimestamp(float(number) / 1000, UTC)
        if not isinstance(value, str):
            return None
        parsed = datetime.fromisoformat(value.strip())
    except (ValueError, OverflowError, OSError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _text(value: Any) -> str:
    """The value as a filter compares it as text: a string as it is, anything else as its
    JSON text (true, not Python's True)."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _compare(task: Task, value: Any) -> bool:
    if value is None:
        return False
    op = task.operator
    bounds = _bounds(task)
    if op == "CONTAINS":
        return _text(bounds[0]) in _text(value)
    kind = _kind(task)
    if kind == "text":
        results = [_order(_text(value), _text(b)) for b in bounds]
    else:
        read = _number if kind == "number" else _instant
        field, limits = read(value), [read(b) for b in bounds]
        if field is None or any(limit is None for limit in limits):
            # No number (instant) to compare (the module docstring): the record does not pass.
            return False
        results = [_order(field, limit) for limit in limits]
    if op == "BETWEEN":
        return results[0] >= 0 and results[1] <= 0
    [result] = results
    return {
        "EQUAL_TO": result == 0,
        "NOT_EQUAL_TO": result != 0,
        "LESS_THAN": result < 0,
        "GREATER_THAN": result > 0,
        "LESS_THAN_OR_EQUAL_TO": result <= 0,
        "GREATER_THAN_OR_EQUAL_TO": result >= 0,
    }[str(op)]


def _order(left: Any, right: Any) -> int:
    """-1, 0 or 1 as `left` is less than, equal to or greater than `right` (of one type)."""
    return (left > right) - (left < right)
