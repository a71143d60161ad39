"""A flow renamed — PutIntegration of its Uri with another FlowName — between its runs or while
it runs — on SQLite and PostgreSQL.

A flow's runs and checkpoints are kept under its name. A rename used to leave the old name's
behind, belonging to no flow: the old name put back later (on this integration or another)
found them, and skipped the files its earlier self had read, however long ago, while its runs
showed the old ones. The new name is another flow (the FlowName is the flow's identity, as in
AppFlow): it reads its source afresh, and the old name's rows are deleted, as DeleteIntegration
deletes them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.context import Services
from openprofiles.flows import claims as flow_claims
from openprofiles.flows import runs as flow_runs
from openprofiles.flows import service as flows
from openprofiles.flows.sources import FolderSource
from openprofiles.integrations.service import put_integration

from .hooked_source import Hooked
from .test_flows_deleted_while_running import rows_of
from .test_flows_failed_items import EVENT, TYPE, counts, jsonl, user
from .test_flows_templates import D, flow_definition

URI = "crm-export"


def put_named(services: Services, name: str, folder: Path) -> None:
    """The integration URI with its flow named `name`."""
    with services.write() as tx:
        put_integration(
            tx,
            domain_name=D,
            uri=URI,
            object_type_name=TYPE,
            flow_definition=flow_definition(name, "file://", str(folder), trigger=EVENT),
        )


def export(services: Services, tmp_path: Path) -> Path:
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "a.jsonl").write_text(jsonl(user(1), user(2)))
    (folder / "b.jsonl").write_text(jsonl(user(3)))
    return folder


def test_a_renamed_flow_leaves_nothing_under_its_old_name_and_reads_afresh(
    services: Services, tmp_path: Path
) -> None:
    folder = export(services, tmp_path)
    put_named(services, "crm", folder)
    [run] = flows.run_due_flows(services, now=datetime.now(UTC))
    assert counts(run) == ("COMPLETED", 2, 3, 3, 0)
    assert rows_of(services, "crm") == (2, 1)

    put_named(services, "crm-v2", folder)
    assert rows_of(services, "crm") == (0, 0)
    [renamed] = flows.run_due_flows(services, now=datetime.now(UTC))
    assert (renamed.flow_name, counts(renamed)) == ("crm-v2", ("COMPLETED", 2, 3, 3, 0))

    # The old name put back is a flow of its own again: it starts afresh, not from the
    # checkpoints its earlier self left.
    put_named(services, "crm", folder)
    assert rows_of(services, "crm-v2") == (0, 0)
    with services.read() as tx:
        assert flow_runs.list_runs(tx, domain_name=D, flow_name="crm") == []
    [back] = flows.run_due_flows(services, now=datetime.now(UTC))
    assert (back.flow_name, counts(back)) == ("crm", ("COMPLETED", 2, 3, 3, 0))


def test_a_run_whose_flow_is_renamed_stops_and_leaves_nothing_under_the_old_name(
    services: Services, tmp_path: Path
) -> None:
    folder = export(services, tmp_path)
    put_named(services, "crm", folder)
    hooks = {"b.jsonl": lambda: put_named(services, "crm-v2", folder)}
    source = Hooked(FolderSource(services.settings, str(folder)), hooks)
    run = flows.run_flow(services, domain_name=D, flow_name="crm", trigger="Event", source=source)
    assert run.status == "FAILED"
    assert rows_of(services, "crm") == (0, 0)
    assert run.error == flow_claims.FLOW_RENAMED
    # The flow under its new name reads every file, a.jsonl included.
    [renamed] = flows.run_due_flows(services, now=datetime.now(UTC))
    assert counts(renamed) == ("COMPLETED", 2, 3, 3, 0)
