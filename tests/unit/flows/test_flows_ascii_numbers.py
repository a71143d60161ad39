"""A flow's tasks read as a number only one written in ASCII digits (flows.tasks `_number`).

Python's Decimal also reads "1_000" (digit grouping) and other scripts' digits ("٣", "３"), so a
Filter comparing numbers passed such a field as 1000 or 3, and VALIDATE_NUMERIC took it as
numeric; no file's number column means either. Now they are no numbers: the Filter drops the
record, the Validate task fails it. Signs, fractions and exponents in ASCII still read.
"""

from __future__ import annotations

import pytest

from openprofiles.flows.tasks import RecordFailed

from .test_flows_task_meanings import applied, task

NOT_ASCII_NUMBERS = ["1_000", "٣", "３", "1_0.5", "1e٣"]


@pytest.mark.parametrize("value", NOT_ASCII_NUMBERS)
def test_a_filter_comparing_numbers_drops_a_field_not_in_ascii_digits(value: str) -> None:
    above = task("Filter", "GREATER_THAN", "score", VALUE="2", DATA_TYPE="double")
    assert applied({"score": value}, above) is None


@pytest.mark.parametrize("value", NOT_ASCII_NUMBERS)
def test_validate_numeric_fails_a_field_not_in_ascii_digits(value: str) -> None:
    numeric = task("Validate", "VALIDATE_NUMERIC", "score", VALIDATION_ACTION="DropRecord")
    with pytest.raises(RecordFailed):
        applied({"score": value}, numeric)


@pytest.mark.parametrize("value", ["3", " 3 ", "+3", "3.", ".5e1", "1E2", "-4e-1", 3, 2.5e1])
def test_ascii_numbers_still_compare_as_numbers(value: object) -> None:
    above = task("Filter", "GREATER_THAN", "score", VALUE="0.1", DATA_TYPE="double")
    numeric = task("Validate", "VALIDATE_NUMERIC", "score", VALIDATION_ACTION="DropRecord")
    record = {"score": value}
    expected = None if value == "-4e-1" else record
    assert applied(record, numeric, above) == expected
