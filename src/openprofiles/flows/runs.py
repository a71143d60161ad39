"""A flow's runs as stored (flow_run): inserted RUNNING by the claim that starts them
(flows.claims), their counts written after every batch, so a run in progress shows its
progress, ended COMPLETED or FAILED, read back as FlowRun, and pruned.

A RUNNING run silent for `STALE_AFTER` no longer holds its flow (its process may have ended, or
be stalled): it is read back FAILED (`stopped`), and the next run to claim the flow closes it so
(flows.claims).

A flow keeps its newest `RUNS_KEPT` finished runs of each trigger (`_prune_runs`, as each run
ends): a Scheduled flow runs every few minutes for years, and a run's sealed error can quote a
customer's value, so the history may not grow for ever. Per trigger, because the newest
Scheduled run says when the next is due (flows.triggers `_schedule_due`), whatever OnDemand runs
came since; RUNNING runs are never pruned (they hold their flow).

A run's error is stored sealed with the domain's key (a source's message can name an object key,
a task's or the pipeline's quote a value).
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select, update

from openprofiles.context import Services, Tx
from openprofiles.errors import NotFound, ServiceError
from openprofiles.flows.models import FlowRun
from openprofiles.store.schema import flow_run

# The table a run's sealed error is bound to, with the run id.
RUN_TABLE = "flow_run"
# The error of a failed run whose reason could not be sealed (the domain's key was unusable).
UNSEALED_ERROR = (
    "The run failed while the domain's key could not be used, so its reason could not be stored."
)
# Finished runs kept per flow and trigger (the module docstring): months of an hourly schedule.
RUNS_KEPT = 2000
# A RUNNING run that committed nothing for this long was stopped without finishing (its process
# was killed): a run commits its counts after every batch of records, which takes seconds. It
# no longer holds its flow: the next run to claim the flow closes it FAILED (flows.claims).
STALE_AFTER = timedelta(minutes=15)
# A RUNNING run silent for STALE_AFTER: its process may have ended, or may still be going (a
# listing that took that long), so neither is said.
STOPPED = (
    "The run made no progress for {stale} (none since {since}), so it no longer holds its "
    "flow; if its process is still alive it stops at its next batch. What it applied stays "
    "applied; run the flow again to read the rest."
)
# The same run, closed by the run that took its flow over.
STOPPED_TAKEN_OVER = (
    "The run made no progress for {stale} (none since {since}), so it no longer held its "
    "flow: run {by} took the flow over. If its process is still alive it stops at its next "
    "batch. What it applied stays applied."
)
FLOW_DELETED = (
    "The flow was deleted (DeleteIntegration) while the run was going: the run stopped. What it "
    "had applied stays applied."
)


@dataclass(frozen=True)
class Held:
    """A run that claimed its flow (flows.claims `claim`): what each of its transactions checks
    it still holds (`hold`), and what its record is made of should the flow be deleted with it."""

    domain_name: str
    flow_name: str
    run_id: str
    trigger: str
    started_at: datetime
    # The integration claimed: one deleted and put again under the same name is another flow.
    uri: str
    created_at: datetime
    type_name: str
    # The flow's definition and object type as claimed (`_flow_digest`): a flow put again over
    # it (PutIntegration of the same flow: an update) with another definition ends the run.
    digest: str


def _run_record(tx: Tx, row: Any) -> FlowRun:
    error = UNSEALED_ERROR if row.status == "FAILED" else None
    if row.error_sealed is not None:
        sealed = bytes(row.error_sealed)
        error = tx.cipher(row.domain_name).open_record(RUN_TABLE, row.run_id, sealed)["error"]
    status = row.status
    last = row.progress_at or row.started_at
    if status == "RUNNING" and last <= tx.now - STALE_AFTER:
        status, error = "FAILED", stopped(last)
    return FlowRun(
        domain_name=row.domain_name,
        run_id=row.run_id,
        flow_name=row.flow_name,
        trigger=row.trigger,
        status=status,
        items_read=row.items_read,
        records_read=row.records_read,
        records_ingested=row.records_ingested,
        records_filtered=row.records_filtered,
        records_dead_lettered=row.records_dead_lettered,
        error=error,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def get_run(tx: Tx, *, domain_name: str, run_id: str) -> FlowRun:
    row = tx.conn.execute(
        select(flow_run).where(flow_run.c.domain_name == domain_name, flow_run.c.run_id == run_id)
    ).first()
    if row is None:
        raise NotFound(f"The flow run {run_id} does not exist in domain {domain_name}.")
    return _run_record(tx, row)


def list_runs(tx: Tx, *, domain_name: str, flow_name: str, limit: int = 20) -> list[FlowRun]:
    """The flow's runs, newest first."""
    rows = tx.conn.execute(
        select(flow_run)
        .where(flow_run.c.domain_name == domain_name, flow_run.c.flow_name == flow_name)
        .order_by(flow_run.c.started_at.desc(), flow_run.c.run_id.desc())
        .limit(limit)
    )
    return [_run_record(tx, r) for r in rows]


