"""`openprofiles flows run NAME --domain D` reads again an item that failed, unchanged, once
its cause is fixed — whatever the flow's trigger, on SQLite and PostgreSQL.

A failed item's dead letter (and the reasons of a record or an item set aside after crashing
runs) says to fix the source and run the flow so, "which reads it again". It did for an
OnDemand flow only (whose runs read every item): on an Event or Scheduled flow the command ran
incrementally and passed over the item, checkpointed failed in the version read, so nothing
but changing the item read it again. Here the file is mended keeping its size and time (as
`cp -p` or `rsync -t` keep them), so its version is the one that failed."""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from tests.unit.flows.test_flows_failed_items import TYPE, ingested, jsonl, letters, user
from tests.unit.flows.test_flows_templates import D, flow_definition, put_flow
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.app import build_services
from openprofiles.cli import main
from openprofiles.flows.service import run_due_flows
from openprofiles.settings import Settings


@pytest.mark.parametrize("incremental", [[], ["--incremental"]], ids=["default", "incremental"])
def test_flows_run_reads_a_failed_item_again_once_its_cause_is_fixed(
    settings: Settings, incremental: list[str]
) -> None:
    # The watcher's passes read the files just written (a run asked for reads them anyway).
    settings = dataclasses.replace(settings, flow_folder_settle_seconds=0)
    # Under DATA_DIR/flows, a folder flows may read by default: the command has no other.
    folder = settings.data_dir / "flows" / "crm"
    folder.mkdir(parents=True)
    (folder / "a.jsonl").write_text(jsonl(user(1)))
    broken = folder / "b.jsonl"
    broken.write_bytes(jsonl(user(2, name="Zoë")).encode("latin-1"))
    services = build_services(settings)
    try:
        make_domain(services, D)
        event = {"TriggerType": "Event"}
        definition = flow_definition("crm", "file://", str(folder), trigger=event)
        put_flow(services, "crm", TYPE, definition)
        # The watcher reads both files: b.jsonl, not UTF-8, is a failed item.
        [run] = run_due_flows(services, now=datetime.now(UTC))
        assert (run.items_read, run.records_ingested, run.records_dead_lettered) == (2, 1, 1)
        [letter] = letters(services)
        assert "is not UTF-8 text" in letter.reason
        assert letter.not_retryable is not None
        assert f"openprofiles flows run crm --domain {D}" in letter.not_retryable

        # Mended in place, same size and time: the same version, so no automatic run reads it.
        before = broken.stat()
        broken.write_text(jsonl(user(2, name="Zoe")))
        os.utime(broken, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert broken.stat().st_size == before.st_size
        assert run_due_flows(services, now=datetime.now(UTC)) == []
        assert ingested(services, 2) == []
    finally:
        services.database.dispose()

    storage = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        storage += ["--database-url", settings.database_url]
    result = CliRunner().invoke(
        main, ["flows", "run", "crm", "--domain", D, *storage, *incremental, "--json"]
    )

    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.splitlines()[-1])
    # Only the failed item is read: a.jsonl is done, and an Event flow's run is incremental.
    assert summary["Status"] == "COMPLETED"
    assert (summary["ItemsRead"], summary["RecordsIngested"]) == (1, 1)
    services = build_services(settings)
    try:
        assert ingested(services, 1, 2) == [1, 2]
        # Read, it is done: the watcher does not read it again.
        assert run_due_flows(services, now=datetime.now(UTC)) == []
    finally:
        services.database.dispose()
