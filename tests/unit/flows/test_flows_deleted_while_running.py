"""A flow deleted, or its object type deleted, while it runs or between its runs — on SQLite and
PostgreSQL.

DeleteIntegration used to leave the flow's checkpoints and runs behind: a flow put again under
the same name on the same folder never read the files the deleted one had read, and a Scheduled
one waited out the deleted one's interval. A run in progress ignored it, applied every item
left, ended COMPLETED and wrote checkpoints for a flow that no longer existed. An object type
deleted during a run had the rest of the run dead-lettered and its items checkpointed (so they
were never read again once the type was back), or, for an implicit type, kept ingesting into
the type of a disabled integration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.context import Services
from openprofiles.flows.models import parse_flow_definition
from openprofiles.flows.runs import list_runs
from openprofiles.flows.service import run_due_flows, run_flow
from openprofiles.flows.sources import FolderSource
from openprofiles.flows.triggers import pending_items
from openprofiles.integrations.service import delete_integration, find_flow_integration
from openprofiles.object_types.service import delete_object_type, put_object_type
from openprofiles.profiles.service import SearchCriterion, search_profiles
from openprofiles.store.schema import flow_item, flow_run

from .hooked_source import Hooked
from .test_flows_failed_items import EVENT, TYPE, counts, ingested, jsonl, letters, user
from .test_flows_templates import D, flow_definition, put_flow


def three_files(tmp_path: Path) -> Path:
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "a.jsonl").write_text(jsonl(user(1), user(2)))
    (folder / "b.jsonl").write_text(jsonl(user(3), user(4)))
    (folder / "c.jsonl").write_text(jsonl(user(5), user(6)))
    return folder


def delete_flow(services: Services, name: str) -> None:
    with services.write() as tx:
        found = find_flow_integration(tx, domain_name=D, flow_name=name)
        assert found is not None
        delete_integration(tx, domain_name=D, uri=found.uri)


def rows_of(services: Services, name: str) -> tuple[int, int]:
    """The flow's checkpoints and runs as stored."""
    with services.read() as tx:
        return tuple(  # type: ignore[return-value]
            tx.conn.execute(
                select(func.count()).select_from(t).where(t.c.flow_name == name)
            ).scalar_one()
            for t in (flow_item, flow_run)
        )


def pending(services: Services, definition: dict[str, Any], folder: Path) -> list[str]:
    """The files the flow has not checkpointed."""
    flow = parse_flow_definition(definition)
    source = FolderSource(services.settings, str(folder))
    return [i.key for i in pending_items(services, D, flow, source)]


def test_a_flow_put_again_after_its_deletion_reads_its_folder_afresh(
    services: Services, tmp_path: Path
) -> None:
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "users.jsonl").write_text(jsonl(user(1), user(2)))
    definition = flow_definition("crm", "file://", str(folder), trigger=EVENT)
    put_flow(services, "crm", TYPE, definition)
    [run] = run_due_flows(services, now=datetime.now(UTC))
    assert counts(run) == ("COMPLETED", 1, 2, 2, 0)

    delete_flow(services, "crm")
    assert rows_of(services, "crm") == (0, 0)
    put_flow(services, "crm", TYPE, definition)
    with services.read() as tx:
        assert list_runs(tx, domain_name=D, flow_name="crm") == []
    [run] = run_due_flows(services, now=datetime.now(UTC))
    assert counts(run) == ("COMPLETED", 1, 2, 2, 0)


def test_a_scheduled_flow_put_again_does_not_wait_out_the_deleted_ones_interval(
    services: Services, tmp_path: Path
) -> None:
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "users.jsonl").write_text(jsonl(user(1)))
    schedule = {"ScheduleExpression": "rate(1 days)", "DataPullMode": "Incremental"}
    trigger = {"TriggerType": "Scheduled", "TriggerProperties": {"Scheduled": schedule}}
    definition = flow_definition("crm", "file://", str(folder), trigger=trigger)
    put_flow(services, "crm", TYPE, definition)
    now = datetime.now(UTC)
    [run] = run_due_flows(services, now=now)
    assert run.trigger == "Scheduled"

    delete_flow(services, "crm")
    put_flow(services, "crm", TYPE, definition)
    [run] = run_due_flows(services, now=now + timedelta(minutes=1))
    assert (run.trigger, counts(run)) == ("Scheduled", ("COMPLETED", 1, 1, 1, 0))
    # Its own interval holds from there.
    assert run_due_flows(services, now=now + timedelta(minutes=2)) == []