def stopped(last: datetime, by: str | None = None) -> str:
    """The error of a run silent since `last` for STALE_AFTER; `by`: the run that took its flow
    over."""
    since, stale = last.isoformat(timespec="seconds"), duration(STALE_AFTER)
    if by is None:
        return STOPPED.format(stale=stale, since=since)
    return STOPPED_TAKEN_OVER.format(stale=stale, since=since, by=by)


def duration(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    return f"{minutes} minutes" if minutes else f"{span.total_seconds():g} seconds"


def no_counts() -> dict[str, int]:
    return {
        "items_read": 0,
        "records_read": 0,
        "records_ingested": 0,
        "records_filtered": 0,
        "records_dead_lettered": 0,
    }


def insert_run(
    tx: Tx, domain_name: str, flow_name: str, trigger: str, run_id: str | None = None
) -> str:
    """A new RUNNING run of the flow, with nothing counted; its id."""
    run_id = run_id or uuid.uuid4().hex
    tx.conn.execute(
        insert(flow_run).values(
            domain_name=domain_name,
            run_id=run_id,
            flow_name=flow_name,
            trigger=trigger,
            status="RUNNING",
            progress_at=tx.now,
            started_at=tx.now,
            **no_counts(),
        )
    )
    return run_id


def sealed_error(tx: Tx, domain_name: str, run_id: str, error: str) -> bytes | None:
    """A run's error sealed for its row; None when the domain's key cannot be used (the row
    then shows UNSEALED_ERROR)."""
    with contextlib.suppress(ServiceError):
        return tx.cipher(domain_name).seal_record(RUN_TABLE, run_id, {"error": error})
    return None


def finish_run(
    services: Services,
    held: Held,
    counts: dict[str, int],
    error: str | None,
    *,
    seal: bool = True,
) -> FlowRun:
    """End the run, FAILED with `error` or COMPLETED. `seal` False: the error came from the
    domain's key, which is not asked again to seal it (a KMS call, here with the writer held).
    A run that no longer holds its flow is not changed: closed FAILED by the run that took the
    flow over, or deleted with its flow (then the run returned is made here, FAILED)."""
    domain_name, run_id = held.domain_name, held.run_id
    with services.write() as tx:
        # The domain's key may be unusable (often why the run failed): the run still ends
        # FAILED, its reason told to the caller only, as nothing can seal it.
        sealed = sealed_error(tx, domain_name, run_id, error) if error and seal else None
        tx.conn.execute(
            update(flow_run)
            .where(
                flow_run.c.domain_name == domain_name,
                flow_run.c.run_id == run_id,
                flow_run.c.status == "RUNNING",
            )
            .values(
                **counts,
                status="FAILED" if error else "COMPLETED",
                error_sealed=sealed,
                finished_at=tx.now,
            )
        )
        _prune_runs(tx, held)
        try:
            run = get_run(tx, domain_name=domain_name, run_id=run_id)
        except NotFound:
            return FlowRun(
                domain_name=domain_name,
                run_id=run_id,
                flow_name=held.flow_name,
                trigger=held.trigger,
                status="FAILED",
                **counts,
                error=error or FLOW_DELETED,
                started_at=held.started_at,
                finished_at=tx.now,
            )
    if error is not None and (sealed is None or run.error != error):
        return replace(run, status="FAILED", error=error)
    return run


def _prune_runs(tx: Tx, held: Held) -> None:
    """Delete the finished runs of the flow's trigger older than its newest RUNS_KEPT (the
    module docstring), in the transaction that ends the run `held` (an erasure, `Tx.erased`,
    when a failed run goes)."""
    same_trigger = and_(
        flow_run.c.domain_name == held.domain_name,
        flow_run.c.flow_name == held.flow_name,
        flow_run.c.trigger == held.trigger,
    )
    oldest_kept = tx.conn.execute(
        select(flow_run.c.started_at, flow_run.c.run_id)
        .where(same_trigger)
        .order_by(flow_run.c.started_at.desc(), flow_run.c.run_id.desc())
        .offset(RUNS_KEPT - 1)
        .limit(1)
    ).first()
    if oldest_kept is None:
        return
    pruned = tx.conn.execute(
        delete(flow_run)
        .where(
            same_trigger,
            flow_run.c.status != "RUNNING",
            or_(
                flow_run.c.started_at < oldest_kept.started_at,
                and_(
                    flow_run.c.started_at == oldest_kept.started_at,
                    flow_run.c.run_id < oldest_kept.run_id,
                ),
            ),
        )
        .returning(flow_run.c.error_sealed.is_not(None))
    ).scalars()
    if any(pruned):
        # A failed run's sealed error can quote a customer's value: out of the log too. (Only
        # then: a flow past its 2,000 runs prunes one at each run's end, and emptying SQLite's
        # log holds writers off for a moment.)
        tx.erased()


def update_run(tx: Tx, domain_name: str, run_id: str, counts: dict[str, int], **more: Any) -> None:
    tx.conn.execute(
        update(flow_run)
        .where(flow_run.c.domain_name == domain_name, flow_run.c.run_id == run_id)
        .values(**counts, **more)
    )
