"""A flow run stores its counts after every batch, and a run whose process was killed is shown
as stopped — on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.context import Services
from openprofiles.flows import batches as flow_batches
from openprofiles.flows import runs as flow_runs
from openprofiles.flows import service as flows
from openprofiles.flows.models import FlowRun
from openprofiles.store.schema import flow_run

from .test_flows_failed_items import TYPE, jsonl, user
from .test_flows_templates import D, flow_definition, put_flow


def test_a_run_over_one_item_shows_its_progress_batch_by_batch(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counts were stored per item: a run over one large file showed 0 until it ended."""
    monkeypatch.setattr(flow_batches, "BATCH_SIZE", 2)
    make_domain(services, D)
    folder = tmp_path / "crm"
    folder.mkdir()
    (folder / "a.jsonl").write_text(jsonl(*(user(n) for n in range(6))))
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder)))
    seen: list[int] = []
    real = flow_batches._apply_batch

    def watching(tx: Any, domain_name: str, *args: Any) -> None:
        # What another process sees of the run while this batch is applied.
        with services.read() as other:
            [run] = flow_runs.list_runs(other, domain_name=D, flow_name="crm")
            seen.append(run.records_read)
        real(tx, domain_name, *args)

    monkeypatch.setattr(flow_batches, "_apply_batch", watching)
    done = flows.run_flow(services, domain_name=D, flow_name="crm")
    assert seen == [0, 2, 4]
    assert (done.status, done.records_read, done.records_ingested) == ("COMPLETED", 6, 6)


def test_a_run_whose_process_stopped_is_shown_failed_not_running(
    services: Services, tmp_path: Path
) -> None:
    """A run killed with its process stayed RUNNING for ever."""
    make_domain(services, D)
    folder = tmp_path / "crm"
    folder.mkdir()
    (folder / "a.jsonl").write_text(jsonl(user(1)))
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder)))
    run = flows.run_flow(services, domain_name=D, flow_name="crm")

    def as_if(status: str, silent_for: timedelta) -> FlowRun:
        with services.write() as tx:
            tx.conn.execute(
                update(flow_run)
                .where(flow_run.c.run_id == run.run_id)
                .values(status=status, finished_at=None, progress_at=tx.now - silent_for)
            )
        with services.read() as tx:
            return flow_runs.get_run(tx, domain_name=D, run_id=run.run_id)

    busy = as_if("RUNNING", flow_runs.STALE_AFTER - timedelta(minutes=1))
    assert (busy.status, busy.error) == ("RUNNING", None)
    stopped = as_if("RUNNING", flow_runs.STALE_AFTER + timedelta(seconds=1))
    assert stopped.status == "FAILED"
    # Its process may have ended, or may still be going: neither is said.
    assert stopped.error is not None and "made no progress for 15 minutes" in stopped.error
    assert "no longer holds its flow" in stopped.error and "process ended" not in stopped.error
    # A finished run is what it was, however old.
    assert as_if("COMPLETED", timedelta(days=3)).status == "COMPLETED"
