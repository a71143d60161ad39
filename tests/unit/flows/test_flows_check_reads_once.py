"""An Event check that finds nothing changed in the flow's checkpoints does not read them again —
and every change of them, by any process, makes the next check read them — on SQLite and
PostgreSQL.

`flows watch` checks every Event flow every few seconds, and each check read every flow_item row
of the flow (about 32 ms at 17,000 items) though nothing had changed. Now the checkpoints a check
read are kept with the flow's count of their changes (integration.flow_item_changes, bumped in
the transaction of every change: flows.check_cache), and a check that finds the count, on the same
integration row, as it was takes them instead of reading them. Each case below changes the
checkpoints from another process (another Services on the same database) after the watcher's
check kept them, in a way a check taking the kept ones would answer wrongly; the watcher's next
check answers as the database says."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from openprofiles.context import Services
from openprofiles.flows import service as flows
from openprofiles.flows import triggers as flow_triggers
from openprofiles.flows.models import Flow, parse_flow_definition
from openprofiles.flows.sources import FolderSource
from openprofiles.integrations.service import (
    delete_integration,
    find_flow_integration,
    put_integration,
)

from .test_flows_failed_items import EVENT, TYPE, jsonl, user
from .test_flows_one_run_at_a_time import export
from .test_flows_one_run_at_a_time import other as other  # a fixture
from .test_flows_templates import D, flow_definition, put_flow


class Reads:
    """Counts the statements the services run that read flow_item."""

    def __init__(self, services: Services) -> None:
        self.count = 0
        self.engine = services.database.engine
        event.listen(self.engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM flow_item" in statement:
            self.count += 1

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)


@pytest.fixture
def reads(services: Services) -> Iterator[Reads]:
    counted = Reads(services)
    try:
        yield counted
    finally:
        counted.close()


def the_flow(services: Services) -> Flow:
    with services.read() as tx:
        found = find_flow_integration(tx, domain_name=D, flow_name="crm")
    assert found is not None and found.flow_definition is not None
    return parse_flow_definition(found.flow_definition)


def check(services: Services, folder: Path) -> list[str]:
    """The items an Event check of the flow finds new or changed (as `run_due_flows` asks)."""
    source = FolderSource(services.settings, str(folder))
    pending = flow_triggers.pending_items(
        services, D, the_flow(services), source, settled_only=True
    )
    return sorted(i.key for i in pending)


def read_and_kept(services: Services, folder: Path) -> None:
    """The flow read whole, and its checkpoints kept by a check that found nothing new."""
    [run] = flows.run_due_flows(services, now=datetime.now(UTC))
    assert run.status == "COMPLETED"
    assert check(services, folder) == []


def test_a_check_that_finds_nothing_changed_reads_no_checkpoint(
    services: Services, tmp_path: Path, reads: Reads
) -> None:
    folder = export(services, tmp_path)
    read_and_kept(services, folder)

    reads.count = 0
    for _ in range(3):
        assert check(services, folder) == []
        assert flows.run_due_flows(services, now=datetime.now(UTC)) == []
    assert reads.count == 0
    # A new file is still seen at once: the kept checkpoints say it was never read.
    (folder / "c.jsonl").write_text(jsonl(user(4)))
    assert check(services, folder) == ["c.jsonl"]
    assert reads.count == 0


def test_a_run_of_another_process_makes_the_next_check_read_them(
    services: Services, other: Services, tmp_path: Path, reads: Reads
) -> None:
    folder = export(services, tmp_path)
    read_and_kept(services, folder)
    (folder / "c.jsonl").write_text(jsonl(user(4)))
    assert check(services, folder) == ["c.jsonl"]

    # Another watcher reads it: no longer new here either.
    [run] = flows.run_due_flows(other, now=datetime.now(UTC))
    assert (run.status, run.items_read) == ("COMPLETED", 1)
    reads.count = 0
    assert check(services, folder) == []
    assert reads.count == 1


def test_items_forgotten_by_another_process_are_new_again(
    services: Services, other: Services, tmp_path: Path
) -> None:
    """A run forgets the checkpoints of the items gone from the source; one put back is new
    (the service's docstring), even in the same version."""
    folder = export(services, tmp_path)
    read_and_kept(services, folder)
    gone = folder / "b.jsonl"
    content, stat = gone.read_text(), gone.stat()
    gone.unlink()
    assert check(services, folder) == []
    # Another process's run asked for lists the folder without b.jsonl and forgets it.
    forgetting = flows.run_flow(other, domain_name=D, flow_name="crm", complete=False)
    assert (forgetting.status, forgetting.items_read) == ("COMPLETED", 0)

    gone.write_text(content)
    os.utime(gone, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert check(services, folder) == ["b.jsonl"]


def test_a_flow_deleted_and_put_again_by_another_process_reads_everything_again(
    services: Services, other: Services, tmp_path: Path
) -> None:
    folder = export(services, tmp_path)
    read_and_kept(services, folder)
    with other.write() as tx:
        found = find_flow_integration(tx, domain_name=D, flow_name="crm")
        assert found is not None
        delete_integration(tx, domain_name=D, uri=found.uri)
    definition = flow_definition("crm", "file://", str(folder), trigger=EVENT)
    put_flow(other, "crm", TYPE, definition)
    assert check(services, folder) == ["a.jsonl", "b.jsonl"]


def test_a_flow_renamed_and_back_reads_everything_again(
    services: Services, other: Services, tmp_path: Path
) -> None:
    """Renaming a flow forgets its checkpoints (integrations.service put_integration) in the
    update of its integration's row, which counts as a change; the name put back is the same
    integration row, with nothing else changed."""
    folder = export(services, tmp_path)
    read_and_kept(services, folder)
    with other.read() as tx:
        found = find_flow_integration(tx, domain_name=D, flow_name="crm")
    assert found is not None
    for name in ("renamed", "crm"):
        with other.write() as tx:
            put_integration(
                tx,
                domain_name=D,
                uri=found.uri,
                object_type_name=TYPE,
                flow_definition=flow_definition(name, "file://", str(folder), trigger=EVENT),
            )
    assert check(services, folder) == ["a.jsonl", "b.jsonl"]
