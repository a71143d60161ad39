"""Running flows: read a flow's source, apply its Tasks, ingest each record through the one
pipeline as the integration's object type, dead-letter what fails, and record the run.

Triggers (spec: PutIntegration FlowDefinition.TriggerConfig):

* `OnDemand`: runs only when asked (`run_flow`, `openprofiles flows run`); reads every item.
* `Scheduled`: `run_due_flows` starts a run when the `rate(...)` interval has passed since the
  previous scheduled run (inside ScheduleStartTime/EndTime); DataPullMode Incremental (default)
  reads new or changed items only, Complete reads everything.
* `Event`: `run_due_flows` starts a run whenever the source lists an item that is new or changed
  since the last checkpoint (new file in the folder / new object in the bucket).

Scheduled and Event runs read only settled items (`settled`): a file of a folder changed within
`settings.flow_folder_settle_seconds` may still be being written, and is left, unread and not
checkpointed, for a later run, which finds it new. An OnDemand run reads it anyway: whoever asks
for the run says the source is ready.

`openprofiles flows watch` calls `run_due_flows` in a loop. A run's counts are written after
every batch, so a run in progress shows its progress; an item is checkpointed (flow_item) once
its records are applied, and with each batch as begun (`PARTIAL_MARK`: how many of its records
were applied, in the batch's transaction): a run that stops midway (its process killed, an
error escaping it, the source failing) leaves the item pending, and the next incremental run
resumes it after the records applied, counting and dead-lettering none of them again. A
Complete run reads every item whole, as it always does. What a checkpoint says, and what of an
item a run applies by it, is flows.checkpoints'.

A flow runs once at a time, across every process (several `flows watch` workers, servers whose
admin pages have a run button): a run claims its flow when it starts (`_claim`), in a transaction
that locks the flow's integration row (PostgreSQL; SQLite's one writer serialises the claims
already) and finds no other RUNNING run of the flow holding it (the partial index
ix_flow_run_running finds it among all the flow's runs). A run holds its flow for as long as it
makes progress: every batch and every item renews its claim (its `progress_at`), and where it
commits nothing for a while — listing its source, which can take minutes on a huge bucket, and
passing over items gone since — it renews it at most every `RENEW_EVERY` (`_Renewal`: while the
listing goes on in a thread of its own, `list_source`). A listing that has not ended after
`LISTING_LIMIT` (a hung network mount, an endpoint paging for ever) ends the run FAILED, saying so,
rather than hold the flow for ever; its thread goes on until the listing returns, and while it does
the process does not list the flow's source again (`listing_key`): a run ends FAILED at once
(LISTING_BUSY), an Event check passes the flow over — it has no run to fail, so it logs a warning
naming the flow and its domain, once per LISTING_LIMIT (`_warn_stuck`) — so a source that keeps
hanging holds one thread, not one more every watcher pass. An Event check, which the watcher makes
of every flow in turn, waits for its listing EVENT_CHECK_WAIT at most, so that a source that hangs
does not hold the other flows up: a listing not ended by then goes on in its thread as well, the
flow's next checks pass it over while it does (warning once it has gone on for LISTING_LIMIT), and
the first check after it ended takes what it listed (`_LISTED`). One silent for `STALE_AFTER` no
longer holds its flow (its process may have ended, or be stalled): the next run to claim the flow
closes it FAILED, naming itself as the run that took the flow over, and if its process is still
alive it stops at its next transaction. A run stopped by Ctrl-C or SIGTERM (a service manager
stopping `flows watch`) does not wait for that: it ends FAILED at once (INTERRUPTED; recorded
within INTERRUPTED_WAIT, as best it can), its checkpoints as its committed transactions left them,
and the flow is free for the next run — wherever the stop lands from its claim's transaction to
its end's (`_claimed`). An automatic trigger passes a flow held by a run over; a
run asked for (OnDemand: `openprofiles flows run`, the admin pages' button) is refused with
`RunInProgress`. A Scheduled flow is found due (`_schedule_due`) in a read first — most watcher
passes find it not due, and make no source and take no lock — and again under the claim, so two
watchers do not both start its run; an Event run lists its source again once it holds the flow, and
is dropped, unrecorded, when another run read the new items meanwhile.

Every transaction of a run that applies a batch or checkpoints an item first checks that the
run still holds its flow (`_hold`), taking the object type's lock as the pipeline does, then
the integration's row (shared, on PostgreSQL: DeleteIntegration waits for the transaction, and
it for DeleteIntegration). The run ends FAILED, without checkpointing the item it was reading,
when its flow was deleted (DeleteIntegration deletes the flow's runs and checkpoints with it:
a flow put again under the same name starts afresh) or renamed (PutIntegration of its Uri with
another FlowName: another flow, which reads its source afresh; the old name's runs and
checkpoints are deleted as by DeleteIntegration), when the flow was changed (PutIntegration
of the same flow, an update, with another definition or object type: the run claimed it as a
digest of both, `_flow_digest`, so the same definition put again changes nothing; the items
left are read by the next run, as the flow now says, and none is ingested as a type the flow
left, perhaps deleted since), when the flow was disabled (its object type deleted: the item
waits in the source until the type is defined again), or when it lost its claim (silent for
STALE_AFTER, another run took the flow over). A checkpoint is therefore only ever written by
the one run that holds the flow, as the flow is, after the records it read.

`run_due_flows` takes each domain's flows, and each flow, on their own: every tenant's flows
share the loop, and one domain whose key cannot be used (disabled, KMS throttling) must not stop
the others'. A domain whose flows cannot be listed (their definitions are sealed with its key)
is logged and passed over: nothing tells which of its flows are due. A flow that cannot start
(its domain's key, its source's settings) is logged with its error code and recorded as a
FAILED run, so its runs show it: a Scheduled flow once per interval, as any scheduled run; an
Event flow, checked every pass, once, and not again while that failed run is its newest.

Items are read as flows.items says: whole up to a size, streamed as JSON lines beyond it, in
batches of at most `BATCH_SIZE` records and about `BATCH_BYTES`. An item is checkpointed under
the version of the content read (which may be newer than the one listed).

An item gone since it was listed (a file deleted, an object deleted or being replaced by a
delete and a put: `ItemGone`) is no item of the run: it is neither dead-lettered nor
checkpointed, and a run that lists it again reads it.

A run forgets the checkpoints of the items its source's listing no longer holds
(deleted in the transaction that begins its reading, `_forget`), so that flow_item does not keep
a digest of every file name or object key the source ever held. A listing is whole (every page
of the bucket, every file of the folder, settled or not), and only the run that holds the flow
writes checkpoints, so no item listed loses its own. An item put back afterwards is a new item,
read whole again even in the same version — as a file dropped into the folder, or an object
uploaded, is: an Event trigger runs on each put — and so is every item of a flow put again with
another folder or prefix and then back. An Event check that finds nothing new starts no run,
so gone items are forgotten by the flow's next run. A listing of nothing forgets nothing (a
folder whose mount is missing looks empty; its items would all be read again once back).

An Event check reads the flow's checkpoints only when they changed since its previous check, in
any process (flows.check_cache: `_items_changed` counts each change in its transaction). What the
process keeps of a flow between checks (listings, item digests, checkpoints) is dropped by the
first pass that no longer finds the flow (`_drop_gone_flows`).

An item that cannot be read, is not UTF-8 text, is neither JSON nor JSON lines, or is too large to
read whole and not JSON lines is a failed item: dead-lettered whole (one message, with the reason
naming the file or object), counted as one record read and dead-lettered, and checkpointed as
failed, and the run goes on. No automatic run reads it again until it changes — the dead-letter
queue holds it; a run asked for (OnDemand: `openprofiles flows run`, with `--incremental` too, or
the admin pages' "Run now", whatever the flow's own trigger) reads it again, for when the cause was
fixed without changing it. So is a streamed item whose rest could not be read (its records before
that were ingested). A source that cannot be listed or read at all fails the run instead, leaving
its items to the next run (which resumes an item the run had begun, see above; a Complete run
applies its records again, which changes nothing: an object is stored under its UNIQUE key,
replacing itself), as does a run that stopped holding its flow.

A failed item can have been partly applied (a streamed item whose rest could not be read, an item
set aside, below): its checkpoint keeps what of that content was not (FAILED_MARK, `Unapplied`: the
records after where its reading stopped, and the positions of those set aside one by one), and an
incremental run that reads it again, unchanged, applies exactly those, passing over the others as
it resumes an item: applied again, an older record would overwrite what a later item brought since
(a customer's new address going back to the old one). The records set aside were dead-lettered as
not retryable, never applied: they are among those applied now, and their dead letters stay, to be
purged. Each transaction of such a run writes the failed checkpoint with what is left, so a run
that stops midway leaves the item failed, with less to apply; one that fails on an internal error
there (its cause not fixed) says so (CRASHED_REREAD) and does not count it as a crash: the item
stays out of the automatic runs' way. A changed item (another version) is read whole, as a new one;
a run that reads every item (Complete) reads it whole too, after the items before it, as it reads
them all.

An item whose reading raises an error the run does not know (a bug, a record that crashes the
mapping) stops the run, FAILED with an internal error, as any such error does; the run counts
it in the item's checkpoint (CRASHED_MARK: runs in a row, and after how many of its records),
so that it is not retried for ever while the items after it wait. A run that gets past where
they stopped starts the count afresh. An error that says nothing of the item is not counted
(`_item_crash`): the pool's TimeoutError, and every error of the database but a value or row
refused (IntegrityError, DataError): its connection failing, a read-only server after a
failover, a permission revoked, a column missing; an S3 body broken off is the source's
(SourceError, flows.sources). The item's `CRASH_ATTEMPTS`-th attempt reads it carefully: a
batch that raises is applied a record a transaction, and a record that raises again on its own
is dead-lettered (CRASHED_RECORD, its text kept) while the others go in — unless none of the
batch's records (more than one) applies alone: the error is then taken for the system's (a
trigger or grant refusing every write), none is set aside, and the run fails without counting
it (CRASHED_SYSTEMIC). An error raised while reading the item, not applying it, makes it a
failed item after the records applied (CRASHED_ITEM). Either way the item is checkpointed as
failed, with what of it was not applied, and the run goes on with the next items.

A flow keeps its newest `RUNS_KEPT` finished runs of each trigger (`_prune_runs`, as each run
ends): a Scheduled flow runs every few minutes for years, and a run's sealed error can quote a
customer's value, so the history may not grow for ever. Per trigger, because the newest
Scheduled run says when the next is due (`_schedule_due`), whatever OnDemand runs came since;
RUNNING runs are never pruned (they hold their flow).

A run's error is stored sealed with the domain's key (a source's message can name an object key,
a task's or the pipeline's quote a value), and a checkpointed item is known by a blind-index
digest of its key (flows.item_keys): an object key or file name can carry a customer's name or
email, and the checkpoint only has to tell whether a listed key was read, and in which version.

A dead letter that holds no record the object type can take as it is — a failed item, a part of
an item that is not a record, a record that failed a Validate task — says so (its
`not_retryable`): `dlq retry` leaves it alone, and points at running the flow again. A record
that the pipeline rejected is dead-lettered as the flow's tasks made it, so a retry ingests
what the flow would have.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from openprofiles.context import Services, Tx
from openprofiles.crypto.errors import KeyUnusable
from openprofiles.dlq.sinks import dead_letter_in
from openprofiles.domains.service import register_domain_table
from openprofiles.errors import BadRequest, NotFound, ServiceError
from openprofiles.flows import check_cache
from openprofiles.flows.checkpoints import (
    CRASH_ATTEMPTS,
    Crashes,
    Unapplied,
    crashed_checkpoint,
    crashes_before,
    failed_plan,
    is_pending,
    partial_checkpoint,
    read_plan,
)
from openprofiles.flows.item_keys import ItemDigests, item_digest
from openprofiles.flows.item_keys import drop as drop_item_digests
from openprofiles.flows.items import BadRecord, ItemFailed, ItemRecord, ItemRecords, item_records
from openprofiles.flows.models import Flow, FlowRun, parse_flow_definition
from openprofiles.flows.sources import FlowSource, ItemGone, SourceError, SourceItem, source_for
from openprofiles.flows.tasks import RecordFailed, apply_tasks
from openprofiles.ingest.bulk import over_the_limit
from openprofiles.ingest.pipeline import IngestRejected, ingest_object
from openprofiles.integrations.models import Integration
from openprofiles.integrations.service import find_flow_integration, list_flow_integrations
from openprofiles.json_text import JsonTextError, load_json
from openprofiles.object_types.service import lock_object_type
from openprofiles.store.chunks import transaction_chunks
from openprofiles.store.conflicts import retrying
from openprofiles.store.schema import flow_item, flow_run, integration

logger = logging.getLogger(__name__)

register_domain_table(flow_run)
register_domain_table(flow_item)

BATCH_SIZE = 500
# Finished runs kept per flow and trigger (the module docstring): months of an hourly schedule.
RUNS_KEPT = 2000
# Records of a streamed item can be long: a batch also ends once its records hold this much text.
BATCH_BYTES = 8 * 1024 * 1024
Progress = Callable[[FlowRun], None]
# The reason of a record set aside (dead-lettered) on the item's last attempt: it raised again
# on its own. The error is named by its type (its message can quote a value; the server's log
# has its traceback).
CRASHED_RECORD = (
    "Reading this record stopped the flow's runs with an internal error ({error}) "
    "{attempts} runs in a row, so it was set aside and the rest of its item read. The server's "
    "log has the error; once its cause is fixed, run the flow (openprofiles flows run, or Run "
    "now on the admin pages), which applies the records of the item not applied, this one "
    "among them."
)
# The reason of an item set aside on its last attempt, the error raised while reading it.
CRASHED_ITEM = (
    "Reading {what} stopped the flow's runs with an internal error ({error}) {attempts} runs "
    "in a row, after its first {applied} records (applied): the rest of it was not read. The "
    "server's log has the error; once its cause is fixed, run the flow (openprofiles flows run, "
    "or Run now on the admin pages), which reads the rest of the item."
)
# The error of a run whose last attempt at an item found every record of a batch raising the
# error alone: not the records' (the database refusing every write, say), so none is set aside.
CRASHED_SYSTEMIC = (
    "An internal error stopped the run: every record of a batch raised it, applied alone too, "
    "so it is not taken for the records' and none was set aside. The server's log has the "
    "error; the next run tries the item again."
)
# The error of a run stopped by an unexpected error while it read again an item that had failed.
CRASHED_REREAD = (
    "An internal error stopped the run while it read again {what}, which had failed: the item "
    "stays failed (no automatic run reads it), with what of it is still not applied, until its "
    "cause is fixed and the flow run again. The server's log has the error."
)
# The table a run's sealed error is bound to, with the run id.
RUN_TABLE = "flow_run"
# The error of a failed run whose reason could not be sealed (the domain's key was unusable).
UNSEALED_ERROR = (
    "The run failed while the domain's key could not be used, so its reason could not be stored."
)


class _Terminated(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# A RUNNING run that committed nothing for this long was stopped without finishing (its process
# was killed): a run commits its counts after every batch of records, which takes seconds. It
# no longer holds its flow: the next run to claim the flow closes it FAILED (module docstring).
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
FLOW_CHANGED = (
    "The flow was changed (PutIntegration) while the run was going: the run stopped, so that "
    "no item is read or checkpointed under the definition it no longer has. What it had "
    "applied stays applied; run it again."
)
# How often a run renews its claim while it does not commit (listing its source, passing over
# items gone since): well within STALE_AFTER, and few transactions.
RENEW_EVERY = timedelta(minutes=1)
# The longest a run waits for its source's listing to end. A run renews its claim while it
# lists, so a listing that never ends (a hung network mount, an endpoint that hands out pages
# for ever) would hold the flow for ever: past this the run ends FAILED and releases it. Far
# beyond what listing a large bucket takes (ListObjectsV2 pages 1000 keys in well under a
# second: millions of objects list in minutes).
LISTING_LIMIT = timedelta(hours=1)
LISTING_HUNG = (
    "The listing of the source did not end within {limit} (it began at {since}): the run "
    "stopped, so that it does not hold the flow for as long as the listing goes on, and read "
    "nothing. Check that the folder or the bucket answers (a hung network mount, an endpoint "
    "that pages for ever), then run the flow again."
)
# A listing of the flow's source that did not end (LISTING_HUNG) still goes on in this process:
# no other is begun until it has returned (`list_source`).
LISTING_BUSY = (
    "The source was not listed: an earlier listing of it, begun at {since}, has not returned "
    "yet, and a source is not listed again while a listing of it goes on (one that does not "
    "end within {limit} fails its run and goes on alone). Check that the folder or the bucket "
    "answers (a hung network mount, an endpoint that pages for ever); the flow lists it again "
    "once that listing has returned."
)
# The longest an Event check waits for its source's listing (`list_source`'s patience): the
# watcher checks every flow in turn, so a source that hangs must not hold the others up for
# LISTING_LIMIT. A listing not ended by then goes on in its thread, and what it lists is what the
# flow's next check takes (a large bucket that lists in minutes is still checked); a folder or
# a bucket that answers lists well within it.
EVENT_CHECK_WAIT = timedelta(seconds=5)
# The reason (unshown: an Event check makes no run) of a check that left its listing to its
# thread (ListingPending).
LISTING_PENDING = (
    "The listing of the source, begun at {since}, had not ended when the check stopped waiting "
    "for it: it goes on, and the flow's next check takes what it lists."
)
FLOW_DELETED = (
    "The flow was deleted (DeleteIntegration) while the run was going: the run stopped. What it "
    "had applied stays applied."
)
# The integration is there, under another FlowName or none (integrations.service.put_integration
# deleted the flow's runs and checkpoints, as DeleteIntegration does).
FLOW_RENAMED = (
    "The flow was renamed or removed from its integration (PutIntegration with another "
    "FlowName, or none) while the run was going: the run stopped. What it had applied stays "
    "applied; the flow under its new name reads its source afresh."
)
TAKEN_OVER = (
    "The run stopped: it made no progress for {stale}, so it no longer held its flow, and "
    "another run took the flow over. What it had applied stays applied."
)


class ListingStuck(SourceError):
    """The source's listing did not end within LISTING_LIMIT (LISTING_HUNG), or one that did
    not still goes on in this process (LISTING_BUSY): an Event check says so in the log."""


class ListingPending(SourceError):
    """An Event check stopped waiting for its source's listing (EVENT_CHECK_WAIT), which goes on
    in its thread; the flow's next check takes what it lists (`list_source`)."""


