"""A Filter task compares by one type, the task's, as AppFlow compares a field by its type: numbers
when its value is a number (or its DATA_TYPE names a number type), text otherwise (or when its
DATA_TYPE is string) — on SQLite and PostgreSQL for a run, and for each operator on its own.

A value that was not a number used to be compared with a number as text: "abc" passed
GREATER_THAN 9 ("a" sorts after "9"), and so did "NaN", true and "Infinity". Now a record whose
field holds no number under a comparison of numbers does not pass it, whatever the operator, and
is counted as filtered (flows.tasks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from openprofiles.context import Services
from openprofiles.flows.models import parse_flow_definition
from openprofiles.flows.tasks import apply_tasks

from .test_flows_failed_items import counts, ingested, letters, user
from .test_flows_non_finite_numbers import run_over
from .test_flows_templates import flow_definition


def comparing(operator: str, **properties: str) -> dict[str, Any]:
    return {
        "TaskType": "Filter",
        "SourceFields": ["score"],
        "ConnectorOperator": {"S3": operator},
        "TaskProperties": properties,
    }


def test_a_run_keeps_only_the_numbers_a_numeric_filter_keeps(
    services: Services, tmp_path: Path
) -> None:
    scores: list[Any] = ["10", 10, "9.5", " 12 ", "abc", "NaN", "", True, 8, "9"]
    records = [user(n, score=score) for n, score in enumerate(scores, start=1)]
    records.append(user(len(scores) + 1))  # no score at all

    run = run_over(services, tmp_path, [comparing("GREATER_THAN", VALUE="9")], *records)

    kept = [1, 2, 3, 4]
    assert counts(run) == ("COMPLETED", 1, len(records), len(kept), 0)
    assert run.records_filtered == len(records) - len(kept)
    assert ingested(services, *range(1, len(records) + 1)) == kept
    assert letters(services) == []


def passes(task: dict[str, Any], score: Any) -> bool:
    """Whether a record with `score` passes the Filter task alone."""
    [parsed] = parse_flow_definition(flow_definition("crm", "b", "", tasks=[task])).tasks
    return apply_tasks([parsed], {"score": score}) is not None


@pytest.mark.parametrize(
    ("task", "score", "kept"),
    [
        # The filter's value is a number: numbers compare as numbers, whatever text they are.
        (comparing("GREATER_THAN", VALUE="9"), "10", True),
        (comparing("LESS_THAN", VALUE="9"), "10", False),
        (comparing("EQUAL_TO", VALUE="10"), "10.0", True),
        (comparing("EQUAL_TO", VALUE="10"), 10, True),
        (comparing("GREATER_THAN_OR_EQUAL_TO", VALUE="-1.5"), -1.5, True),
        (comparing("BETWEEN", LOWER_BOUND="1", UPPER_BOUND="10"), "2", True),
        (comparing("BETWEEN", LOWER_BOUND="1", UPPER_BOUND="10"), "11", False),
        # No number in the record: it does not pass, whatever the operator.
        (comparing("GREATER_THAN", VALUE="9"), "abc", False),
        (comparing("LESS_THAN", VALUE="9"), "abc", False),
        (comparing("NOT_EQUAL_TO", VALUE="9"), "abc", False),
        (comparing("NOT_EQUAL_TO", VALUE="9"), True, False),
        (comparing("GREATER_THAN", VALUE="9"), "Infinity", False),
        (comparing("BETWEEN", LOWER_BOUND="1", UPPER_BOUND="10"), "", False),
        # DATA_TYPE says numbers: a bound that is not one lets nothing through.
        (comparing("GREATER_THAN", VALUE="7", DATA_TYPE="integer"), "8", True),
        (comparing("GREATER_THAN", VALUE="seven", DATA_TYPE="double"), "8", False),
        # The filter's value is text, or DATA_TYPE says string: text compares as text.
        (comparing("LESS_THAN", VALUE="abd"), "abc", True),
        (comparing("GREATER_THAN", VALUE="abc"), 10, False),
        (comparing("GREATER_THAN", VALUE="9", DATA_TYPE="string"), "10", False),
        (comparing("EQUAL_TO", VALUE="01234", DATA_TYPE="String"), "1234", False),
        (comparing("EQUAL_TO", VALUE="01234", DATA_TYPE="string"), "01234", True),
        # CONTAINS is about text.
        (comparing("CONTAINS", VALUE="2"), 123, True),
    ],
)
def test_each_comparison_has_the_filters_type(task: dict[str, Any], score: Any, kept: bool) -> None:
    assert passes(task, score) is kept
