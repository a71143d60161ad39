"""A run and what changes its flow under it — on SQLite and PostgreSQL.

* The flow put again while a run goes (PutIntegration on the same flow is an update: the same
  uri and created_at) with another definition or object type: the run used to go on with the
  old one, ingest the rest as the old type (even one deleted meanwhile) and checkpoint it, so the
  new definition never read those items. It now ends FAILED without checkpointing; the same
  definition put again changes nothing.
* A run taken over (silent for STALE_AFTER) used to be stored as stopped because "its process
  ended", while it may still be going: its stored reason now says what is known, and names the
  run that took the flow over.
* A run listing its source for longer than STALE_AFTER (a huge bucket) used to be taken over
  before its listing ended: it now renews its claim while it lists.
* A flow's claim finds its RUNNING run through an index, and a watcher's pass over a Scheduled
  flow that is not due makes no source and takes no lock.

"Another process" is a second Services on the same database (`other`), acting at a precise
moment of the run (`Hooked`, `SlowListing`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, inspect, select

from openprofiles.app import build_services
from openprofiles.context import Services
from openprofiles.flows import claims as flow_claims
from openprofiles.flows import listing as flow_listing
from openprofiles.flows import runs as flow_runs
from openprofiles.flows import service as flows
from openprofiles.flows import triggers as flow_triggers
from openprofiles.flows.models import FlowRun
from openprofiles.flows.sources import FlowSource, FolderSource, ItemStream, SourceItem
from openprofiles.integrations.service import find_flow_integration, put_integration
from openprofiles.object_types.service import delete_object_type, put_object_type
from openprofiles.settings import Settings
from openprofiles.store.schema import flow_run

from .hooked_source import Hooked
from .test_flows_failed_items import EVENT, TYPE, counts, ingested
from .test_flows_one_run_at_a_time import age, export, runs, stored_status
from .test_flows_templates import D, flow_definition

OTHER_TYPE = "Other"
SCHEDULED = {
    "TriggerType": "Scheduled",
    "TriggerProperties": {"Scheduled": {"ScheduleExpression": "rate(15 minutes)"}},
}


@pytest.fixture
def other(settings: Settings) -> Iterator[Services]:
    """Another process on the same database."""
    built = build_services(settings)
    try:
        yield built
    finally:
        built.database.dispose()


class SlowListing:
    """A source whose listing calls `on_list()` first (a listing that takes long)."""

    def __init__(self, inner: FlowSource, on_list: Callable[[], None]) -> None:
        self.inner, self.on_list = inner, on_list

    def items(self) -> list[SourceItem]:
        self.on_list()
        return self.inner.items()

    def open(self, key: str) -> ItemStream:
        return self.inner.open(key)

    def describe(self, key: str) -> str:
        return self.inner.describe(key)


def stored_error(services: Services, run_id: str) -> str | None:
    with services.read() as tx:
        return flow_runs.get_run(tx, domain_name=D, run_id=run_id).error


def other_type(services: Services) -> None:
    with services.write() as tx:
        put_object_type(
            tx,
            domain_name=D,
            name=OTHER_TYPE,
            params={
                "Description": "other",
                "AllowProfileCreation": True,
                "Fields": {"id": {"Source": "_source.id"}},
                "Keys": {
                    "otherId": [
                        {"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["id"]}
                    ]
                },
            },
        )


def put_again(services: Services, folder: Path, type_name: str, **more: Any) -> None:
    with services.write() as tx:
        put_integration(
            tx,
            domain_name=D,
            uri=None,
            object_type_name=type_name,
            flow_definition=flow_definition("crm", "file://", str(folder), trigger=EVENT, **more),
        )


def run_hooked(services: Services, folder: Path, on_b: Callable[[], None]) -> FlowRun:
    """Run the flow, `on_b` called when b.jsonl is opened (a.jsonl is read and checkpointed)."""
    source = Hooked(FolderSource(services.settings, str(folder)), {"b.jsonl": on_b})
    return flows.run_flow(services, domain_name=D, flow_name="crm", source=source)


def test_a_flow_put_again_with_another_type_mid_run_stops_the_run_without_checkpointing(
    services: Services, tmp_path: Path
) -> None:
    folder = export(services, tmp_path)
    other_type(services)
    with services.read() as tx:
        before = find_flow_integration(tx, domain_name=D, flow_name="crm")

    run = run_hooked(services, folder, lambda: put_again(services, folder, OTHER_TYPE))
    with services.read() as tx:
        after = find_flow_integration(tx, domain_name=D, flow_name="crm")
    # An update: the run's check of uri and created_at alone cannot tell.
    assert before and after and before.created_at == after.created_at
    assert after.object_type_name == OTHER_TYPE

    assert run.status == "FAILED" and run.items_read == 1
    assert run.error is not None and "changed (PutIntegration)" in run.error
    assert stored_error(services, run.run_id) == run.error
    # User 3 (b.jsonl, opened after the flow was put again) was not ingested as the old type...
    assert ingested(services, 1, 2, 3) == [1, 2]
    # ...nor b.jsonl checkpointed: the new definition's incremental run reads it, as its type.
    again = flows.run_flow(services, domain_name=D, flow_name="crm", complete=False)
    assert counts(again) == ("COMPLETED", 1, 1, 1, 0)
    assert ingested(services, 3) == []


def test_the_old_type_deleted_after_the_flow_moved_off_it_gets_nothing_from_the_run(
    services: Services, tmp_path: Path
) -> None:
    """Put again as another type, then DeleteProfileObjectType of the old one (which no longer
    disables the flow): the run used to ingest the rest into the deleted type."""
    folder = export(services, tmp_path)
    other_type(services)

    def move_and_delete_old() -> None:
        put_again(services, folder, OTHER_TYPE)
        with services.write() as tx:
            delete_object_type(tx, domain_name=D, name=TYPE)
        assert ingested(services, 1, 2, 3) == []

    run = run_hooked(services, folder, move_and_delete_old)
    assert run.status == "FAILED"
    assert run.error is not None and "changed (PutIntegration)" in run.error
    # Nothing brought the deleted type's data back.
    assert ingested(services, 1, 2, 3) == []


def test_the_same_definition_put_again_mid_run_changes_nothing(
    services: Services, tmp_path: Path
) -> None:
    folder = export(services, tmp_path)
    run = run_hooked(services, folder, lambda: put_again(services, folder, TYPE))
    assert counts(run) == ("COMPLETED", 2, 4, 3, 1)
    assert ingested(services, 1, 2, 3) == [1, 2, 3]


def test_new_tasks_put_mid_run_stop_the_run(services: Services, tmp_path: Path) -> None:
    """Another definition, same type: the rest would be read with the tasks it no longer has."""
    folder = export(services, tmp_path)
    tasks = [
        {
            "TaskType": "Filter",
            "SourceFields": ["id"],
            "ConnectorOperator": {"S3": "PROJECTION"},
        }
    ]
    run = run_hooked(services, folder, lambda: put_again(services, folder, TYPE, tasks=tasks))
    assert run.status == "FAILED" and run.items_read == 1
    assert run.error is not None and "changed (PutIntegration)" in run.error
    assert ingested(services, 3) == []


def test_a_run_taken_over_while_listing_is_stored_as_taken_over_not_as_ended(
    services: Services, other: Services, tmp_path: Path
) -> None:
    folder = export(services, tmp_path)
    took: list[FlowRun] = []

    def slow_listing() -> None:
        if took:
            return
        [mine] = runs(services)
        # Its listing took longer than STALE_AFTER (a huge bucket): another run takes over.
        age(services, mine.run_id, flow_runs.STALE_AFTER + timedelta(seconds=1))
        took.append(flows.run_flow(other, domain_name=D, flow_name="crm"))

    source = SlowListing(FolderSource(services.settings, str(folder)), slow_listing)
    run = flows.run_flow(services, domain_name=D, flow_name="crm", source=source)
    assert counts(took[0])[0] == "COMPLETED"
    assert run.status == "FAILED" and stored_status(services, run.run_id) == "FAILED"
    assert run.error is not None and "took the flow over" in run.error
    stored = stored_error(services, run.run_id)
    # Its process had not ended: the stored reason does not say it had, and names the taker.
    assert stored is not None and "process ended" not in stored
    assert f"run {took[0].run_id} took the flow over" in stored
    assert "made no progress for 15 minutes" in stored


def test_a_flows_running_run_is_found_by_an_index(services: Services) -> None:
    indexes = {i["name"]: i for i in inspect(services.database.engine).get_indexes("flow_run")}
    running = indexes.get("ix_flow_run_running")
    assert running is not None and running["column_names"] == ["domain_name", "flow_name"]
    where = next(iter(running["dialect_options"].values()))
    assert "RUNNING" in str(getattr(where, "text", where))


def test_a_watcher_pass_over_a_scheduled_flow_not_due_makes_no_source_and_takes_no_lock(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export(services, tmp_path, trigger=SCHEDULED)
    now = datetime.now(UTC)
    [first] = flows.run_due_flows(services, now=now)
    assert first.status == "COMPLETED"

    made: list[str] = []
    source_for = flow_triggers.source_for

    def counted(*args: Any, **kwargs: Any) -> FlowSource:
        made.append("source")
        return source_for(*args, **kwargs)

    monkeypatch.setattr(flow_triggers, "source_for", counted)
    statements: list[str] = []

    def record(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    engine = services.database.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        assert flows.run_due_flows(services, now=now + timedelta(minutes=5)) == []
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert made == []
    # Neither the claim's lock of the integration nor its look for the flow's RUNNING run.
    assert not [s for s in statements if "FOR UPDATE" in s or "FOR SHARE" in s]
    assert not [s for s in statements if "flow_run.status =" in s]
    # Once due, the pass runs it (made its source, under the claim).
    [second] = flows.run_due_flows(services, now=now + timedelta(minutes=16))
    assert second.status == "COMPLETED" and made == ["source"]


def progress_at(services: Services, run_id: str) -> datetime:
    with services.read() as tx:
        return tx.conn.execute(
            select(flow_run.c.progress_at).where(flow_run.c.run_id == run_id)
        ).scalar_one()


def test_a_run_listing_for_longer_than_stale_after_keeps_its_flow(
    services: Services, other: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listing used to commit nothing until it ended: one longer than STALE_AFTER (a huge
    bucket) was taken over before it ended, and with two watchers almost no run completed. The
    run now renews its claim while it lists."""
    folder = export(services, tmp_path)
    # raising=False: the same test shows what code without it did.
    monkeypatch.setattr(flow_listing, "RENEW_EVERY", timedelta(seconds=0.05), raising=False)
    refused: list[Exception] = []

    def slow_listing() -> None:
        if refused:
            return
        [mine] = runs(services)
        # As if it had been listing for longer than STALE_AFTER...
        age(services, mine.run_id, flow_runs.STALE_AFTER + timedelta(seconds=1))
        aged = progress_at(services, mine.run_id)
        # ...while it renews its claim (at most every RENEW_EVERY): wait for the renewal.
        deadline = time.monotonic() + 10
        while progress_at(services, mine.run_id) == aged and time.monotonic() < deadline:
            threading.Event().wait(0.01)
        assert progress_at(services, mine.run_id) > aged
        # Another process's run finds the flow held.
        with pytest.raises(flow_claims.RunInProgress) as exc:
            flows.run_flow(other, domain_name=D, flow_name="crm")
        refused.append(exc.value)

    source = SlowListing(FolderSource(services.settings, str(folder)), slow_listing)
    run = flows.run_flow(services, domain_name=D, flow_name="crm", source=source)
    assert refused
    assert counts(run) == ("COMPLETED", 2, 4, 3, 1)
    assert [r.run_id for r in runs(services)] == [run.run_id]