def test_a_run_whose_flow_is_deleted_stops_and_leaves_nothing_behind(
    services: Services, tmp_path: Path
) -> None:
    make_domain(services, D)
    folder = three_files(tmp_path)
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder)))
    # DeleteIntegration commits after a.jsonl was applied, before b.jsonl is.
    source = Hooked(
        FolderSource(services.settings, str(folder)),
        {"b.jsonl": lambda: delete_flow(services, "crm")},
    )

    run = run_flow(services, domain_name=D, flow_name="crm", source=source)

    assert run.status == "FAILED" and run.error is not None
    assert run.error.startswith("The flow was deleted (DeleteIntegration) while the run was going")
    assert (run.items_read, run.records_ingested) == (1, 2)
    assert ingested(services, 1, 2, 3, 4, 5, 6) == [1, 2]
    # No checkpoint, no run of the deleted flow is left.
    assert rows_of(services, "crm") == (0, 0)


CUSTOM = {
    "Description": "users",
    "AllowProfileCreation": True,
    "Fields": {
        "id": {"Source": "_source.id", "Target": "_profile.AccountNumber", "ContentType": "STRING"},
        "email": {
            "Source": "_source.email",
            "Target": "_profile.EmailAddress",
            "ContentType": "EMAIL_ADDRESS",
        },
    },
    "Keys": {"id": [{"FieldNames": ["id"], "StandardIdentifiers": ["PROFILE", "UNIQUE"]}]},
}


def accounts(services: Services, *ids: int) -> list[int]:
    """Which of the ids have a profile made by the custom type."""
    with services.read() as tx:
        return [
            n
            for n in ids
            if search_profiles(tx, domain_name=D, criteria=[SearchCriterion("id", (str(n),))])[0]
        ]


def test_a_run_whose_object_type_is_deleted_fails_and_leaves_the_items_in_the_source(
    services: Services, tmp_path: Path
) -> None:
    make_domain(services, D)
    folder = three_files(tmp_path)
    with services.write() as tx:
        put_object_type(tx, domain_name=D, name="users", params=CUSTOM)
    definition = flow_definition("crm", "file://", str(folder))
    put_flow(services, "crm", "users", definition)

    def delete_type() -> None:
        with services.write() as tx:
            delete_object_type(tx, domain_name=D, name="users")

    source = Hooked(FolderSource(services.settings, str(folder)), {"b.jsonl": delete_type})
    run = run_flow(services, domain_name=D, flow_name="crm", source=source)

    assert run.status == "FAILED" and run.error is not None
    assert "its object type users was deleted" in run.error
    assert (run.items_read, run.records_read, run.records_dead_lettered) == (1, 2, 0)
    assert letters(services) == []
    # Not read, not checkpointed: the items wait in the source.
    assert pending(services, definition, folder) == ["b.jsonl", "c.jsonl"]

    # The type defined again enables the flow, whose next incremental run reads them.
    with services.write() as tx:
        put_object_type(tx, domain_name=D, name="users", params=CUSTOM)
    again = run_flow(services, domain_name=D, flow_name="crm", complete=False)
    assert counts(again) == ("COMPLETED", 2, 4, 4, 0)
    assert accounts(services, 3, 4, 5, 6) == [3, 4, 5, 6]


def test_a_run_whose_implicit_type_is_deleted_ingests_nothing_more(
    services: Services, tmp_path: Path
) -> None:
    make_domain(services, D)
    folder = three_files(tmp_path)
    definition = flow_definition("crm", "file://", str(folder))
    put_flow(services, "crm", TYPE, definition)

    def delete_type() -> None:
        with services.write() as tx:
            delete_object_type(tx, domain_name=D, name=TYPE)

    source = Hooked(FolderSource(services.settings, str(folder)), {"b.jsonl": delete_type})
    run = run_flow(services, domain_name=D, flow_name="crm", source=source)

    assert run.status == "FAILED" and run.error is not None
    assert f"its object type {TYPE} was deleted" in run.error
    # Nothing went into the type after its deletion (its data before went with it).
    assert ingested(services, 1, 2, 3, 4, 5, 6) == []
    assert letters(services) == []
    assert pending(services, definition, folder) == ["b.jsonl", "c.jsonl"]
    with services.read() as tx:
        found = find_flow_integration(tx, domain_name=D, flow_name="crm")
    assert found is not None and found.disabled_reason is not None
