"""Running flows: read a flow's source, apply its Tasks, ingest each record through the one
pipeline as the integration's object type, dead-letter what fails, and record the run.

Triggers (spec: PutIntegration FlowDefinition.TriggerConfig):

* `OnDemand`: runs only when asked (`run_flow`, `openprofiles flows run`); reads every item.
* `Scheduled`: `run_due_flows` starts a run when the `rate(...)` interval has passed since the
  previous scheduled run (inside ScheduleStartTime/EndTime); DataPullMode Incremental (default)
  reads new or changed items only, Complete reads everything.
* `Event`: `run_due_flows` starts a run whenever the source lists an item that is new or changed
  since the last checkpoint (new file in the folder / new object in the bucket).

`openprofiles flows watch` calls `run_due_flows` in a loop. A run's counts are written after
every item, so a run in progress shows its progress; an item is checkpointed (flow_item) once
its records are applied.

An item that cannot be read, is not UTF-8 text, or is neither JSON nor JSON lines is a failed
item: dead-lettered whole (one message, with the reason naming the file or object), counted as
one record read and dead-lettered, and checkpointed as failed, and the run goes on. No automatic
run reads it again until it changes — the dead-letter queue holds it; a run asked for (OnDemand)
reads it again, for when the cause was fixed without changing it. A source that cannot be
listed or read at all fails the run instead, leaving its items to the next run.
"""

from __future__ import annotations

import codecs
import json
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from openprofiles.context import Services, Tx
from openprofiles.dlq.sinks import dead_letter_in
from openprofiles.domains.service import register_domain_table
from openprofiles.errors import BadRequest, NotFound, ServiceError
from openprofiles.flows.models import Flow, FlowRun, parse_flow_definition
from openprofiles.flows.sources import FlowSource, ItemError, SourceError, SourceItem, source_for
from openprofiles.flows.tasks import RecordFailed, apply_tasks
from openprofiles.ingest.pipeline import IngestRejected, ingest_object
from openprofiles.integrations.models import Integration
from openprofiles.integrations.service import find_flow_integration, list_flow_integrations
from openprofiles.json_text import JsonTextError, load_json, split_json_text
from openprofiles.store.schema import flow_item, flow_run

register_domain_table(flow_run)
register_domain_table(flow_item)

BATCH_SIZE = 500
Progress = Callable[[FlowRun], None]
# The checkpoint version of an item that failed starts with this, followed by the item's version:
# read like any checkpoint by incremental runs, and told apart by complete ones.
FAILED_MARK = "failed:"


