"""Scheduled and Event runs leave a file of a folder that changed within the settle time
(`flow_folder_settle_seconds`, default 5 s) for a later run: a file still being written would
otherwise be read with its last line cut off, that line dead-lettered, and the letter kept after
the completed file was read again. OnDemand runs read it anyway. The files' modification times
are set explicitly and the runs given their `now`, so no test waits for the clock."""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.context import Services
from openprofiles.flows.service import run_due_flows, run_flow
from openprofiles.settings import Settings

from .test_flows_failed_items import EVENT, TYPE, counts, ingested, jsonl, letters, user
from .test_flows_templates import D, flow_definition, put_flow

SCHEDULED_COMPLETE = {
    "TriggerType": "Scheduled",
    "TriggerProperties": {
        "Scheduled": {"ScheduleExpression": "rate(1 hours)", "DataPullMode": "Complete"}
    },
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The flows' conftest turns the settle time off; these tests are about the default.
    return dataclasses.replace(
        settings, flow_folder_settle_seconds=Settings.flow_folder_settle_seconds
    )


def written_at(path: Path, text: str, at: datetime) -> None:
    path.write_text(text)
    os.utime(path, (at.timestamp(), at.timestamp()))


def test_the_default_settle_time_is_five_seconds() -> None:
    assert Settings().flow_folder_settle_seconds == 5


def test_an_event_flow_waits_for_a_file_being_written_and_dead_letters_nothing(
    services: Services, tmp_path: Path
) -> None:
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder), trigger=EVENT))
    written = datetime.now(UTC)
    complete = jsonl(user(1), user(2))
    # Half of the file is there: its second line is cut off.
    export = folder / "users.jsonl"
    written_at(export, complete[: len(complete) - 20], written)
    assert run_due_flows(services, now=written + timedelta(seconds=1)) == []
    # The writer finishes four seconds later: the file changed again, and waits again.
    finished = written + timedelta(seconds=4)
    written_at(export, complete, finished)
    assert run_due_flows(services, now=finished + timedelta(seconds=4)) == []
    assert ingested(services, 1, 2) == []
    # Five seconds without a change: read whole, nothing dead-lettered.
    [run] = run_due_flows(services, now=finished + timedelta(seconds=5))
    assert counts(run) == ("COMPLETED", 1, 2, 2, 0)
    assert ingested(services, 1, 2) == [1, 2]
    assert letters(services) == []
    assert run_due_flows(services, now=finished + timedelta(minutes=1)) == []


def test_a_scheduled_run_reads_the_settled_files_and_leaves_the_others_for_the_next(
    services: Services, tmp_path: Path
) -> None:
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    now = datetime.now(UTC)
    written_at(folder / "a.jsonl", jsonl(user(1)), now - timedelta(minutes=10))
    written_at(folder / "b.jsonl", jsonl(user(2)), now - timedelta(seconds=2))
    put_flow(
        services,
        "crm",
        TYPE,
        flow_definition("crm", "file://", str(folder), trigger=SCHEDULED_COMPLETE),
    )
    [run] = run_due_flows(services, now=now)
    assert counts(run) == ("COMPLETED", 1, 1, 1, 0)
    assert ingested(services, 1, 2) == [1]
    # Not checkpointed: the next scheduled run finds it (Incremental runs would too).
    [run] = run_due_flows(services, now=now + timedelta(hours=2))
    assert counts(run) == ("COMPLETED", 2, 2, 2, 0)
    assert ingested(services, 1, 2) == [1, 2]


def test_an_on_demand_run_reads_a_file_changed_just_now(services: Services, tmp_path: Path) -> None:
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    written_at(folder / "a.jsonl", jsonl(user(1)), datetime.now(UTC))
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder), trigger=EVENT))
    run = run_flow(services, domain_name=D, flow_name="crm")
    assert counts(run) == ("COMPLETED", 1, 1, 1, 0)


def test_a_file_dated_far_ahead_of_the_clock_is_not_held_back(
    services: Services, tmp_path: Path
) -> None:
    # A network folder's server with its clock an hour fast: its files are not "being written"
    # for an hour.
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    now = datetime.now(UTC)
    written_at(folder / "a.jsonl", jsonl(user(1)), now + timedelta(hours=1))
    written_at(folder / "b.jsonl", jsonl(user(2)), now + timedelta(seconds=2))
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder), trigger=EVENT))
    [run] = run_due_flows(services, now=now)
    assert counts(run) == ("COMPLETED", 1, 1, 1, 0)
    assert ingested(services, 1, 2) == [1]


def test_the_settle_time_is_read_from_the_environment_and_checked() -> None:
    env = {"OPENPROFILES_FLOW_FOLDER_SETTLE_SECONDS": "2.5"}
    assert Settings.from_env(env).flow_folder_settle_seconds == 2.5
    assert (
        Settings.from_env(
            {"OPENPROFILES_FLOW_FOLDER_SETTLE_SECONDS": "0"}
        ).flow_folder_settle_seconds
        == 0
    )
    with pytest.raises(ValueError, match="OPENPROFILES_FLOW_FOLDER_SETTLE_SECONDS must be"):
        Settings.from_env({"OPENPROFILES_FLOW_FOLDER_SETTLE_SECONDS": "-1"})
