"""What a FlowDefinition may ask for, and how a stored one is read — on SQLite and PostgreSQL.

* A Scheduled flow's `rate(...)` interval is at most MAX_INTERVAL_DAYS (10 years): more, such as
  rate(3000000 days), was accepted, the first run happened, and every watcher pass after it
  failed with OverflowError computing the next run's time (its start plus the interval, past
  year 9999). PutIntegration refuses it now, naming the limit; a definition stored before that
  is read with its interval cut to the limit: the watcher passes it over quietly, and a flow of
  it that is due fails once, saying why.
* A task's ConnectorOperator with several members: the operator was the first in the JSON's
  order, so {"Marketo": "NO_OP", "S3": "VALIDATE_NON_NULL"} skipped the Validate task, and the
  same members the other way round applied it. The source's member (S3: a bucket or a folder)
  applies now; several members none of them the source's are refused."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.context import Services
from openprofiles.errors import BadRequest
from openprofiles.flows import models
from openprofiles.flows.listing import listing_key
from openprofiles.flows.models import schedule_interval
from openprofiles.flows.runs import list_runs
from openprofiles.flows.service import _kept_for, run_due_flows, run_flow

from .test_flows_failed_items import EVENT, TYPE, counts, jsonl, letters, user
from .test_flows_templates import D, flow_definition, put_flow


def scheduled(expression: str) -> dict[str, Any]:
    return {
        "TriggerType": "Scheduled",
        "TriggerProperties": {"Scheduled": {"ScheduleExpression": expression}},
    }


@pytest.mark.parametrize(
    "expression",
    ["rate(3651 days)", "rate(87601 hours)", "rate(3000000 days)", f"rate({'9' * 200} days)"],
)
def test_an_interval_beyond_the_limit_is_refused(
    services: Services, tmp_path: Path, expression: str
) -> None:
    make_domain(services, D)
    with pytest.raises(BadRequest, match="longer than 3650 days"):
        put_flow(
            services,
            "crm",
            TYPE,
            flow_definition("crm", "file://", str(tmp_path), trigger=scheduled(expression)),
        )


def test_the_limit_itself_is_served() -> None:
    assert schedule_interval("rate(3650 days)") == models.MAX_INTERVAL_SECONDS == 3650 * 86400
    assert schedule_interval("rate(525600 minutes)") == 365 * 86400
    # Thousands of digits: refused as too long, not a ValueError from int() (no 500).
    with pytest.raises(BadRequest, match="longer than 3650 days"):
        schedule_interval(f"rate({'9' * 5000} minutes)")
    assert (
        schedule_interval(f"rate({'9' * 5000} minutes)", stored=True) == models.MAX_INTERVAL_SECONDS
    )
    assert schedule_interval("rate(0000005 minutes)") == 300


def test_a_stored_interval_beyond_the_limit_fails_once_not_every_pass(
    services: Services,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "a.jsonl").write_text(jsonl(user(1)))
    # Put as before the limit (no limit then).
    with monkeypatch.context() as before:
        before.setattr(models, "MAX_INTERVAL_SECONDS", 10**20, raising=False)
        put_flow(
            services,
            "crm",
            TYPE,
            flow_definition("crm", "file://", str(folder), trigger=scheduled("rate(3000000 days)")),
        )
    now = datetime.now(UTC)

    # Due (never run): its run reads the definition and refuses it, saying why, once.
    [run] = run_due_flows(services, now=now)
    assert (run.trigger, run.status) == ("Scheduled", "FAILED")
    assert "longer than 3650 days" in (run.error or "")
    # Then not due for the ten years its interval is cut to: no run, no error.
    for i in range(1, 4):
        assert run_due_flows(services, now=now + timedelta(seconds=10 * i)) == []
    assert run_due_flows(services, now=now + timedelta(days=3649)) == []
    assert [r.levelname for r in caplog.records if r.levelno >= logging.ERROR] == []
    with services.read() as tx:
        assert len(list_runs(tx, domain_name=D, flow_name="crm")) == 1


@pytest.mark.parametrize(
    "operators",
    [
        {"Marketo": "NO_OP", "S3": "VALIDATE_NON_NULL"},
        {"S3": "VALIDATE_NON_NULL", "Marketo": "NO_OP"},
        # One member alone is the operator, whichever connector it names.
        {"Zendesk": "VALIDATE_NON_NULL"},
    ],
)
def test_the_operator_of_the_source_connector_applies(
    services: Services, tmp_path: Path, operators: dict[str, str]
) -> None:
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "a.jsonl").write_text(jsonl(user(1, tier=None), user(2, tier="gold")))
    task = {"TaskType": "Validate", "SourceFields": ["tier"], "ConnectorOperator": operators}
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder), tasks=[task]))

    run = run_flow(services, domain_name=D, flow_name="crm")

    assert counts(run) == ("COMPLETED", 1, 2, 1, 1)
    [letter] = letters(services)
    assert "VALIDATE_NON_NULL failed" in letter.reason


def test_several_operators_none_of_the_source_are_refused(
    services: Services, tmp_path: Path
) -> None:
    make_domain(services, D)
    task = {
        "TaskType": "Validate",
        "SourceFields": ["tier"],
        "ConnectorOperator": {"Marketo": "NO_OP", "Zendesk": "VALIDATE_NON_NULL"},
    }
    with pytest.raises(BadRequest, match=r"sets Marketo, Zendesk but not S3"):
        put_flow(
            services, "crm", TYPE, flow_definition("crm", "file://", str(tmp_path), tasks=[task])
        )


@pytest.mark.parametrize(
    "expression",
    # Zeros and digits of other scripts: \d took them, and "٠" passed the check of N >= 1
    # made by its digits, giving an interval of 0 (a run every watcher pass).
    ["rate(٠ minutes)", "rate(０ minutes)", "rate(٠٠ days)", "rate(٣ minutes)"],
)
def test_an_interval_in_digits_other_than_ascii_is_refused(expression: str) -> None:
    with pytest.raises(BadRequest, match="is not supported"):
        schedule_interval(expression)
    with pytest.raises(BadRequest, match="is not supported"):
        schedule_interval(expression, stored=True)


def test_stored_operators_none_of_the_source_fail_the_flow_once_saying_why(
    services: Services,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A definition PutIntegration took before several members none of the source's were
    refused is read by the watcher (stored), so the flow is not passed over for ever, its runs
    empty and the log its only word: its run refuses it, once, saying why — and warns once, as
    it records that run (it warned "could not run" every pass). What the process keeps of the
    flow between passes includes its listing (`_kept_for` read the definition as PutIntegration
    does, failed, and dropped the listing and its stuck-warning limit every pass)."""
    from openprofiles.integrations.service import find_flow_integration
    from openprofiles.ui.integration_pages import _row

    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "a.jsonl").write_text(jsonl(user(1)))
    task = {
        "TaskType": "Validate",
        "SourceFields": ["tier"],
        "ConnectorOperator": {"Marketo": "VALIDATE_NUMERIC", "Zendesk": "VALIDATE_NON_NULL"},
    }
    definition = flow_definition("crm", "file://", str(folder), trigger=EVENT, tasks=[task])
    with monkeypatch.context() as before:  # as PutIntegration took it then: the first member
        before.setattr(models, "_operator", lambda operators, connector, **_: "VALIDATE_NUMERIC")
        put_flow(services, "crm", TYPE, definition)
    with services.read() as tx:  # the admin page's row: its trigger, not unreadable
        found = find_flow_integration(tx, domain_name=D, flow_name="crm")
        assert found is not None and _row(tx, found).trigger_type == "Event"
        flow = models.parse_flow_definition(found.flow_definition or {}, stored=True)
    assert listing_key(services, D, flow) in _kept_for(services, found)
    now = datetime.now(UTC)
    caplog.set_level(logging.WARNING, logger="openprofiles")

    [run] = run_due_flows(services, now=now)
    assert (run.trigger, run.status) == ("Event", "FAILED")
    assert "sets Marketo, Zendesk but not S3" in (run.error or "")
    for i in range(1, 4):
        assert run_due_flows(services, now=now + timedelta(seconds=10 * i)) == []
    with services.read() as tx:
        assert len(list_runs(tx, domain_name=D, flow_name="crm")) == 1
    could_not_run = [r for r in caplog.records if "could not run" in r.getMessage()]
    assert len(could_not_run) == 1, [r.getMessage() for r in could_not_run]

    # Another reason, while that FAILED run is still the newest (the definition put again,
    # with other members): recorded by no run, so logged, once (it was said by nothing at all).
    task["ConnectorOperator"] = {"Marketo": "VALIDATE_NUMERIC", "Salesforce": "VALIDATE_NON_NULL"}
    definition = flow_definition("crm", "file://", str(folder), trigger=EVENT, tasks=[task])
    with monkeypatch.context() as before:
        before.setattr(models, "_operator", lambda operators, connector, **_: "VALIDATE_NUMERIC")
        put_flow(services, "crm", TYPE, definition)
    caplog.clear()
    for i in range(4, 8):
        assert run_due_flows(services, now=now + timedelta(seconds=10 * i)) == []
    could_not_run = [r for r in caplog.records if "could not run" in r.getMessage()]
    assert len(could_not_run) == 1, [r.getMessage() for r in could_not_run]


