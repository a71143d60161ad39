"""A flow runs once at a time, across processes — on SQLite and PostgreSQL.

Two runs of one flow at once (two `flows watch` workers, the admin pages' run button beside a
watcher) used to both read every new item: counts doubled, every failed record dead-lettered
twice, and an older version of a file could be applied last. A run now claims its flow: an
automatic trigger passes a claimed flow over, a run asked for is refused, and a run whose
process was killed is closed FAILED by the next run once its claim has expired.

"Another process" is a second Services on the same database (its own connections, and on
SQLite its own writer lock), acting at a precise moment of the run (`Hooked`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text, update
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.app import build_services
from openprofiles.cli import main
from openprofiles.context import Services
from openprofiles.errors import BadRequest
from openprofiles.flows import claims as flow_claims
from openprofiles.flows import models as flow_models
from openprofiles.flows import runner as flow_runner
from openprofiles.flows import runs as flow_runs
from openprofiles.flows import service as flows
from openprofiles.flows.models import FlowRun
from openprofiles.flows.sources import FolderSource
from openprofiles.settings import Settings
from openprofiles.store.schema import flow_run

from .hooked_source import Hooked
from .test_flows_failed_items import EVENT, TYPE, cli_storage, counts, jsonl, letters, user
from .test_flows_templates import D, flow_definition, put_flow


@pytest.fixture
def other(settings: Settings) -> Iterator[Services]:
    """Another process on the same database."""
    built = build_services(settings)
    try:
        yield built
    finally:
        built.database.dispose()


def export(services: Services, tmp_path: Path, trigger: dict[str, object] = EVENT) -> Path:
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "a.jsonl").write_text(jsonl(user(1), user(2), {"no": "id"}))
    (folder / "b.jsonl").write_text(jsonl(user(3)))
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder), trigger=trigger))
    return folder


def runs(services: Services) -> list[FlowRun]:
    with services.read() as tx:
        return flow_runs.list_runs(tx, domain_name=D, flow_name="crm")


def stored_status(services: Services, run_id: str) -> str:
    """The status column itself (list_runs shows a silent RUNNING run FAILED already)."""
    with services.read() as tx:
        return str(
            tx.conn.execute(select(flow_run.c.status).where(flow_run.c.run_id == run_id)).scalar()
        )


def age(services: Services, run_id: str, silent_for: timedelta) -> None:
    """As if the run had made no progress for `silent_for` (its process killed meanwhile)."""
    with services.write() as tx:
        tx.conn.execute(
            update(flow_run)
            .where(flow_run.c.run_id == run_id)
            .values(progress_at=tx.now - silent_for, started_at=tx.now - silent_for)
        )


def test_a_watcher_passes_over_a_flow_another_process_runs(
    services: Services, other: Services, tmp_path: Path
) -> None:
    folder = export(services, tmp_path)
    seen: dict[str, list[FlowRun]] = {}

    def other_watcher() -> None:
        seen["pass"] = flows.run_due_flows(other, now=datetime.now(UTC))

    source = Hooked(FolderSource(services.settings, str(folder)), {"a.jsonl": other_watcher})
    run = flows.run_flow(services, domain_name=D, flow_name="crm", trigger="Event", source=source)

    assert seen["pass"] == []
    assert counts(run) == ("COMPLETED", 2, 4, 3, 1)
    assert [r.run_id for r in runs(services)] == [run.run_id]
    [letter] = letters(services)
    assert letter.attempts == 1


def test_a_run_asked_for_while_another_runs_is_refused(
    services: Services, other: Services, tmp_path: Path
) -> None:
    folder = export(services, tmp_path)
    refused: list[BadRequest] = []
    cli: list[tuple[int, str]] = []

    def ask() -> None:
        # The admin pages' button, in another process.
        with pytest.raises(BadRequest) as raised:
            flows.run_flow(other, domain_name=D, flow_name="crm")
        refused.append(raised.value)
        # `openprofiles flows run`.
        done = CliRunner().invoke(main, ["flows", "run", "crm", *cli_storage(services)])
        cli.append((done.exit_code, done.output))

    source = Hooked(FolderSource(services.settings, str(folder)), {"b.jsonl": ask})
    run = flows.run_flow(services, domain_name=D, flow_name="crm", source=source)

    [error] = refused
    assert error.message.startswith(f"A run of the flow crm is in progress in domain {D} (run ")
    assert run.run_id in error.message
    [(exit_code, output)] = cli
    assert exit_code == 1 and f"Error: A run of the flow crm is in progress in domain {D}" in output
    assert counts(run) == ("COMPLETED", 2, 4, 3, 1)
    assert [r.run_id for r in runs(services)] == [run.run_id]
    # Once it has ended, a run asked for goes ahead.
    assert flows.run_flow(services, domain_name=D, flow_name="crm").status == "COMPLETED"


class Killed(BaseException):
    """The run's process ends at once: nothing of the run's own handling runs."""


def test_a_killed_run_holds_its_flow_until_its_claim_expires_then_is_closed_failed(
    services: Services, tmp_path: Path
) -> None:
    folder = export(services, tmp_path)

    def kill() -> None:
        raise Killed

    source = Hooked(FolderSource(services.settings, str(folder)), {"b.jsonl": kill})
    with pytest.raises(Killed):
        flows.run_flow(services, domain_name=D, flow_name="crm", source=source)
    [killed] = runs(services)
    assert (killed.status, killed.records_ingested) == ("RUNNING", 2)

    # While its claim holds (it may be a live run, slow), the flow is not run again.
    with pytest.raises(BadRequest, match="is in progress"):
        flows.run_flow(services, domain_name=D, flow_name="crm")
    assert flows.run_due_flows(services, now=datetime.now(UTC)) == []

    age(services, killed.run_id, flow_runs.STALE_AFTER + timedelta(seconds=1))
    [run] = flows.run_due_flows(services, now=datetime.now(UTC))
    # b.jsonl, which the killed run had not read.
    assert counts(run) == ("COMPLETED", 1, 1, 1, 0)
    assert stored_status(services, killed.run_id) == "FAILED"
    [_, closed] = runs(services)
    assert closed.run_id == killed.run_id and closed.finished_at is not None
    assert closed.error is not None and closed.error.startswith("The run made no progress for")
    # It names the run that took the flow over.
    assert f"run {run.run_id} took the flow over" in closed.error


def test_a_run_that_lost_its_claim_stops_without_applying_more(
    services: Services, other: Services, tmp_path: Path
) -> None:
    """A run silent for longer than STALE_AFTER (a stalled read) is taken over; when it wakes,
    it finds it no longer holds the flow, and stops."""
    folder = export(services, tmp_path)
    took_over: list[FlowRun] = []

    def stall_then_taken_over() -> None:
        [mine] = runs(services)
        age(services, mine.run_id, flow_runs.STALE_AFTER + timedelta(seconds=1))
        took_over.append(flows.run_flow(other, domain_name=D, flow_name="crm"))

    source = Hooked(
        FolderSource(services.settings, str(folder)), {"b.jsonl": stall_then_taken_over}
    )
    run = flows.run_flow(services, domain_name=D, flow_name="crm", source=source)

    assert run.status == "FAILED" and run.error is not None
    assert "another run took the flow over" in run.error
    assert (run.items_read, run.records_ingested) == (1, 2)
    # The newer run read what the stalled one had not checkpointed: b.jsonl.
    [newer] = took_over
    assert counts(newer) == ("COMPLETED", 1, 1, 1, 0)
    assert stored_status(services, run.run_id) == "FAILED"
    assert [r.run_id for r in runs(services)] == [newer.run_id, run.run_id]


@pytest.mark.parametrize("settings", ["postgres"], indirect=True)
def test_two_claims_at_once_queue_on_postgresql(
    services: Services, other: Services, tmp_path: Path
) -> None:
    """The claim is atomic across processes: a second one waits for the first to commit, then
    finds its run. (SQLite's one writer serialises them: its claims never overlap.)"""
    export(services, tmp_path)
    with services.read() as tx:
        from openprofiles.integrations.service import find_flow_integration

        found = find_flow_integration(tx, domain_name=D, flow_name="crm")
    assert found is not None
    second: dict[str, list[FlowRun]] = {}
    watcher = threading.Thread(
        target=lambda: second.setdefault("runs", flows.run_due_flows(other, now=datetime.now(UTC)))
    )
    with services.write() as tx:
        flow_claims.claim(tx, found, "OnDemand")
        watcher.start()
        # Until the watcher's claim waits for this one's lock (or give up after 20 s, and
        # let the assertion below tell).
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with other.read() as look:
                waiting = look.conn.execute(
                    text(
                        "SELECT count(*) FROM pg_locks WHERE NOT granted AND database = "
                        "(SELECT oid FROM pg_database WHERE datname = current_database())"
                    )
                ).scalar_one()
            if waiting:
                break
            time.sleep(0.01)
    watcher.join(60)
    assert second["runs"] == []
    [only] = runs(services)
    assert (only.trigger, only.status) == ("OnDemand", "RUNNING")


def test_an_event_run_that_finds_its_items_read_meanwhile_is_dropped(
    services: Services, other: Services, tmp_path: Path
) -> None:
    """A watcher saw new items, and another process's run read them before the watcher claimed
    the flow: listed again under the claim, nothing is new, and no empty run is recorded."""
    folder = export(services, tmp_path)
    with services.read() as tx:
        from openprofiles.integrations.service import find_flow_integration

        found = find_flow_integration(tx, domain_name=D, flow_name="crm")
    assert found is not None
    [first] = flows.run_due_flows(other, now=datetime.now(UTC))
    flow = flow_models.parse_flow_definition(found.flow_definition or {})
    with services.write() as tx:
        held = flow_claims.claim(tx, found, "Event")
    assert held is not None
    source = FolderSource(services.settings, str(folder))
    assert flow_runner.run_claimed(services, held, flow, source, drop_if_empty=True) is None
    assert [r.run_id for r in runs(services)] == [first.run_id]
