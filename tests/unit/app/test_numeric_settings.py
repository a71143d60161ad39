"""Numeric settings outside their range are refused with the variable's name and the range.

An operator review: OPENPROFILES_DATA_KEY_CACHE_SECONDS=-5 (and inf, nan) was accepted; the other
numeric settings as well (a negative or NaN interval, a lease of 0 under which every running
matching job is taken for dead, a negative process count)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from openprofiles.cli import main
from openprofiles.settings import Settings, shown_duration

SECONDS = (
    "OPENPROFILES_DATA_KEY_CACHE_SECONDS",
    "OPENPROFILES_MATCHING_SCHEDULE_CHECK_SECONDS",
    "OPENPROFILES_DLQ_RESEND_INTERVAL_SECONDS",
    "OPENPROFILES_MATCHING_JOB_LEASE_SECONDS",
)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        *(
            (variable, value, "must be a number of seconds from ")
            for variable in SECONDS
            for value in ("-5", "inf", "-inf", "nan", "1e400", "31536001")
        ),
        ("OPENPROFILES_MATCHING_JOB_LEASE_SECONDS", "0", "from 1 to 31536000 (365 days), not 0"),
        ("OPENPROFILES_MATCHING_JOBS_PER_WEEK", "-1", "must be a whole number from 0 to "),
        ("OPENPROFILES_RULE_PASS_PROCESSES", "-1", "must be a whole number from 0 to 1024, not -1"),
        ("OPENPROFILES_RULE_PASS_PROCESSES", "100000", "from 0 to 1024, not 100000"),
    ],
)
def test_a_number_out_of_range_stops_the_command_naming_the_variable(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    with pytest.raises(ValueError, match=variable) as refused:
        Settings.from_env({variable: value})
    assert message in str(refused.value)
    for command in (["credentials", "list"], ["serve"]):
        result = CliRunner().invoke(
            main, [*command, "--data-dir", str(tmp_path)], env={variable: value}
        )
        assert result.exit_code == 2, result.output
        assert f"Error: {variable} must be " in result.output
        assert "Traceback" not in result.output


def test_the_message_names_the_range_and_the_value() -> None:
    with pytest.raises(ValueError) as refused:
        Settings.from_env({"OPENPROFILES_DATA_KEY_CACHE_SECONDS": "-5"})
    assert str(refused.value) == (
        "OPENPROFILES_DATA_KEY_CACHE_SECONDS must be a number of seconds from 0 to 31536000 "
        "(365 days), not -5"
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        *((variable, value) for variable in SECONDS for value in ("1", "0.5e1", "31536000")),
        # 0 turns the cache, the scheduler and the resend off (and is what tests use).
        *(
            (variable, "0")
            for variable in SECONDS
            if variable != "OPENPROFILES_MATCHING_JOB_LEASE_SECONDS"
        ),
        ("OPENPROFILES_MATCHING_JOBS_PER_WEEK", "0"),
        ("OPENPROFILES_RULE_PASS_PROCESSES", "0"),
    ],
)
def test_numbers_in_range_are_read(variable: str, value: str) -> None:
    settings = Settings.from_env({variable: value})
    field = variable.removeprefix("OPENPROFILES_").lower()
    assert getattr(settings, field) == float(value)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0 seconds"),
        (1, "1 second"),
        (45, "45 seconds"),
        (60, "1 minute"),
        (90, "90 seconds"),
        (120, "2 minutes"),
        (3600, "1 hour"),
        (5400, "90 minutes"),
        (7200, "2 hours"),
        (86400, "1 day"),
        (172800, "2 days"),
        (31536000, "365 days"),
        # No whole number of any unit but seconds, and too many of those to read.
        (3601, "about 1 hour"),
        (2147483, "about 25 days"),
    ],
)
def test_durations_are_shown_in_the_unit_they_are_whole_in(seconds: int, shown: str) -> None:
    assert shown_duration(seconds) == shown


def test_a_range_of_an_hour_says_an_hour() -> None:
    """A newcomer review: "from 0 to 3600 (0 days)"."""
    for variable in (
        "OPENPROFILES_FLOW_FOLDER_SETTLE_SECONDS",
        "OPENPROFILES_METRICS_STATE_SECONDS",
    ):
        with pytest.raises(ValueError) as refused:
            Settings.from_env({variable: "4000"})
        assert str(refused.value) == (
            f"{variable} must be a number of seconds from 0 to 3600 (1 hour), not 4000"
        )
    with pytest.raises(ValueError) as refused:
        Settings.from_env({"OPENPROFILES_DATABASE_LOCK_TIMEOUT_SECONDS": "-1"})
    assert "up to 2147483 (about 25 days), not -1" in str(refused.value)
