"""An Event flow whose source cannot be listed records one FAILED run and logs it — on SQLite and
PostgreSQL.

PutIntegration checks only that a folder lies under a flow folder root, not that it exists: a
typo in the path, a bucket deleted, credentials refused. A Scheduled flow on such a source
records a FAILED run saying why; an Event flow's check swallowed the source's error and the flow
never ran, with no run and no log line. Now its check records a FAILED run (trigger Event) with
the source's error and logs a warning naming the flow and its domain (not the folder: a path can
be personal data), once: not again on every watcher pass while that failed run is the flow's
newest. Once the source lists new items the flow runs as before, and a source that fails again
after that is recorded again."""

from __future__ import annotations

import logging
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.context import Services
from openprofiles.flows import triggers
from openprofiles.flows.runs import list_runs
from openprofiles.flows.service import run_due_flows

from .test_flows_failed_items import EVENT, TYPE, counts, ingested, jsonl, user
from .test_flows_templates import D, flow_definition, put_flow


def failed_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == triggers.__name__
        and r.levelno == logging.WARNING
        and "could not list its source" in r.getMessage()
    ]


def statuses(services: Services) -> list[tuple[str, str]]:
    """The flow's runs, newest first: (trigger, status)."""
    with services.read() as tx:
        return [(r.trigger, r.status) for r in list_runs(tx, domain_name=D, flow_name="crm")]


def test_an_event_flow_on_a_missing_folder_records_one_failed_run(
    services: Services, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=triggers.__name__)
    make_domain(services, D)
    folder = tmp_path / "customer-jane.doe@example.com"  # not made yet: a typo, say
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder), trigger=EVENT))
    now = datetime.now(UTC)

    [run] = run_due_flows(services, now=now)
    assert (run.flow_name, run.trigger, counts(run)) == ("crm", "Event", ("FAILED", 0, 0, 0, 0))
    assert f"The folder {folder} does not exist" in (run.error or "")
    [warning] = failed_warnings(caplog)
    assert f"Flow crm of domain {D} could not list its source" in warning
    assert "jane.doe" not in caplog.text
    # The next passes record no other run, and say nothing more.
    for i in range(1, 4):
        assert run_due_flows(services, now=now + timedelta(seconds=10 * i)) == []
    assert statuses(services) == [("Event", "FAILED")]
    assert len(failed_warnings(caplog)) == 1

    # The folder is made, with a file: the flow runs.
    folder.mkdir()
    (folder / "a.jsonl").write_text(jsonl(user(1)))
    [run] = run_due_flows(services, now=now + timedelta(minutes=1))
    assert counts(run) == ("COMPLETED", 1, 1, 1, 0)
    assert ingested(services, 1) == [1]
    # Gone again: one more FAILED run, one more warning.
    shutil.rmtree(folder)
    [run] = run_due_flows(services, now=now + timedelta(minutes=2))
    assert run.status == "FAILED" and f"The folder {folder} does not exist" in (run.error or "")
    assert run_due_flows(services, now=now + timedelta(minutes=3)) == []
    assert statuses(services) == [("Event", "FAILED"), ("Event", "COMPLETED"), ("Event", "FAILED")]
    assert len(failed_warnings(caplog)) == 2


def test_passes_after_the_failed_run_take_no_write(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether the flow failed already is asked in a read first: its claim, a write transaction
    (the SQLite writer's lock), is taken only to record the one FAILED run, not every pass."""
    make_domain(services, D)
    folder = tmp_path / "missing"
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder), trigger=EVENT))
    now = datetime.now(UTC)
    [run] = run_due_flows(services, now=now)
    assert run.status == "FAILED"

    writes: list[int] = []
    write = services.write

    def counted_write(*args: object, **kwargs: object) -> object:
        writes.append(1)
        return write(*args, **kwargs)

    monkeypatch.setattr(services, "write", counted_write)
    for i in range(1, 4):
        assert run_due_flows(services, now=now + timedelta(seconds=10 * i)) == []
    assert writes == []
