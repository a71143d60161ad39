"""Scheduled and Event runs leave a file of a folder that changed within the settle time
(`flow_folder_settle_seconds`, default 5 s) for a later run: a file still being written would
otherwise be read with its last line cut off, that line dead-lettered, and the letter kept after
the completed file was read again. OnDemand runs read it anyway.

The settle time is measured against the clock when the folder is listed. The tests set the
files' modification times a second or two minutes back, against a settle time of a minute, so
no test waits for the clock and none depends on how fast the machine runs them."""

from __future__ import annotations

import dataclasses
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.context import Services
from openprofiles.flows.service import run_due_flows, run_flow
from openprofiles.settings import Settings

from .test_flows_failed_items import EVENT, TYPE, counts, ingested, jsonl, letters, user
from .test_flows_templates import D, flow_definition, put_flow

SETTLE = 60
JUST_NOW = -1
SETTLED = -2 * SETTLE
SCHEDULED_COMPLETE = {
    "TriggerType": "Scheduled",
    "TriggerProperties": {
        "Scheduled": {"ScheduleExpression": "rate(1 hours)", "DataPullMode": "Complete"}
    },
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The flows' conftest turns the settle time off.
    return dataclasses.replace(settings, flow_folder_settle_seconds=SETTLE)


def changed(path: Path, seconds_from_now: float, text: str | None = None) -> None:
    """Write `text` (if given) to `path`, and date the change `seconds_from_now`."""
    if text is not None:
        path.write_text(text)
    at = time.time() + seconds_from_now
    os.utime(path, (at, at))


def test_the_default_settle_time_is_five_seconds() -> None:
    assert Settings().flow_folder_settle_seconds == 5


def test_an_event_flow_waits_for_a_file_being_written_and_dead_letters_nothing(
    services: Services, tmp_path: Path
) -> None:
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder), trigger=EVENT))
    complete = jsonl(user(1), user(2))
    # Half of the file is there: its second line is cut off.
    export = folder / "users.jsonl"
    changed(export, JUST_NOW, complete[: len(complete) - 20])
    now = datetime.now(UTC)
    assert run_due_flows(services, now=now) == []
    # The writer finishes: the file changed again, and waits again.
    changed(export, JUST_NOW, complete)
    assert run_due_flows(services, now=now + timedelta(minutes=1)) == []
    assert ingested(services, 1, 2) == []
    # Unchanged for longer than the settle time: read whole, nothing dead-lettered.
    changed(export, SETTLED)
    [run] = run_due_flows(services, now=now + timedelta(minutes=2))
    assert counts(run) == ("COMPLETED", 1, 2, 2, 0)
    assert ingested(services, 1, 2) == [1, 2]
    assert letters(services) == []
    assert run_due_flows(services, now=now + timedelta(minutes=3)) == []


def test_settling_is_judged_by_the_clock_not_by_the_time_given_for_the_pass(
    services: Services, tmp_path: Path
) -> None:
    """`run_due_flows` takes one `now` for all its flows, which run one after another: a file
    changed while earlier flows ran is newer than that `now`, and still being written."""
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder), trigger=EVENT))
    changed(folder / "users.jsonl", JUST_NOW, jsonl(user(1)))
    # The pass began long before the file changed (earlier flows took that long).
    assert run_due_flows(services, now=datetime.now(UTC) - timedelta(seconds=2 * SETTLE)) == []
    assert ingested(services, 1) == []


def test_a_scheduled_run_reads_the_settled_files_and_leaves_the_others_for_the_next(
    services: Services, tmp_path: Path
) -> None:
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    changed(folder / "a.jsonl", SETTLED, jsonl(user(1)))
    changed(folder / "b.jsonl", JUST_NOW, jsonl(user(2)))
    put_flow(
        services,
        "crm",
        TYPE,
        flow_definition("crm", "file://", str(folder), trigger=SCHEDULED_COMPLETE),
    )
    now = datetime.now(UTC)
    [run] = run_due_flows(services, now=now)
    assert counts(run) == ("COMPLETED", 1, 1, 1, 0)
    assert ingested(services, 1, 2) == [1]
    # Not checkpointed: the next scheduled run finds it (Incremental runs would too).
    changed(folder / "b.jsonl", SETTLED)
    [run] = run_due_flows(services, now=now + timedelta(hours=2))
    assert counts(run) == ("COMPLETED", 2, 2, 2, 0)
    assert ingested(services, 1, 2) == [1, 2]


def test_an_on_demand_run_reads_a_file_changed_just_now(services: Services, tmp_path: Path) -> None:
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    changed(folder / "a.jsonl", JUST_NOW, jsonl(user(1)))
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder), trigger=EVENT))
    run = run_flow(services, domain_name=D, flow_name="crm")
    assert counts(run) == ("COMPLETED", 1, 1, 1, 0)


def test_a_file_dated_far_ahead_of_the_clock_is_not_held_back(
    services: Services, tmp_path: Path
) -> None:
    # A network folder's server with its clock an hour fast: its files are not "being written"
    # for an hour; one dated a little ahead may be.
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    changed(folder / "a.jsonl", 3600, jsonl(user(1)))
    changed(folder / "b.jsonl", 2, jsonl(user(2)))
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder), trigger=EVENT))
    [run] = run_due_flows(services, now=datetime.now(UTC))
    assert counts(run) == ("COMPLETED", 1, 1, 1, 0)
    assert ingested(services, 1, 2) == [1]


def test_the_settle_time_is_read_from_the_environment_and_checked() -> None:
    env = {"OPENPROFILES_FLOW_FOLDER_SETTLE_SECONDS": "2.5"}
    assert Settings.from_env(env).flow_folder_settle_seconds == 2.5
    off = Settings.from_env({"OPENPROFILES_FLOW_FOLDER_SETTLE_SECONDS": "0"})
    assert off.flow_folder_settle_seconds == 0
    with pytest.raises(ValueError, match="OPENPROFILES_FLOW_FOLDER_SETTLE_SECONDS must be"):
        Settings.from_env({"OPENPROFILES_FLOW_FOLDER_SETTLE_SECONDS": "-1"})
