"""A field holding "NaN", "sNaN", "Infinity" or "-Infinity" is no number for a flow's Validate
and Filter tasks (flows.tasks) — on SQLite and PostgreSQL.

Decimal reads those texts as numbers, and comparing a NaN raises decimal.InvalidOperation (an
sNaN even for ==): a Validate task (VALIDATE_NON_NEGATIVE, VALIDATE_NON_ZERO) or a comparing
Filter on such a field stopped the whole run with an internal error, every run, until the
record was set aside after a few; VALIDATE_NUMERIC passed them, and the infinities passed
VALIDATE_NON_ZERO. Now the record fails a Validate task at once, dead-lettered with the reason
as any record that fails one, and a Filter comparing numbers drops it, as it does any value that
is not a number (test_flows_filter_types). Map tasks only copy values: nothing of theirs
compares or computes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.context import Services
from openprofiles.flows import service as flows

from .test_flows_failed_items import TYPE, counts, ingested, jsonl, letters, user
from .test_flows_templates import D, flow_definition, put_flow

NON_FINITE = ["NaN", "sNaN", "Infinity", "-Infinity"]


def run_over(
    services: Services, tmp_path: Path, tasks: list[dict[str, Any]], *records: dict[str, Any]
) -> Any:
    """A folder flow with `tasks` over one file of `records`, run once."""
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "a.jsonl").write_text(jsonl(*records))
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder), tasks=tasks))
    return flows.run_flow(services, domain_name=D, flow_name="crm")


@pytest.mark.parametrize("value", NON_FINITE)
@pytest.mark.parametrize(
    ("operator", "problem"),
    [
        ("VALIDATE_NUMERIC", "is not numeric"),
        ("VALIDATE_NON_ZERO", "is zero or not a number"),
        ("VALIDATE_NON_NEGATIVE", "is negative or not a number"),
    ],
)
def test_a_non_finite_number_fails_a_validate_task_at_once(
    services: Services, tmp_path: Path, operator: str, problem: str, value: str
) -> None:
    validate = {
        "TaskType": "Validate",
        "SourceFields": ["score"],
        "TaskProperties": {"VALIDATION_ACTION": "DropRecord"},
        "ConnectorOperator": {"S3": operator},
    }
    run = run_over(services, tmp_path, [validate], user(1, score="12.5"), user(2, score=value))

    # The run goes on, the record before and after it alike: no internal error.
    assert counts(run) == ("COMPLETED", 1, 2, 1, 1) and run.error is None
    assert ingested(services, 1, 2) == [1]
    [letter] = letters(services)
    assert letter.reason == (
        f"Flow crm, a.jsonl, line 2: Validate task {operator} failed: field score {problem}."
    )
    assert letter.not_retryable is not None


@pytest.mark.parametrize("value", NON_FINITE)
def test_a_non_finite_number_stops_a_terminating_validate_task_as_a_failed_record_does(
    services: Services, tmp_path: Path, value: str
) -> None:
    validate = {
        "TaskType": "Validate",
        "SourceFields": ["score"],
        "TaskProperties": {"VALIDATION_ACTION": "TerminateFlow"},
        "ConnectorOperator": {"S3": "VALIDATE_NON_NEGATIVE"},
    }
    run = run_over(services, tmp_path, [validate], user(1, score=value))

    assert run.status == "FAILED"
    assert run.error == (
        "Flow crm, a.jsonl, line 1: Validate task VALIDATE_NON_NEGATIVE failed: field score is "
        "negative or not a number. The flow was terminated (TerminateFlow)."
    )


@pytest.mark.parametrize("value", NON_FINITE)
@pytest.mark.parametrize("operator", ["GREATER_THAN", "LESS_THAN", "EQUAL_TO", "BETWEEN"])
def test_a_non_finite_number_does_not_pass_a_filter_comparing_numbers(
    services: Services, tmp_path: Path, operator: str, value: str
) -> None:
    """As any value that is not a number ("abc"): the filter's value is a number, so it
    compares numbers, and the record has none to compare; the number 7 beside it is compared."""
    properties = (
        {"LOWER_BOUND": "1", "UPPER_BOUND": "9"} if operator == "BETWEEN" else {"VALUE": "5"}
    )
    task = {
        "TaskType": "Filter",
        "SourceFields": ["score"],
        "ConnectorOperator": {"S3": operator},
        "TaskProperties": properties,
    }

    run = run_over(services, tmp_path, [task], user(1, score="7"), user(2, score=value))

    kept = [1] if operator in ("GREATER_THAN", "BETWEEN") else []
    assert run.status == "COMPLETED" and run.error is None
    assert (run.records_read, run.records_filtered) == (2, 2 - len(kept))
    assert ingested(services, 1, 2) == kept
    assert letters(services) == []
