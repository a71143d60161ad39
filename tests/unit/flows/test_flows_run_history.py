"""A flow's run history is bounded — on SQLite and PostgreSQL.

Every run used to stay for ever: a Scheduled flow every 15 minutes adds 35,000 rows a year,
each FAILED one with a sealed error that can quote a customer's value. Now a flow keeps its
newest `RUNS_KEPT` finished runs of each trigger, so OnDemand runs, however many, never take
away the newest Scheduled run that says when the next one is due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.context import Services
from openprofiles.flows import runs as flow_runs
from openprofiles.flows import service as flows
from openprofiles.integrations.service import put_integration

from .test_flows_failed_items import TYPE, jsonl, user
from .test_flows_templates import D, flow_definition

SCHEDULED = {
    "TriggerType": "Scheduled",
    "TriggerProperties": {"Scheduled": {"ScheduleExpression": "rate(15 minutes)"}},
}
KEPT = 3


def scheduled_flow(services: Services, tmp_path: Path) -> None:
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "a.jsonl").write_text(jsonl(user(1)))
    with services.write() as tx:
        put_integration(
            tx,
            domain_name=D,
            uri="crm-export",
            object_type_name=TYPE,
            flow_definition=flow_definition("crm", "file://", str(folder), trigger=SCHEDULED),
        )


def runs(services: Services, trigger: str) -> list[str]:
    with services.read() as tx:
        every = flow_runs.list_runs(tx, domain_name=D, flow_name="crm", limit=100)
    return [r.run_id for r in every if r.trigger == trigger]


def test_a_flow_keeps_its_newest_runs_of_each_trigger(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flow_runs, "RUNS_KEPT", KEPT)
    scheduled_flow(services, tmp_path)
    start = datetime.now(UTC)
    [first] = flows.run_due_flows(services, now=start)
    assert first.trigger == "Scheduled"

    on_demand = [
        flows.run_flow(services, domain_name=D, flow_name="crm").run_id for _ in range(KEPT + 3)
    ]
    # Newest first; the oldest three OnDemand runs are gone, the Scheduled one stays.
    assert runs(services, "OnDemand") == on_demand[::-1][:KEPT]
    assert runs(services, "Scheduled") == [first.run_id]
    # So the schedule still knows its last run: nothing is due within the interval.
    assert flows.run_due_flows(services, now=start + timedelta(minutes=5)) == []

    scheduled = [first.run_id]
    for n in range(1, KEPT + 2):
        [run] = flows.run_due_flows(services, now=start + timedelta(minutes=16 * n))
        scheduled.append(run.run_id)
    assert runs(services, "Scheduled") == scheduled[::-1][:KEPT]
    assert runs(services, "OnDemand") == on_demand[::-1][:KEPT]