class RunInProgress(BadRequest):
    """A run of the flow is in progress (it holds the flow): a run asked for is refused."""


@dataclass(frozen=True)
class _Held:
    """A run that claimed its flow (`_claim`): what each of its transactions checks it still
    holds (`_hold`), and what its record is made of should the flow be deleted with it."""

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


def _flow_digest(definition: Mapping[str, Any] | None, type_name: str | None) -> str:
    """A digest of what the run reads the flow as: its definition and its object type. Of the
    content, not of its updated_at: the same definition put again changes nothing."""
    text = json.dumps([definition, type_name], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _run_record(tx: Tx, row: Any) -> FlowRun:
    error = UNSEALED_ERROR if row.status == "FAILED" else None
    if row.error_sealed is not None:
        sealed = bytes(row.error_sealed)
        error = tx.cipher(row.domain_name).open_record(RUN_TABLE, row.run_id, sealed)["error"]
    status = row.status
    last = row.progress_at or row.started_at
    if status == "RUNNING" and last <= tx.now - STALE_AFTER:
        status, error = "FAILED", _stopped(last)
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


class _Checkpoints:
    """The version each item of the flow was checkpointed under (None for an item never read),
    as the database says when read; the items' digests from those kept since the flow's last
    listing in this process (flows.item_keys), and kept for its next once `keep()` is called
    with the items of a listing looked up."""

    def __init__(
        self, services: Services, domain_name: str, flow_name: str, *, reuse: bool = False
    ) -> None:
        """`reuse`: take the checkpoints the flow's previous check read when none changed
        since (flows.check_cache), and keep these for its next; a run reads them afresh."""
        flow = (id(services), domain_name, flow_name)
        with services.read() as tx:
            self._digests = ItemDigests(flow, tx.cipher(domain_name))
            # Read before the checkpoints (flows.check_cache: why that order is safe).
            stamp = check_cache.stamp(tx, domain_name, flow_name) if reuse else None
            done = check_cache.cached(flow, stamp)
            if done is None:
                rows = tx.conn.execute(
                    select(flow_item.c.item_digest, flow_item.c.version).where(
                        flow_item.c.domain_name == domain_name, flow_item.c.flow_name == flow_name
                    )
                )
                done = {bytes(r.item_digest): r.version for r in rows}
                if reuse:
                    check_cache.keep(flow, stamp, done)
        self._done = done

    def __call__(self, item: SourceItem) -> str | None:
        return self._done.get(self._digests.digest(item.key))

    def gone(self, listed: list[SourceItem]) -> list[bytes]:
        """The digests of the items checkpointed that the listing does not hold."""
        present = {self._digests.digest(item.key) for item in listed}
        return [digest for digest in self._done if digest not in present]

    def keep(self) -> None:
        self._digests.keep()


def settled(services: Services, items: list[SourceItem]) -> list[SourceItem]:
    """The items not changed within the settings' settle time before now (see the module
    docstring); an item with no modification time (an S3 object) is settled. Now is the clock
    when the items were just listed, never a time given for the pass (`run_due_flows`' `now`,
    taken before the flows before this one ran). A time ahead of it (another host's clock, on a
    network folder) counts as a change just made, as long as it is within the settle time: one
    further ahead would hold the file back for hours."""
    settle = services.settings.flow_folder_settle_seconds
    at = time.time()
    ready = [i for i in items if i.modified_at is None or abs(at - i.modified_at) >= settle]
    if len(ready) < len(items):
        # Counts only: a file's name can be personal data (logging_setup).
        logger.info(
            "A flow left %d of %d items for a later run: changed in the last %g s, they may "
            "still be being written.",
            len(items) - len(ready),
            len(items),
            settle,
        )
    return ready


def pending_items(
    services: Services,
    domain_name: str,
    flow: Flow,
    source: FlowSource,
    *,
    settled_only: bool = False,
    patience: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> list[SourceItem]:
    """Items new or changed since the flow's checkpoint; `settled_only`: those of them that
    have settled (an automatic run's). `patience` and `clock`: `list_source`'s."""
    done = _Checkpoints(services, domain_name, flow.name, reuse=True)
    key = listing_key(services, domain_name, flow)
    listed = list_source(source, key=key, patience=patience, clock=clock)
    items = settled(services, listed) if settled_only else listed
    pending = [i for i in items if is_pending(done(i), i)]
    done.keep()
    return pending


@dataclass
class _Reading:
    """The item a run is reading, for the run's end should an unexpected error stop it there
    (`_note_crash`): the version read, up to which position its records are done in committed
    transactions (applied, passed over, or set aside), the runs that stopped on it before
    (`crashes_before`), what of it the run set out to apply (`plan`) and the positions it set aside;
    `failed_before`: the item failed in this version (a run asked for reads it again), and
    `systemic`: the error that stops the run was found not to be the records' (`_apply_alone`)."""

    item: SourceItem
    version: str
    applied: int = 0
    crashes: Crashes | None = None
    plan: Unapplied = Unapplied()
    aside: list[int] = field(default_factory=list)
    failed_before: bool = False
    systemic: bool = False

    @property
    def last_attempt(self) -> bool:
        return self.crashes is not None and self.crashes.attempts >= CRASH_ATTEMPTS - 1


def _item_crash(exc: BaseException) -> bool:
    """Whether `exc`, escaping a run while it read an item, may be the item's (counted towards
    CRASH_ATTEMPTS): an error the run does not know. Not one that says nothing of the item: no
    connection from the pool in time (TimeoutError), and every error of the database but a
    value or a row it refused (IntegrityError, DataError: a constraint or a trigger refusing the
    record): its connection failing, a commit whose outcome is unknown (OperationalError,
    InterfaceError), a read-only server after a failover (InternalError), a permission revoked
    or a column missing (ProgrammingError), NotSupportedError."""
    known = (_Terminated, SourceError, ServiceError, ItemFailed, ItemGone, PoolTimeout)
    if not isinstance(exc, Exception) or isinstance(exc, known):
        return False
    return not isinstance(exc, DBAPIError) or isinstance(exc, (IntegrityError, DataError))


def _note_crash(services: Services, held: _Held, reading: _Reading) -> None:
    """Count the run stopped on the item (CRASHED_MARK), after the records applied: in the
    run's end, as best it can (the error that stopped the run is what the caller sees)."""
    checkpoint = crashed_checkpoint(reading.crashes, reading.applied, reading.version)

    def attempt() -> None:
        with services.write() as tx:
            _hold(tx, held)
            _checkpoint(tx, held.domain_name, held.flow_name, reading.item.key, checkpoint)

    try:
        retrying(attempt)
    except Exception as exc:
        logger.error(
            "A run of flow %s of domain %s could not count the item it stopped on (%s).",
            held.flow_name,
            held.domain_name,
            type(exc).__name__,
            exc_info=exc,
        )


def _apply_alone(
    services: Services,
    held: _Held,
    read: tuple[Flow, str],
    chunk: list[tuple[int, ItemRecord | BadRecord]],
    counts: dict[str, int],
    *,
    checkpoint: Callable[[int], str | None],
    reading: _Reading,
) -> tuple[dict[str, int], list[int]]:
    """Apply one record a transaction the records of a chunk (with their positions in the
    item) that raised an unexpected error on the item's last attempt (CRASH_ATTEMPTS); a record
    that raises again on its own is dead-lettered (CRASHED_RECORD). The counts, and the
    positions of the records set aside. `checkpoint(n)`: the item's checkpoint once its records
    up to position n are done, or None.

    When no record of the chunk (of more than one) applies alone, the error is not taken for
    theirs but for the system's (every write refused: a trigger or a grant gone wrong): none is
    set aside, `reading.systemic` is set and the first error raised, so that the run fails as
    on any internal error without counting it. So the records that raise are dead-lettered
    only once the chunk is through, each with the checkpoint moved up to the next."""
    flow, key = read
    raised: list[tuple[int, ItemRecord | BadRecord, Exception]] = []
    for position, record in chunk:
        # Not past a record that raised and is not dead-lettered yet.
        done = raised[0][0] - 1 if raised else position
        try:
            counts = _apply_retrying(services, held, read, [record], counts, checkpoint(done))
        except Exception as exc:
            if not _item_crash(exc):
                raise
            raised.append((position, record, exc))
    if raised and len(raised) == len(chunk) > 1:
        reading.systemic = True
        raise raised[0][2]
    for index, (_, record, crash) in enumerate(raised):
        logger.error(
            "A record of flow %s of domain %s stopped its runs %d times in a row (%s): it "
            "is dead-lettered.",
            held.flow_name,
            held.domain_name,
            CRASH_ATTEMPTS,
            type(crash).__name__,
            exc_info=crash,
        )
        done = raised[index + 1][0] - 1 if index + 1 < len(raised) else chunk[-1][0]

        def set_aside_one(
            record: ItemRecord | BadRecord = record,
            done: int = done,
            error: str = type(crash).__name__,
            counts: dict[str, int] = counts,
        ) -> dict[str, int]:
            counted = dict(counts)
            with services.write() as tx:
                _hold(tx, held)
                dead_letter_in(
                    tx,
                    domain_name=held.domain_name,
                    object_type_name=held.type_name,
                    object_json=record.text if isinstance(record, ItemRecord) else record.content,
                    reason=CRASHED_RECORD.format(error=error, attempts=CRASH_ATTEMPTS),
                    category="invalid_value",
                    not_retryable=_not_retryable(
                        held.domain_name,
                        flow,
                        "a record that stopped the flow with an internal error, read "
                        "without the flow's tasks",
                    ),
                    origin=_origin(flow, key, record.place),
                )
                counted["records_read"] += 1
                counted["records_dead_lettered"] += 1
                _update_run(tx, held.domain_name, held.run_id, counted)
                if (partial := checkpoint(done)) is not None:
                    _checkpoint(tx, held.domain_name, held.flow_name, key, partial)
            return counted

        counts = retrying(set_aside_one)
    return counts, [position for position, _, _ in raised]


def _records_to_apply(
    read: ItemRecords, plan: Unapplied
) -> Iterator[tuple[int, ItemRecord | BadRecord]]:
    """The item's records `plan` wants (`read_plan`), with their positions: the others
    (applied by an earlier run) are read again, as a stream is read from its start, and passed
    over. Only when the content read is the one the checkpoint counted, so they are the same
    records. The part of the item that could not be read this time (flows.items: its last
    BadRecord) is not passed over, wherever it comes: the item is then a failed item, as it
    says."""
    for position, record in enumerate(read.records, start=1):
        if read.failed or plan.wants(position):
            yield position, record


def run_flow(
    services: Services,
    *,
    domain_name: str,
    flow_name: str,
    trigger: str = "OnDemand",
    complete: bool | None = None,
    on_progress: Progress | None = None,
    source: FlowSource | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> FlowRun:
    """Run the flow once and return the finished run (COMPLETED or FAILED); RunInProgress when
    a run of the flow is in progress (the module docstring).

    `complete` reads every item (default: OnDemand runs and DataPullMode Complete do); otherwise
    only items new or changed since the checkpoint are read, an item begun by a run that stopped
    resumed after the records it applied. Only an OnDemand run (one asked for: `openprofiles flows
    run`, the admin pages' button) reads again an item that failed and has not changed since — an
    incremental one too, applying what of it was not applied, so that the run its dead letter asks
    for reads it once its cause is fixed — and only an OnDemand run reads an item that has not
    settled. `clock` (seconds) times the listing of the source (LISTING_LIMIT) and the renewals of
    the claim.
    """
    found, flow = _load(services, domain_name, flow_name)
    read = source or source_for(services.settings, flow)
    run = _claimed(
        services,
        found,
        trigger,
        lambda held, stop: _run(
            services,
            held,
            flow,
            read,
            stop=stop,
            complete=complete,
            on_progress=on_progress,
            clock=clock,
        ),
    )
    assert run is not None
    return run


@dataclass
class _Stop:
    """What a run stopped by Ctrl-C or SIGTERM is ended with (`_claimed`): its claim (as the
    claim makes it, until the claim has returned it) and its counts as the run last knew them."""

    held: _Held
    counts: dict[str, int] = field(default_factory=lambda: _no_counts())


_R = TypeVar("_R")


def _claimed(
    services: Services,
    found: Integration,
    trigger: str,
    then: Callable[[_Held, _Stop], _R],
    due: Callable[[Tx], bool] | None = None,
) -> _R | None:
    """Claim the flow (`_claim`) and hand the claim to `then` (the run, or a failed start's
    record); None when `due` says the flow is not due.

    A stop (Ctrl-C, or SIGTERM: cli_support.Terminated, both KeyboardInterrupt) landing anywhere
    from the claim's transaction to the run's end recorded ends the run FAILED at once
    (INTERRUPTED, `_finish_stopped`): not only while it reads, but between its claim and its
    start, and during its final write (its end's transaction rolled back), where it was left
    RUNNING, holding the flow for STALE_AFTER. The run's id is chosen before the claim, so a
    stop landing as the claim commits, before the claim is returned, still ends the run it may
    have inserted; ending a run the claim did not insert (rolled back), or one whose end was
    recorded already (the stop landed just after), changes no run."""
    run_id = uuid.uuid4().hex
    stop = _Stop(_held_as_claimed(found, trigger, run_id, datetime.now(UTC)))
    try:
        held = retrying(lambda: _claim_in(services, found, trigger, due, run_id))
        if held is None:
            return None
        stop.held = held
        return then(held, stop)
    except KeyboardInterrupt:
        # The stop goes on to the caller (the command ends as Ctrl-C ends it).
        _finish_stopped(services, stop.held, stop.counts)
        raise


def _claim_in(
    services: Services,
    found: Integration,
    trigger: str,
    due: Callable[[Tx], bool] | None,
    run_id: str,
) -> _Held | None:
    with services.write() as tx:
        return _claim(tx, found, trigger, due, run_id)


def _claim(
    tx: Tx,
    found: Integration,
    trigger: str,
    due: Callable[[Tx], bool] | None = None,
    run_id: str | None = None,
) -> _Held | None:
    """Claim the flow for a new run, `run_id` (else a new id), and insert the run, RUNNING (the
    module docstring); the claim, or None when `due` says the flow is not due. RunInProgress
    when a run of the flow holds it, NotFound when the flow is gone. A RUNNING run that stopped
    holding it (silent for STALE_AFTER: its process ended) is closed FAILED."""
    domain_name, flow_name = found.domain_name, found.flow_name
    assert flow_name is not None
    # Claims of the flow queue on its integration's row (PostgreSQL): each finds the run the
    # one before it inserted. DeleteIntegration deletes the row, so it and a claim queue too.
    row = tx.conn.execute(
        select(integration.c.uri, integration.c.created_at)
        .where(integration.c.domain_name == domain_name, integration.c.flow_name == flow_name)
        .with_for_update()
    ).first()
    if row is None or (row.uri, row.created_at) != (found.uri, found.created_at):
        raise NotFound(f"The flow {flow_name} does not exist in domain {domain_name}.")
    running = tx.conn.execute(
        select(flow_run.c.run_id, flow_run.c.started_at, flow_run.c.progress_at).where(
            flow_run.c.domain_name == domain_name,
            flow_run.c.flow_name == flow_name,
            flow_run.c.status == "RUNNING",
        )
    ).all()
    stale: list[tuple[str, datetime]] = []
    for other in running:
        last = other.progress_at or other.started_at
        if last > tx.now - STALE_AFTER:
            raise RunInProgress(
                f"A run of the flow {flow_name} is in progress in domain {domain_name} (run "
                f"{other.run_id}, started {other.started_at.isoformat(timespec='seconds')}, "
                f"last progress {last.isoformat(timespec='seconds')}): a flow runs once at a "
                "time. Run it again when that run has ended; a run whose process was stopped "
                f"is closed once it has made no progress for {_duration(STALE_AFTER)}."
            )
        stale.append((other.run_id, last))
    if due is not None and not due(tx):
        for other_id, last in stale:
            _close_stopped(tx, domain_name, other_id, _stopped(last))
        return None
    run_id = run_id or uuid.uuid4().hex
    for other_id, last in stale:
        _close_stopped(tx, domain_name, other_id, _stopped(last, by=run_id))
    _insert_run(tx, domain_name, flow_name, trigger, run_id)
    return _held_as_claimed(found, trigger, run_id, tx.now)


def _held_as_claimed(found: Integration, trigger: str, run_id: str, started_at: datetime) -> _Held:
    """The claim of `found` for the run `run_id` (`_claim`)."""
    assert found.flow_name is not None
    return _Held(
        domain_name=found.domain_name,
        flow_name=found.flow_name,
        run_id=run_id,
        trigger=trigger,
        started_at=started_at,
        uri=found.uri,
        created_at=found.created_at,
        type_name=found.object_type_name or "",
        digest=_flow_digest(found.flow_definition, found.object_type_name),
    )


def _stopped(last: datetime, by: str | None = None) -> str:
    """The error of a run silent since `last` for STALE_AFTER; `by`: the run that took its flow
    over."""
    since, stale = last.isoformat(timespec="seconds"), _duration(STALE_AFTER)
    if by is None:
        return STOPPED.format(stale=stale, since=since)
    return STOPPED_TAKEN_OVER.format(stale=stale, since=since, by=by)


def _close_stopped(tx: Tx, domain_name: str, run_id: str, error: str) -> None:
    """End FAILED, with `error` (`_stopped`), a RUNNING run that stopped holding its flow. Its
    reason is sealed when the domain's key can be used (else it shows UNSEALED_ERROR): the
    claim goes on."""
    sealed = None
    with contextlib.suppress(ServiceError):
        sealed = tx.cipher(domain_name).seal_record(RUN_TABLE, run_id, {"error": error})
    # Only while it is still silent: a run that made progress meanwhile renewed its claim
    # (on PostgreSQL this waits for that transaction, then looks again).
    tx.conn.execute(
        update(flow_run)
        .where(
            flow_run.c.domain_name == domain_name,
            flow_run.c.run_id == run_id,
            flow_run.c.status == "RUNNING",
            flow_run.c.progress_at.is_(None) | (flow_run.c.progress_at <= tx.now - STALE_AFTER),
        )
        .values(status="FAILED", error_sealed=sealed, finished_at=tx.now)
    )


def _hold(tx: Tx, held: _Held) -> None:
    """Go on only if the run still holds its flow, renewing its claim; _Terminated with the
    reason otherwise: the flow was deleted, disabled, or the run lost its claim (the module
    docstring). First in every transaction of the run that applies or checkpoints."""
    domain_name = held.domain_name
    if held.type_name:
        # Before the integration is read, as the pipeline takes it before reading the type: a
        # DeleteProfileObjectType waited for has committed, and disabled the integration.
        lock_object_type(tx, domain_name=domain_name, name=held.type_name, shared=True)
    # Shared: DeleteIntegration, which deletes the row, waits for this transaction to end.
    tx.conn.execute(
        select(integration.c.uri)
        .where(integration.c.domain_name == domain_name, integration.c.flow_name == held.flow_name)
        .with_for_update(read=True)
    )
    found = find_flow_integration(tx, domain_name=domain_name, flow_name=held.flow_name)
    if found is None or (found.uri, found.created_at) != (held.uri, held.created_at):
        renamed = (
            found is None
            and tx.conn.execute(
                select(integration.c.uri).where(
                    integration.c.domain_name == domain_name,
                    integration.c.uri == held.uri,
                    integration.c.created_at == held.created_at,
                )
            ).first()
        )
        raise _Terminated(FLOW_RENAMED if renamed else FLOW_DELETED)
    if found.disabled_reason is not None:
        raise _Terminated(found.disabled_reason)
    if _flow_digest(found.flow_definition, found.object_type_name) != held.digest:
        raise _Terminated(FLOW_CHANGED)
    renewed = tx.conn.execute(
        update(flow_run)
        .where(
            flow_run.c.domain_name == domain_name,
            flow_run.c.run_id == held.run_id,
            flow_run.c.status == "RUNNING",
        )
        .values(progress_at=tx.now)
    )
    if renewed.rowcount == 0:
        raise _Terminated(TAKEN_OVER.format(stale=_duration(STALE_AFTER)))


class _Renewal:
    """Renews a run's claim (`_hold`, in a short transaction of its own) at most every
    RENEW_EVERY, where the run commits nothing for a while: while it lists its source
    (`listing`: one listing call can take long) and before it opens an item (called). What
    `_hold` raises (the run lost its flow) is raised in the run."""

    def __init__(self, services: Services, held: _Held, clock: Callable[[], float]) -> None:
        self.services = services
        self.held = held
        self.clock = clock
        self.at = clock()

    def __call__(self) -> None:
        if self.clock() - self.at >= RENEW_EVERY.total_seconds():
            self.renew()

    def renew(self) -> None:
        def attempt() -> None:
            with self.services.write() as tx:
                _hold(tx, self.held)

        retrying(attempt)
        self.at = self.clock()

    def listing(self, source: FlowSource, key: Hashable) -> list[SourceItem]:
        """The source's items, the claim renewed while they are listed; SourceError when the
        listing does not end within LISTING_LIMIT, or an earlier one of `key` still goes on
        (`list_source`)."""
        return list_source(source, clock=self.clock, waiting=self.renew, key=key)


@dataclass
class _Listing:
    """A listing going on in this process (`list_source`): when it began (`since`, for its
    messages; `started` by `clock`, the clock of the caller that began it), whether it was left
    to its thread past LISTING_LIMIT (`left`), and whether what it lists is kept, once it ends,
    for the next Event check of its flow (`kept`: an Event check left it, EVENT_CHECK_WAIT)."""

    since: datetime
    clock: Callable[[], float]
    started: float
    left: bool = False
    kept: bool = False

    def past_limit(self) -> bool:
        return self.clock() - self.started >= LISTING_LIMIT.total_seconds()


# The listings still going on in this process (`list_source`), by what they list
# (`listing_key`): a listing left to its thread (LISTING_HUNG, EVENT_CHECK_WAIT) is not begun
# again while it goes on, so a source that keeps hanging holds one thread, not one more every
# watcher pass.
_LISTINGS: dict[Hashable, _Listing] = {}
# What the listings an Event check left to their thread listed (the items, or the error raised),
# once they ended, by `listing_key`: taken by the flow's next Event check instead of listing again
# (a bucket whose listing takes longer than a check waits is still checked).
_LISTED: dict[Hashable, tuple[list[SourceItem], BaseException | None]] = {}
_LISTINGS_LOCK = threading.Lock()


def listing_key(services: Services, domain_name: str, flow: Flow) -> Hashable:
    """What `list_source` knows a flow's listing by: the flow and the source it reads (a flow
    put again with another folder or bucket lists that one, however the old one hangs), in
    this process's Services (a process has one; tests model other processes with others)."""
    where = (flow.source_kind, flow.folder, flow.bucket, flow.prefix)
    return (id(services), domain_name, flow.name, *where)


def list_source(
    source: FlowSource,
    *,
    clock: Callable[[], float] = time.monotonic,
    waiting: Callable[[], None] | None = None,
    key: Hashable | None = None,
    patience: float | None = None,
) -> list[SourceItem]:
    """`source.items()`, listed in a thread of its own while this one waits, calling `waiting`
    every RENEW_EVERY (a run renews its claim); ListingStuck (LISTING_HUNG) once the listing
    has gone on for LISTING_LIMIT by `clock`. A listing cannot be interrupted (a call blocked on
    a hung network mount, an endpoint paging for ever): it is left to its thread, which ends
    when it does, its result unused. While a listing of `key` (`listing_key`) left so goes on,
    another is not begun: ListingStuck (LISTING_BUSY) at once (a SourceError saying the same
    while one of another thread goes on within its time).

    `patience` (seconds; an Event check's, EVENT_CHECK_WAIT): the longest this caller waits. A
    listing of `key` not ended by then is left to its thread (ListingPending; ListingStuck if
    it has gone on for LISTING_LIMIT already), and what it lists, once it ends, is kept for
    the next call of `key` with a `patience`, which takes it instead of listing (`_LISTED`)."""
    listed: list[list[SourceItem]] = []
    failed: list[BaseException] = []
    ended = threading.Event()
    since = datetime.now(UTC)
    entry = _Listing(since, clock, clock())

    def listing() -> None:
        try:
            listed.append(source.items())
        except BaseException as exc:  # raised in the waiting thread, as if listed there
            failed.append(exc)
        finally:
            # Before `ended`: a listing that returned in time is over for the next one to begin.
            if key is not None:
                with _LISTINGS_LOCK:
                    if _LISTINGS.get(key) is entry:
                        del _LISTINGS[key]
                    if entry.kept:
                        _LISTED[key] = (listed[0] if listed else [], failed[0] if failed else None)
            ended.set()

    if key is not None:
        with _LISTINGS_LOCK:
            # A listing left by an Event check has ended since: its outcome is the next check's
            # (a run lists afresh).
            outcome = _LISTED.pop(key, None)
            if outcome is not None and patience is not None:
                if outcome[1] is not None:
                    raise outcome[1]
                return outcome[0]
            if (busy := _LISTINGS.get(key)) is not None:
                # Stuck when left, or going on, past LISTING_LIMIT; else another thread's,
                # going on within its time.
                busy.left = busy.left or busy.past_limit()
                raise (ListingStuck if busy.left else SourceError)(
                    LISTING_BUSY.format(
                        since=busy.since.isoformat(timespec="seconds"),
                        limit=_duration(LISTING_LIMIT),
                    )
                )
            _LISTINGS[key] = entry
    try:
        threading.Thread(target=listing, name="flow-listing", daemon=True).start()
    except BaseException:
        # No thread (the process is out of them): nothing lists it.
        if key is not None:
            with _LISTINGS_LOCK:
                _LISTINGS.pop(key, None)
        raise
    if patience is not None and not ended.wait(patience):
        with _LISTINGS_LOCK:
            going_on = key is None or _LISTINGS.get(key) is entry
            if going_on:
                entry.left, entry.kept = entry.past_limit(), key is not None
        if going_on:
            message = LISTING_HUNG if entry.left else LISTING_PENDING
            raise (ListingStuck if entry.left else ListingPending)(
                message.format(
                    limit=_duration(LISTING_LIMIT), since=since.isoformat(timespec="seconds")
                )
            )
        # Else it ended as it was being left (its thread is setting `ended`): its outcome is
        # this caller's.
    while not ended.wait(RENEW_EVERY.total_seconds()):
        if entry.past_limit():
            if key is not None:
                with _LISTINGS_LOCK:
                    entry.left = True
            raise ListingStuck(
                LISTING_HUNG.format(
                    limit=_duration(LISTING_LIMIT), since=since.isoformat(timespec="seconds")
                )
            )
        if waiting is not None:
            waiting()
    if failed:
        raise failed[0]
    return listed[0]


def _duration(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    return f"{minutes} minutes" if minutes else f"{span.total_seconds():g} seconds"


def _run(
    services: Services,
    held: _Held,
    flow: Flow,
    source: FlowSource,
    *,
    stop: _Stop | None = None,
    complete: bool | None = None,
    on_progress: Progress | None = None,
    drop_if_empty: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> FlowRun | None:
    """Run the claimed flow (`run_flow`); `drop_if_empty`: None, the run dropped, when it finds
    no item to read (an Event run that another process's run read the new items for). `stop`:
    where the run leaves its counts for its end should it be stopped (`_claimed`)."""
    stop = stop or _Stop(held)
    domain_name, flow_name, run_id = held.domain_name, held.flow_name, held.run_id
    type_name = held.type_name
    counts = _no_counts()
    read_all = complete if complete is not None else flow.pull_mode == "Complete"
    error: str | None = None
    automatic = held.trigger != "OnDemand"
    is_sqlite = services.database.is_sqlite
    renewal = _Renewal(services, held, clock)
    # The item being read, while it is (`_note_crash`).
    reading: _Reading | None = None
    try:
        # Only this run, which holds the flow, writes them until it ends.
        done = _Checkpoints(services, domain_name, flow_name)
        # Listing a large source commits nothing, for minutes maybe: the claim is renewed,
        # for LISTING_LIMIT at most.
        listed = renewal.listing(source, listing_key(services, domain_name, flow))
        # A listing is whole (every page of the bucket, every file of the folder), so an item
        # checkpointed and not in it is gone from the source: forgotten (the module docstring).
        # Not when nothing is listed: a folder whose mount is missing, or a source emptied by
        # mistake, looks so, and forgetting every item would read them all again once back.
        gone = done.gone(listed) if listed else []
        if automatic:
            listed = settled(services, listed)
        if not read_all:
            # A failed item, unchanged, waits for a run asked for (its dead letter says to run
            # the flow once the cause is fixed), incremental or not.
            items = [
                i
                for i in listed
                if is_pending(done(i), i)
                or (not automatic and failed_plan(done(i), i.version) is not None)
            ]
        elif automatic:
            items = [i for i in listed if failed_plan(done(i), i.version) is None]
        else:
            items = listed
        # Every listed item was looked up (`gone`): their digests kept for the next listing.
        done.keep()
        if drop_if_empty and not items:
            with services.write() as tx:
                tx.conn.execute(
                    delete(flow_run).where(
                        flow_run.c.domain_name == domain_name,
                        flow_run.c.run_id == run_id,
                        flow_run.c.status == "RUNNING",
                    )
                )
            return None
        # The listing done, the run still holds its flow (the module docstring).
        with services.write() as tx:
            _hold(tx, held)
            _update_run(tx, domain_name, run_id, counts)
            _forget(tx, domain_name, flow_name, gone)
        for item in items:
            # Items gone since they were listed commit nothing either.
            renewal()
            failure: ItemFailed | None = None
            version, failed = item.version, False
            reading = _Reading(item, item.version, crashes=crashes_before(done(item), item.version))
            # What of the item is left unapplied should it fail (FAILED_MARK).
            left = Unapplied()
            try:
                with item_records(source, item) as read:
                    version = reading.version = read.version
                    reading.crashes = crashes = crashes_before(done(item), version)
                    failed_before = failed_plan(done(item), version)
                    reading.failed_before = failed_before is not None
                    plan = reading.plan = read_plan(done(item), version, read_all=read_all)
                    # Records are applied only in a transaction that checkpoints them as
                    # done: PARTIAL_MARK, or, an incremental run reading a failed item again,
                    # the failed checkpoint with what is left (so an automatic run still does
                    # not read it, and a run that stops midway leaves it failed). A
                    # checkpoint that says this content was read whole stays until the item
                    # is done: a Complete run reading it again that stops midway leaves it.
                    reread = None if read_all else failed_before
                    noted = done(item) != version and failed_before is None
                    taken = reading.applied = plan.done_before

                    def partial_at(
                        taken: int,
                        version: str = version,
                        crashes: Crashes | None = crashes,
                        noted: bool = noted,
                        reread: Unapplied | None = reread,
                    ) -> str | None:
                        """The checkpoint once the records up to position `taken` are done:
                        PARTIAL_MARK, but not over the count of the runs that stopped further
                        on (a run that reads the item from its start, a Complete one)."""
                        if reread is not None:
                            return reread.after(taken).failed_checkpoint(version)
                        if not noted:
                            return None
                        partial = partial_checkpoint(taken, version)
                        return None if crashes is not None and taken <= crashes.at else partial

                    for batch in _batches(_records_to_apply(read, plan)):
                        # A transaction a batch on SQLite, a bounded run of it on PostgreSQL
                        # (store.chunks: the shared lock table), each checkpointing its end.
                        for chunk in transaction_chunks(batch, is_sqlite=is_sqlite):
                            records = list(chunk)
                            last = records[-1][0]
                            try:
                                counts = _apply_retrying(
                                    services,
                                    held,
                                    (flow, item.key),
                                    [record for _, record in records],
                                    counts,
                                    partial_at(last),
                                )
                            except Exception as exc:
                                # The item's last attempt: what raises is set aside, a record
                                # at a time (CRASH_ATTEMPTS).
                                if not (reading.last_attempt and _item_crash(exc)):
                                    raise
                                counts, aside = _apply_alone(
                                    services,
                                    held,
                                    (flow, item.key),
                                    records,
                                    counts,
                                    checkpoint=partial_at,
                                    reading=reading,
                                )
                                reading.aside += aside
                            taken = reading.applied = last
                    failed = read.failed or bool(reading.aside)
                    # The part that could not be read (its last BadRecord, dead-lettered) is
                    # not applied: a run asked for reads the item from there.
                    left = plan.after(taken - 1 if read.failed else taken, reading.aside)
            except ItemGone:
                # Deleted since it was listed: no item of this run (the module docstring).
                reading = None
                continue
            except ItemFailed as exc:
                failure, failed = exc, True
                version = exc.version or item.version
                # Nothing of it applied now: what was not before still is not.
                left = read_plan(done(item), version, read_all=False)
            except Exception as exc:
                # Raised while the item was read, not while a batch was applied: on its last
                # attempt (CRASH_ATTEMPTS) it is a failed item, after the records applied.
                if reading.systemic or not (reading.last_attempt and _item_crash(exc)):
                    raise
                logger.error(
                    "Flow %s of domain %s stopped on an item %d runs in a row (%s): it is "
                    "dead-lettered as a failed item.",
                    flow_name,
                    domain_name,
                    CRASH_ATTEMPTS,
                    type(exc).__name__,
                    exc_info=exc,
                )
                reason = CRASHED_ITEM.format(
                    what=source.describe(item.key),
                    error=type(exc).__name__,
                    attempts=CRASH_ATTEMPTS,
                    applied=reading.applied,
                )
                failure, failed, version = ItemFailed(reason, ""), True, reading.version
                left = reading.plan.after(reading.applied, reading.aside)
            counts["items_read"] += 1
            if failure is not None:
                counts["records_read"] += 1
                counts["records_dead_lettered"] += 1

            def finish_item(
                item: SourceItem = item,
                failure: ItemFailed | None = failure,
                version: str = version,
                failed: bool = failed,
                counts: dict[str, int] = counts,
                left: Unapplied = left,
            ) -> FlowRun:
                with services.write() as tx:
                    _hold(tx, held)
                    if failure is not None:
                        # One dead letter for the whole item, in the transaction that
                        # checkpoints it: a crash in between can neither lose the item nor
                        # dead-letter it twice.
                        dead_letter_in(
                            tx,
                            domain_name=domain_name,
                            object_type_name=type_name,
                            object_json=failure.content,
                            reason=failure.reason,
                            category="invalid_value",
                            not_retryable=_not_retryable(
                                domain_name, flow, f"{source.describe(item.key)}, not a record"
                            ),
                            origin=_origin(flow, item.key),
                        )
                    checkpoint = left.failed_checkpoint(version) if failed else version
                    _checkpoint(tx, domain_name, flow_name, item.key, checkpoint)
                    _update_run(tx, domain_name, run_id, counts)
                    return get_run(tx, domain_name=domain_name, run_id=run_id)

            # Run again when it lost a race (store.conflicts).
            current = retrying(finish_item)
            reading = None
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
    except Exception as exc:
        # No reason to show (a database error, a bug): the run still ends FAILED, not RUNNING
        # for ever, and the error goes on to the caller's log with its traceback. Stopped on
        # an item, it counts towards setting the item aside (CRASH_ATTEMPTS) — unless the item
        # had failed (set aside already: its checkpoint stays, read again by a run asked for,
        # not by every automatic one), or the error was found to be no record's.
        error = "An internal error stopped the run."
        if reading is not None and reading.failed_before:
            error = CRASHED_REREAD.format(what=source.describe(reading.item.key))
        elif reading is not None and reading.systemic:
            error = CRASHED_SYSTEMIC
        elif reading is not None and _item_crash(exc):
            _note_crash(services, held, reading)
        _finish_run(services, held, counts, error)
        raise
    finally:
        # Ctrl-C, or SIGTERM (cli_support.Terminated: systemd stopping the watcher on every
        # deploy), here or in the run's end below, ends the run FAILED now with these counts
        # (`_claimed`), not left RUNNING to hold the flow for STALE_AFTER (a process killed
        # outright still is, and closed after it). Its checkpoints stay as its committed
        # transactions left them (the item it was reading resumes after the batches applied).
        stop.counts = counts
    return _finish_run(services, held, counts, error)


# Digests deleted a statement (`_forget`): well within every backend's limit of parameters.
FORGET_CHUNK = 500
# The error of a run stopped by its process being asked to end (Ctrl-C, SIGTERM).
INTERRUPTED = (
    "The run was stopped: its process was asked to end (Ctrl-C or SIGTERM, as a service "
    "manager stops it). What it applied stays applied; the flow's next run reads the rest."
)
# How long a run stopped so waits for its end to be recorded: a database that does not answer
# must not turn the stop into a hang (the run is then closed after STALE_AFTER, as before).
INTERRUPTED_WAIT = timedelta(seconds=10)


def _finish_stopped(services: Services, held: _Held, counts: dict[str, int]) -> None:
    """End the run FAILED (INTERRUPTED), as best it can within INTERRUPTED_WAIT: in a thread
    of its own, left to itself past that (the process is ending), its failure logged."""

    def finish() -> None:
        try:
            retrying(lambda: _finish_run(services, held, counts, INTERRUPTED))
        except Exception as exc:
            logger.error(
                "A run of flow %s of domain %s was stopped and could not be recorded as "
                "ended (%s); it is closed after %s.",
                held.flow_name,
                held.domain_name,
                type(exc).__name__,
                _duration(STALE_AFTER),
                exc_info=exc,
            )

    ending = threading.Thread(target=finish, name="flow-run-stopped", daemon=True)
    ending.start()
    ending.join(INTERRUPTED_WAIT.total_seconds())
    if ending.is_alive():
        logger.warning(
            "A run of flow %s of domain %s was stopped, and its end was not recorded within "
            "%s: it is closed after %s.",
            held.flow_name,
            held.domain_name,
            _duration(INTERRUPTED_WAIT),
            _duration(STALE_AFTER),
        )


def _no_counts() -> dict[str, int]:
    return {
        "items_read": 0,
        "records_read": 0,
        "records_ingested": 0,
        "records_filtered": 0,
        "records_dead_lettered": 0,
    }


def _insert_run(
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
            **_no_counts(),
        )
    )
    return run_id


def _finish_run(
    services: Services,
    held: _Held,
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
        sealed = None
        # The domain's key may be unusable (often why the run failed): the run still ends
        # FAILED, its reason told to the caller only, as nothing can seal it.
        with contextlib.suppress(ServiceError):
            if error and seal:
                sealed = tx.cipher(domain_name).seal_record(RUN_TABLE, run_id, {"error": error})
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


def _prune_runs(tx: Tx, held: _Held) -> None:
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


def _apply_retrying(
    services: Services,
    held: _Held,
    read: tuple[Flow, str],
    batch: list[ItemRecord | BadRecord],
    counts: dict[str, int],
    partial: str | None,
) -> dict[str, int]:
    """Apply a batch in a transaction of its own, run again if it lost a race with another
    process (store.conflicts); the counts with the batch's added (counted on a copy, so an
    attempt rolled back counts nothing). The run's counts are stored with the batch: a run
    over one large item shows its progress, and renews its claim on the flow (STALE_AFTER).
    So is the item's `partial` checkpoint (PARTIAL_MARK), when given: a run that stops after
    this batch committed resumes the item after it, one that stops before, with it."""

    def attempt() -> dict[str, int]:
        counted = dict(counts)
        with services.write() as tx:
            _hold(tx, held)
            _apply_batch(tx, held.domain_name, held.type_name, read, batch, counted)
            _update_run(tx, held.domain_name, held.run_id, counted)
            if partial is not None:
                _checkpoint(tx, held.domain_name, held.flow_name, read[1], partial)
        return counted

    return retrying(attempt)


def _batches(
    records: Iterator[tuple[int, ItemRecord | BadRecord]],
) -> Iterator[list[tuple[int, ItemRecord | BadRecord]]]:
    """The records (with their positions) in batches of up to BATCH_SIZE records and about
    BATCH_BYTES of text, read as the batches are taken (a streamed item is never held whole)."""
    batch: list[tuple[int, ItemRecord | BadRecord]] = []
    size = 0
    for position, record in records:
        batch.append((position, record))
        size += len(record.text if isinstance(record, ItemRecord) else record.content)
        if len(batch) == BATCH_SIZE or size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _origin(flow: Flow, key: str | None = None, place: str | None = None) -> str:
    """The origin of the flow's dead letters, named first in their reasons and in those of
    their retries (dlq.service): "Flow crm" for an item, "Flow crm, exports/contacts.jsonl, line
    3" for a record of one. The item is named by its key in the source (the file's name in the
    folder, the object's key in the bucket), as `ingest FILE` names a file by its base name."""
    where = ", ".join(part for part in (key, place) if part)
    return f"Flow {flow.name}, {where}" if where else f"Flow {flow.name}"


def _not_retryable(domain_name: str, flow: Flow, what: str) -> str:
    """Why `dlq retry` cannot ingest a dead letter of the flow that is not a record as the
    object type takes it, and what to do instead."""
    return (
        f"This dead letter holds {what} (flow {flow.name}): a retry cannot ingest it. Fix the "
        f"source and run the flow on demand (openprofiles flows run {flow.name} --domain "
        f"{domain_name}), which reads it again; then purge this dead letter."
    )


def _apply_batch(
    tx: Tx,
    domain_name: str,
    type_name: str,
    read: tuple[Flow, str],
    batch: list[ItemRecord | BadRecord],
    counts: dict[str, int],
) -> None:
    flow, key = read
    for item_record in batch:
        counts["records_read"] += 1
        if isinstance(item_record, BadRecord):
            dead_letter_in(
                tx,
                domain_name=domain_name,
                object_type_name=type_name,
                object_json=item_record.content,
                reason=item_record.reason,
                category="invalid_value",
                not_retryable=_not_retryable(domain_name, flow, "a part of an item, not a record"),
                origin=_origin(flow, key, item_record.place),
            )
            counts["records_dead_lettered"] += 1
            continue
        raw = item_record.text
        reason: str | None = None
        category = "invalid_value"
        not_retryable: str | None = None
        try:
            parsed = load_json(raw, "The record")
            if not isinstance(parsed, dict):
                raise ValueError("a record must be a JSON object")
            record = apply_tasks(flow.tasks, parsed)
            if record is None:
                counts["records_filtered"] += 1
                continue
            mapped_raw = raw if record == parsed else json.dumps(record, ensure_ascii=False)
            # From here on the record is what the object type takes (PutProfileObject's
            # Object): a dead letter holds it so, and a retry ingests what the flow would have.
            raw = mapped_raw
            # The limit applies to what the object type takes, as AppFlow maps a record before
            # Customer Profiles sees it: a Map task may shorten a long export's record.
            if (too_long := over_the_limit(mapped_raw)) is not None:
                raise too_long
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
            # A retry would ingest it without the flow's tasks, its Validate task included.
            not_retryable = _not_retryable(
                domain_name, flow, "a record that failed a Validate task, which a retry skips"
            )
        except IngestRejected as exc:
            reason, category = exc.reason, exc.category
        except NotFound as exc:
            # The domain or the object type is gone (a request error, not the record's): the
            # run ends FAILED, and the item waits in the source (the module docstring).
            raise _Terminated(exc.message) from exc
        except ServiceError as exc:
            reason = exc.message
        dead_letter_in(
            tx,
            domain_name=domain_name,
            object_type_name=type_name,
            object_json=raw,
            reason=reason,
            category=category,
            not_retryable=not_retryable,
            origin=_origin(flow, key, item_record.place),
        )
        counts["records_dead_lettered"] += 1


def _checkpoint(tx: Tx, domain_name: str, flow_name: str, key: str, checkpoint: str) -> None:
    """Store the item's checkpoint: its version read, FAILED_MARK or PARTIAL_MARK with it."""
    statement: Any = (
        sqlite_insert(flow_item) if tx.services.database.is_sqlite else pg_insert(flow_item)
    )
    tx.conn.execute(
        statement.on_conflict_do_update(
            index_elements=["domain_name", "flow_name", "item_digest"],
            set_={"version": statement.excluded.version, "processed_at": tx.now},
        ),
        {
            "domain_name": domain_name,
            "flow_name": flow_name,
            "item_digest": item_digest(tx.cipher(domain_name), key),
            "version": checkpoint,
            "processed_at": tx.now,
        },
    )
    _items_changed(tx, domain_name, flow_name)


def _items_changed(tx: Tx, domain_name: str, flow_name: str) -> None:
    """Count a change of the flow's checkpoints, in its transaction (flows.check_cache: an Event
    check reads them again). On PostgreSQL the run's transaction holds the integration's row
    shared already (`_hold`), and only the run holding the flow writes its checkpoints, so this
    waits for no other run; DeleteIntegration and PutIntegration wait for it, as for `_hold`."""
    tx.conn.execute(
        update(integration)
        .where(integration.c.domain_name == domain_name, integration.c.flow_name == flow_name)
        .values(flow_item_changes=integration.c.flow_item_changes + 1)
    )


def _forget(tx: Tx, domain_name: str, flow_name: str, digests: list[bytes]) -> None:
    """Delete the checkpoints of the items gone from the flow's source (the module docstring)."""
    for at in range(0, len(digests), FORGET_CHUNK):
        tx.conn.execute(
            delete(flow_item).where(
                flow_item.c.domain_name == domain_name,
                flow_item.c.flow_name == flow_name,
                flow_item.c.item_digest.in_(digests[at : at + FORGET_CHUNK]),
            )
        )
    if digests:
        _items_changed(tx, domain_name, flow_name)
        # A digest of a file name or an object key, which can name a customer.
        tx.erased()


def _update_run(tx: Tx, domain_name: str, run_id: str, counts: dict[str, int], **more: Any) -> None:
    tx.conn.execute(
        update(flow_run)
        .where(flow_run.c.domain_name == domain_name, flow_run.c.run_id == run_id)
        .values(**counts, **more)
    )


def run_due_flows(
    services: Services, *, now: datetime, clock: Callable[[], float] = time.monotonic
) -> list[FlowRun]:
    """Start every Scheduled flow whose interval has passed and every Event flow whose source
    has new items; returns the runs made, the failed starts recorded among them. A domain or a
    flow that fails is logged and passed over; the other flows run (the module docstring).
    `clock` (seconds) times the listings of sources (LISTING_LIMIT), as `run_flow`'s does."""
    runs = []
    # What the process keeps of the flows listed, and the domains whose flows are not known.
    live: set[Hashable] = set()
    unknown: set[str] = set()
    for domain_name in _flow_domains(services):
        try:
            with services.read() as tx:
                flows = list_flow_integrations(tx, domain_name=domain_name)
        except Exception as exc:
            _log_failure("The flows of domain %s were not checked", (domain_name,), exc)
            unknown.add(domain_name)
            continue
        live.update(key for found in flows for key in _kept_for(services, found))
        for found in flows:
            run = _run_if_due(services, found, now, clock)
            if run is not None:
                runs.append(run)
    _drop_gone_flows(services, live, unknown)
    return runs


def _kept_for(services: Services, found: Integration) -> list[Hashable]:
    """What the process may keep of the flow between passes: its item digests and checkpoints
    (by flow), and its listings (by `listing_key`, when its definition can be read)."""
    assert found.flow_name is not None
    keys: list[Hashable] = [(id(services), found.domain_name, found.flow_name)]
    # One that cannot be read is logged by its check (`_run_if_due`), not here.
    with contextlib.suppress(Exception):
        flow = parse_flow_definition(found.flow_definition or {})
        keys.append(listing_key(services, found.domain_name, flow))
    return keys


def _drop_gone_flows(services: Services, live: set[Hashable], unknown: set[str]) -> None:
    """Drop what the process keeps between passes (listings an Event check left to their thread,
    `_LISTED`; its warnings of stuck listings; item digests; checkpoints, flows.check_cache) for
    the flows of this Services that the pass did not find (deleted, renamed, or reading another
    source now), but those of a domain whose flows could not be listed (`unknown`: nothing says
    they are gone). No check of a flow deleted would take them: they were kept for ever."""
    mine = id(services)

    def gone(key: Hashable) -> bool:
        return (
            isinstance(key, tuple) and key[0] == mine and key[1] not in unknown and key not in live
        )

    check_cache.drop(gone)
    drop_item_digests(gone)
    with _LISTINGS_LOCK:
        for kept in (_LISTED, _STUCK_WARNED):
            for key in [key for key in kept if gone(key)]:
                del kept[key]


def _flow_domains(services: Services) -> list[str]:
    """The domains that have flows, read without their keys (each domain's flows are then
    listed on their own, with its key)."""
    with services.read() as tx:
        return list(
            tx.conn.execute(
                select(integration.c.domain_name)
                .where(integration.c.flow_name.is_not(None))
                .distinct()
                .order_by(integration.c.domain_name)
            ).scalars()
        )


def _run_if_due(
    services: Services, found: Integration, now: datetime, clock: Callable[[], float]
) -> FlowRun | None:
    """The flow's run when it is due (or its failed start, `_failed_start`), else None: also
    when a run of the flow holds it (the module docstring)."""
    assert found.flow_definition is not None and found.flow_name is not None
    trigger: str | None = None
    due: Callable[[Tx], bool] | None = None
    try:
        flow = parse_flow_definition(found.flow_definition)
        if flow.trigger_type == "Scheduled":
            if not _in_schedule(flow, now):
                return None
            trigger = "Scheduled"
            listed = flow
            due = lambda tx: _schedule_due(tx, found.domain_name, listed, now)  # noqa: E731
            # Most passes find it not due: asked in a read first, with no source made and no
            # lock taken; the claim asks again under its lock.
            with services.read() as tx:
                if not due(tx):
                    return None
            loaded, flow = _load(services, found.domain_name, flow.name)
            source = source_for(services.settings, flow)
            return _claimed(
                services,
                loaded,
                "Scheduled",
                lambda held, stop: _run(services, held, flow, source, stop=stop, clock=clock),
                due,
            )
        if flow.trigger_type != "Event":
            return None
        trigger = "Event"
        source = source_for(services.settings, flow)
        try:
            # Not waited for long (EVENT_CHECK_WAIT): the other flows wait for this check.
            pending = pending_items(
                services,
                found.domain_name,
                flow,
                source,
                settled_only=True,
                patience=EVENT_CHECK_WAIT.total_seconds(),
                clock=clock,
            )
        except ListingStuck:
            # No run to fail, so say it in the log: else a hung source would stop the flow
            # without a word.
            _warn_stuck(services, found.domain_name, flow)
            return None
        except SourceError:
            return None
        if not pending:
            return None
        loaded, flow = _load(services, found.domain_name, flow.name)
        # Listed again under the claim: a run that held the flow meanwhile may have read them.
        return _claimed(
            services,
            loaded,
            "Event",
            lambda held, stop: _run(
                services, held, flow, source, stop=stop, drop_if_empty=True, clock=clock
            ),
        )
    except RunInProgress:
        return None
    except Exception as exc:
        where = (found.flow_name, found.domain_name)
        _log_failure("Flow %s of domain %s could not run", where, exc)
        if trigger is None or not isinstance(exc, ServiceError):
            # Not known to be due, or no reason to show (a database error, a bug): a run it
            # stopped ended FAILED already (run_flow).
            return None
        return _failed_start(services, found, trigger, exc, due)


# When each flow's Event check last warned that its source's listing is stuck (`_warn_stuck`), by
# `listing_key`, in time.monotonic seconds.
_STUCK_WARNED: dict[Hashable, float] = {}


def _warn_stuck(services: Services, domain_name: str, flow: Flow) -> None:
    """Log that the Event flow was not checked, its source's listing stuck (ListingStuck): at
    most once per LISTING_LIMIT per flow (the watcher checks every few seconds), naming only the
    flow and its domain (a folder's path or a bucket's key can be personal data)."""
    key = listing_key(services, domain_name, flow)
    at = time.monotonic()
    with _LISTINGS_LOCK:
        last = _STUCK_WARNED.get(key)
        if last is not None and at - last < LISTING_LIMIT.total_seconds():
            return
        _STUCK_WARNED[key] = at
    logger.warning(
        "Flow %s of domain %s was not checked for new items: a listing of its source has not "
        "ended within %s, and it is not listed again until that listing returns. Check that "
        "its folder or bucket answers (a hung network mount, an endpoint that never answers).",
        flow.name,
        domain_name,
        _duration(LISTING_LIMIT),
    )


def _log_failure(what: str, args: tuple[str, ...], exc: Exception) -> None:
    """Log a domain or flow that failed in `run_due_flows`: a ServiceError by its code (its
    message can quote a value: a source's object key, a task's field), anything else by its
    type with its traceback (logging_setup withholds its message)."""
    if isinstance(exc, ServiceError):
        logger.warning(what + " (%s); the other flows go on.", *args, exc.code)
    else:
        logger.error(what + ": %s; the other flows go on.", *args, type(exc).__name__, exc_info=exc)


def _failed_start(
    services: Services,
    found: Integration,
    trigger: str,
    exc: ServiceError,
    due: Callable[[Tx], bool] | None,
) -> FlowRun | None:
    """Record a run of the flow that could not start, FAILED with `exc`'s message (the module
    docstring), under a claim of the flow, when `due` (a Scheduled flow's) says it is due; None
    when none is recorded: not due, the flow was deleted meanwhile, a run of it holds it, or it
    is an Event flow whose newest run failed already."""
    domain_name, flow_name = found.domain_name, found.flow_name
    assert flow_name is not None

    def not_failed_before(tx: Tx) -> bool:
        newest = tx.conn.execute(
            select(flow_run.c.status)
            .where(flow_run.c.domain_name == domain_name, flow_run.c.flow_name == flow_name)
            .order_by(flow_run.c.started_at.desc(), flow_run.c.run_id.desc())
            .limit(1)
        ).first()
        return newest is None or newest.status != "FAILED"

    # domains.service.domain_cipher raises the key's failure with the KeyUnusable as its cause.
    from_key = isinstance(exc.__cause__, KeyUnusable)
    try:
        return _claimed(
            services,
            found,
            trigger,
            lambda held, _: _finish_run(
                services, held, _no_counts(), exc.message, seal=not from_key
            ),
            not_failed_before if trigger == "Event" else due,
        )
    except (NotFound, RunInProgress):
        return None


def _in_schedule(flow: Flow, now: datetime) -> bool:
    """Whether `now` is inside the flow's ScheduleStartTime/EndTime."""
    if flow.schedule_start is not None and now < flow.schedule_start:
        return False
    return flow.schedule_end is None or now <= flow.schedule_end


def _schedule_due(tx: Tx, domain_name: str, flow: Flow, now: datetime) -> bool:
    """Whether the Scheduled flow's interval has passed since its previous scheduled run:
    asked under the claim (`_claim`), so that of two watchers only one starts the run."""
    if not _in_schedule(flow, now):
        return False
    last = tx.conn.execute(
        select(flow_run.c.started_at)
        .where(
            flow_run.c.domain_name == domain_name,
            flow_run.c.flow_name == flow.name,
            flow_run.c.trigger == "Scheduled",
        )
        .order_by(flow_run.c.started_at.desc())
        .limit(1)
    ).first()
    assert flow.interval_seconds is not None
    return last is None or now >= last.started_at + timedelta(seconds=flow.interval_seconds)
