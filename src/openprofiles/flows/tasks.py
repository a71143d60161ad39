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
* `Validate` (`VALIDATE_NON_NULL`, `VALIDATE_NON_ZERO`, `VALIDATE_NON_NEGATIVE`,
  `VALIDATE_NUMERIC`) fails the record (dead-lettered with the reason) or, with TaskProperties
  `VALIDATION_ACTION: TerminateFlow`, stops the run. "NaN", "sNaN", "Infinity" and "-Infinity"
  (and a JSON number too large for a float) are no numbers: they fail VALIDATE_NUMERIC,
  VALIDATE_NON_ZERO and VALIDATE_NON_NEGATIVE.
* `Map` copies SourceFields[0] to DestinationField. When a flow has Map tasks, the record handed
  to the mapping holds only the mapped fields (as AppFlow delivers only mapped fields);
  without Map tasks it passes through whole (after any projection).

Field names may be dotted paths into nested objects (`default_address.city`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from openprofiles.flows.models import Task


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
            and task.operator not in (None, "PROJECTION", "NO_OP")
            and not all(_compare(task, get_path(record, f)) for f in task.source_fields)
        ):
            return None
    out: dict[str, Any] = dict(record)
    projections = [t for t in tasks if t.task_type == "Filter" and t.operator == "PROJECTION"]
    if projections:
        keep = {f for t in projections for f in t.source_fields}
        out = {
            k: v for k, v in out.items() if k in keep or any(f.startswith(k + ".") for f in keep)
        }
    maps = [t for t in tasks if t.task_type == "Map"]
    if maps:
        out = {
            str(t.destination_field): get_path(record, t.source_fields[0])
            for t in maps
            if get_path(record, t.source_fields[0]) is not None
        }
    return out


def _number(value: Any) -> Decimal | None:
    """The value as a finite number, or None. Decimal reads "NaN", "sNaN" and "Infinity" as
    numbers, but comparing a NaN raises InvalidOperation (an sNaN even for ==), which used to
    stop the run with an internal error; none of them is a number a task can check or compare
    (as ingest.mapping's `_is_number` says too)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


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


# DATA_TYPE values (TaskProperties) of a Filter task that make its comparison numeric, or textual,
# whatever its VALUE looks like (AppFlow's field types, and the names of common schemas').
NUMBER_TYPES = frozenset(
    {"byte", "short", "int", "integer", "long", "bigint", "float", "double", "decimal", "number"}
)
TEXT_TYPES = frozenset({"string", "text", "varchar", "char"})


def _numeric(task: Task, bounds: Sequence[Any]) -> bool:
    """Whether the Filter task compares as numbers (the module docstring)."""
    data_type = str(task.properties.get("DATA_TYPE", "")).strip().lower()
    if data_type in NUMBER_TYPES:
        return True
    return data_type not in TEXT_TYPES and all(_number(b) is not None for b in bounds)


def _compare(task: Task, value: Any) -> bool:
    if value is None:
        return False
    props = task.properties
    op = task.operator
    if op == "CONTAINS":
        return str(props.get("VALUE", "")) in str(value)
    bounds = (
        [props.get("LOWER_BOUND"), props.get("UPPER_BOUND")]
        if op == "BETWEEN"
        else [props.get("VALUE")]
    )
    if _numeric(task, bounds):
        number = _number(value)
        numbers = [_number(b) for b in bounds]
        if number is None or any(n is None for n in numbers):
            # No number to compare (the module docstring): the record does not pass.
            return False
        results = [_order(number, n) for n in numbers]
    else:
        results = [_order(str(value), str(b)) for b in bounds]
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
    }.get(str(op), True)


def _order(left: Any, right: Any) -> int:
    """-1, 0 or 1 as `left` is less than, equal to or greater than `right` (of one type)."""
    return (left > right) - (left < right)