class _Terminated(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _ItemFailed(Exception):
    """The item as a whole cannot be ingested: `reason` says why, `content` is what was read of
    it (as text) for the dead letter."""

    def __init__(self, reason: str, content: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.content = content


def _run_record(row: Any) -> FlowRun:
    return FlowRun(
        domain_name=row.domain_name,
        run_id=row.run_id,
        flow_name=row.flow_name,
        trigger=row.trigger,
        status=row.status,
        items_read=row.items_read,
        records_read=row.records_read,
        records_ingested=row.records_ingested,
        records_filtered=row.records_filtered,
        records_dead_lettered=row.records_dead_lettered,
        error=row.error,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def get_run(tx: Tx, *, domain_name: str, run_id: str) -> FlowRun:
    row = tx.conn.execute(
        select(flow_run).where(flow_run.c.domain_name == domain_name, flow_run.c.run_id == run_id)
    ).first()
    if row is None:
        raise NotFound(f"The flow run {run_id} does not exist in domain {domain_name}.")
    return _run_record(row)


def list_runs(tx: Tx, *, domain_name: str, flow_name: str, limit: int = 20) -> list[FlowRun]:
    """The flow's runs, newest first."""
    rows = tx.conn.execute(
        select(flow_run)
        .where(flow_run.c.domain_name == domain_name, flow_run.c.flow_name == flow_name)
        .order_by(flow_run.c.started_at.desc(), flow_run.c.run_id.desc())
        .limit(limit)
    )
    return [_run_record(r) for r in rows]


def _load(services: Services, domain_name: str, flow_name: str) -> tuple[Integration, Flow]:
    with services.read() as tx:
        tx.cipher(domain_name)
        found = find_flow_integration(tx, domain_name=domain_name, flow_name=flow_name)
    if found is None or found.flow_definition is None:
        raise NotFound(f"The flow {flow_name} does not exist in domain {domain_name}.")
    if found.disabled_reason is not None:
        # DeleteProfileObjectType disabled it: nothing is read, the items wait in the source.
        raise BadRequest(found.disabled_reason)
    return found, parse_flow_definition(found.flow_definition)


def _checkpoints(services: Services, domain_name: str, flow_name: str) -> dict[str, str]:
    with services.read() as tx:
        rows = tx.conn.execute(
            select(flow_item.c.item_key, flow_item.c.version).where(
                flow_item.c.domain_name == domain_name, flow_item.c.flow_name == flow_name
            )
        )
        return {r.item_key: r.version for r in rows}


def pending_items(
    services: Services, domain_name: str, flow: Flow, source: FlowSource
) -> list[SourceItem]:
    """Items new or changed since the flow's checkpoint."""
    done = _checkpoints(services, domain_name, flow.name)
    return [
        i for i in source.items() if done.get(i.key) not in (i.version, FAILED_MARK + i.version)
    ]


def run_flow(
    services: Services,
    *,
    domain_name: str,
    flow_name: str,
    trigger: str = "OnDemand",
    complete: bool | None = None,
    on_progress: Progress | None = None,
    source: FlowSource | None = None,
) -> FlowRun:
    """Run the flow once and return the finished run (COMPLETED or FAILED).

    `complete` reads every item (default: OnDemand runs and DataPullMode Complete do);
    otherwise only items new or changed since the checkpoint are read. Only an OnDemand run
    reads again an item that failed and has not changed since.
    """
    found, flow = _load(services, domain_name, flow_name)
    type_name = found.object_type_name or ""
    source = source or source_for(services.settings, flow)
    run_id = uuid.uuid4().hex
    with services.write() as tx:
        tx.conn.execute(
            insert(flow_run).values(
                domain_name=domain_name,
                run_id=run_id,
                flow_name=flow_name,
                trigger=trigger,
                status="RUNNING",
                items_read=0,
                records_read=0,
                records_ingested=0,
                records_filtered=0,
                records_dead_lettered=0,
                started_at=tx.now,
            )
        )
    counts = {"items_read": 0, "records_read": 0, "records_ingested": 0}
    counts |= {"records_filtered": 0, "records_dead_lettered": 0}
    read_all = complete if complete is not None else flow.pull_mode == "Complete"
    error: str | None = None
    try:
        if not read_all:
            items = pending_items(services, domain_name, flow, source)
        elif trigger == "OnDemand":
            items = source.items()
        else:
            done = _checkpoints(services, domain_name, flow_name)
            items = [i for i in source.items() if done.get(i.key) != FAILED_MARK + i.version]
        for item in items:
            failure: _ItemFailed | None = None
            try:
                records = iter(_item_records(source, item))
            except _ItemFailed as exc:
                failure = exc
            else:
                while batch := list(islice(records, BATCH_SIZE)):
                    with services.write() as tx:
                        _apply_batch(tx, domain_name, type_name, flow, batch, counts)
            counts["items_read"] += 1
            with services.write() as tx:
                if failure is not None:
                    # One dead letter for the whole item, in the transaction that checkpoints
                    # it: a crash in between can neither lose the item nor dead-letter it twice.
                    dead_letter_in(
                        tx,
                        domain_name=domain_name,
                        object_type_name=type_name,
                        object_json=failure.content,
                        reason=f"Flow {flow.name}: {failure.reason}",
                        category="invalid_value",
                    )
                    counts["records_read"] += 1
                    counts["records_dead_lettered"] += 1
                _checkpoint(tx, domain_name, flow_name, item, failed=failure is not None)
                _update_run(tx, domain_name, run_id, counts)
                current = get_run(tx, domain_name=domain_name, run_id=run_id)
            if on_progress is not None:
                on_progress(current)
    except SourceError as exc:
        error = exc.message
    except _Terminated as exc:
        error = exc.reason
    except ServiceError as exc:
        # A failure of the whole batch (the domain's key disabled meanwhile, say): the run
        # ends FAILED with the reason instead of staying RUNNING; its item is read again next.
        error = exc.message
    with services.write() as tx:
        _update_run(
            tx,
            domain_name,
            run_id,
            counts,
            status="FAILED" if error else "COMPLETED",
            error=error,
            finished_at=tx.now,
        )
        return get_run(tx, domain_name=domain_name, run_id=run_id)


def _item_records(source: FlowSource, item: SourceItem) -> list[str]:
    """The raw records of the item; _ItemFailed when it cannot be read, is not UTF-8 text, or
    is neither JSON nor JSON lines (SourceError when the source as a whole cannot be read)."""
    unchanged = (
        "Nothing of it was ingested; the flow reads it again when it changes, or when it is "
        "run on demand."
    )
    try:
        data = source.read(item.key)
    except ItemError as exc:
        raise _ItemFailed(f"{_capitalised(exc.message.rstrip('.'))}. {unchanged}", "") from exc
    # A byte order mark is no part of the text (some exporters write one).
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        text = data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = bom + exc.start
        line = data.count(b"\n", 0, offset) + 1
        raise _ItemFailed(
            f"{_capitalised(source.describe(item.key))} is not UTF-8 text: the byte "
            f"0x{data[offset]:02X} at offset {offset} (line {line}) is not valid UTF-8. "
            f"{unchanged}",
            # Shown as \xNN escapes, the bytes that are not UTF-8 keep their values (and make
            # the letter invalid JSON, so a retry cannot ingest a garbled record).
            data[bom:].decode("utf-8", errors="backslashreplace"),
        ) from exc
    try:
        return split_json_text(text)
    except JsonTextError as exc:  # NotJsonText, or nested too deep to parse
        raise _ItemFailed(
            f"{_capitalised(source.describe(item.key))} is neither JSON nor JSON lines: "
            f"{exc.message.rstrip('.')}. {unchanged}",
            text,
        ) from exc


def _capitalised(message: str) -> str:
    return message[:1].upper() + message[1:]


def _apply_batch(
    tx: Tx, domain_name: str, type_name: str, flow: Flow, batch: list[str], counts: dict[str, int]
) -> None:
    for raw in batch:
        counts["records_read"] += 1
        reason: str | None = None
        category = "invalid_value"
        try:
            parsed = load_json(raw, "The record")
            if not isinstance(parsed, dict):
                raise ValueError("a record must be a JSON object")
            record = apply_tasks(flow.tasks, parsed)
            if record is None:
                counts["records_filtered"] += 1
                continue
            mapped_raw = raw if record == parsed else json.dumps(record, ensure_ascii=False)
            ingest_object(
                tx,
                domain_name=domain_name,
                object_type_name=type_name,
                source=record,
                raw=mapped_raw,
            )
            counts["records_ingested"] += 1
            continue
        except JsonTextError as exc:
            reason = exc.message
        except ValueError as exc:
            reason = f"The record is not a JSON object: {exc}."
        except RecordFailed as exc:
            if exc.terminate:
                raise _Terminated(f"{exc.reason} The flow was terminated (TerminateFlow).") from exc
            reason = exc.reason
        except IngestRejected as exc:
            reason, category = exc.reason, exc.category
        except ServiceError as exc:
            reason = exc.message
        dead_letter_in(
            tx,
            domain_name=domain_name,
            object_type_name=type_name,
            object_json=raw,
            reason=f"Flow {flow.name}: {reason}",
            category=category,
        )
        counts["records_dead_lettered"] += 1


def _checkpoint(
    tx: Tx, domain_name: str, flow_name: str, item: SourceItem, *, failed: bool = False
) -> None:
    statement: Any = (
        sqlite_insert(flow_item) if tx.services.database.is_sqlite else pg_insert(flow_item)
    )
    tx.conn.execute(
        statement.on_conflict_do_update(
            index_elements=["domain_name", "flow_name", "item_key"],
            set_={"version": statement.excluded.version, "processed_at": tx.now},
        ),
        {
            "domain_name": domain_name,
            "flow_name": flow_name,
            "item_key": item.key,
            "version": FAILED_MARK + item.version if failed else item.version,
            "processed_at": tx.now,
        },
    )


def _update_run(tx: Tx, domain_name: str, run_id: str, counts: dict[str, int], **more: Any) -> None:
    tx.conn.execute(
        update(flow_run)
        .where(flow_run.c.domain_name == domain_name, flow_run.c.run_id == run_id)
        .values(**counts, **more)
    )


def run_due_flows(services: Services, *, now: datetime) -> list[FlowRun]:
    """Start every Scheduled flow whose interval has passed and every Event flow whose source
    has new items; returns the runs made."""
    with services.read() as tx:
        flows = list_flow_integrations(tx)
    runs = []
    for found in flows:
        assert found.flow_definition is not None and found.flow_name is not None
        flow = parse_flow_definition(found.flow_definition)
        if flow.trigger_type == "Scheduled" and _schedule_due(services, found, flow, now):
            runs.append(
                run_flow(
                    services,
                    domain_name=found.domain_name,
                    flow_name=flow.name,
                    trigger="Scheduled",
                )
            )
        elif flow.trigger_type == "Event":
            source = source_for(services.settings, flow)
            try:
                has_new = bool(pending_items(services, found.domain_name, flow, source))
            except SourceError:
                has_new = False
            if has_new:
                runs.append(
                    run_flow(
                        services,
                        domain_name=found.domain_name,
                        flow_name=flow.name,
                        trigger="Event",
                        source=source,
                    )
                )
    return runs


def _schedule_due(services: Services, found: Integration, flow: Flow, now: datetime) -> bool:
    if flow.schedule_start is not None and now < flow.schedule_start:
        return False
    if flow.schedule_end is not None and now > flow.schedule_end:
        return False
    with services.read() as tx:
        last = tx.conn.execute(
            select(flow_run.c.started_at)
            .where(
                flow_run.c.domain_name == found.domain_name,
                flow_run.c.flow_name == flow.name,
                flow_run.c.trigger == "Scheduled",
            )
            .order_by(flow_run.c.started_at.desc())
            .limit(1)
        ).first()
    assert flow.interval_seconds is not None
    return last is None or now >= last.started_at + timedelta(seconds=flow.interval_seconds)