def test_a_start_failure_is_logged_again_once_a_run_came_after_it(
    services: Services,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The watcher logs a start failure once for each reason; a run started after it makes the
    same reason news again (it was remembered for ever: refused again after a run and a failed
    listing, the flow neither recorded nor logged why it did not start)."""
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "a.jsonl").write_text(jsonl(user(1)))
    task: dict[str, Any] = {"TaskType": "Validate", "SourceFields": ["tier"]}

    def put(operators: dict[str, str], *, stored_only: bool) -> None:
        task["ConnectorOperator"] = operators
        definition = flow_definition("crm", "file://", str(folder), trigger=EVENT, tasks=[task])
        with monkeypatch.context() as before:
            if stored_only:  # as PutIntegration took it then: the first member
                before.setattr(
                    models, "_operator", lambda operators, connector, **_: "VALIDATE_NUMERIC"
                )
            put_flow(services, "crm", TYPE, definition)

    def logged(at: int) -> int:
        caplog.clear()
        run_due_flows(services, now=now + timedelta(seconds=10 * at))
        return len([r for r in caplog.records if "could not run" in r.getMessage()])

    ambiguous = {"Marketo": "VALIDATE_NUMERIC", "Zendesk": "VALIDATE_NON_NULL"}
    put(ambiguous, stored_only=True)
    now = datetime.now(UTC)
    caplog.set_level(logging.WARNING, logger="openprofiles")
    assert logged(0) == 1  # its FAILED run recorded
    put({"S3": "VALIDATE_NUMERIC"}, stored_only=False)
    assert logged(1) == 0  # it ran
    folder.rename(tmp_path / "away")
    assert logged(2) == 0  # a FAILED run: its source cannot be listed
    (tmp_path / "away").rename(folder)
    (folder / "b.jsonl").write_text(jsonl(user(2)))
    put(ambiguous, stored_only=True)

    assert logged(3) == 1
    with services.read() as tx:
        statuses = [run.status for run in list_runs(tx, domain_name=D, flow_name="crm")]
    assert sorted(statuses) == ["COMPLETED", "FAILED", "FAILED"]
