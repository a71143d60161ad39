"""A run of a claimed flow: list its source, choose the items to read, read each (its records
applied in batches, flows.batches), checkpoint it, and end the run.

An item is checkpointed (flow_item) once its records are applied, and with each batch as begun
(`PARTIAL_MARK`: how many of its records were applied, in the batch's transaction): a run that
stops midway (its process killed, an error escaping it, the source failing) leaves the item
pending, and the next incremental run resumes it after the records applied, counting and
dead-lettering none of them again. A Complete run reads every item whole, as it always does.
What a checkpoint says, and what of an item a run applies by it, is flows.checkpoints'. An item
is checkpointed under the version of the content read (which may be newer than the one listed).

An item gone since it was listed (a file deleted, an object deleted or being replaced by a
delete and a put: `ItemGone`) is no item of the run: it is neither dead-lettered nor
checkpointed, and a run that lists it again reads it.

A run forgets the checkpoints of the items its source's listing no longer holds
(deleted in the transaction that begins its reading, flows.checkpoint_store `forget`), so that
flow_item does not keep a digest of every file name or object key the source ever held. A
listing is whole (every page of the bucket, every file of the folder, settled or not), and only
the run that holds the flow writes checkpoints, so no item listed loses its own. An item put
back afterwards is a new item, read whole again even in the same version — as a file dropped
into the folder, or an object uploaded, is: an Event trigger runs on each put — and so is every
item of a flow put again with another folder or prefix and then back. An Event check that finds
nothing new starts no run, so gone items are forgotten by the flow's next run. A listing of
nothing forgets nothing (a folder whose mount is missing looks empty; its items would all be
read again once back).

An item that cannot be read, is not UTF-8 text, is neither JSON nor JSON lines, or is too large to
read whole and not JSON lines is a failed item: dead-lettered whole (one message, with the reason
naming the file or object), counted as one record read and dead-lettered, and checkpointed as
failed, and the run goes on. No automatic run reads it again until it changes — the dead-letter
queue holds it; a run asked for (OnDemand: `openprofiles flows run`, with `--incremental` too, or
the admin pages' "Run now", whatever the flow's own trigger) reads it again, for when the cause was
fixed without changing it. So is a streamed item whose rest could not be read (its records before
that were ingested). A file of a folder that cannot even be looked at when listed
(flows.sources.UNREADABLE_VERSION) is such an item when no run has read it; one read before is
passed over, its checkpoint left as it was, by every run but a Complete one asked for (which
reads every item, and dead-letters it): that it cannot be looked at for a while says nothing of
a change (flows.checkpoints `unreadable_read_before`). A source that cannot be listed or read at
all fails the run instead, leaving its items to the next run (which resumes an item the run had
begun, see above; a Complete run applies its records again, which changes nothing: an object is
stored under its UNIQUE key, replacing itself), as does a run that stopped holding its flow.

A failed item can have been partly applied (a streamed item whose rest could not be read, an item
set aside, flows.crashes): its checkpoint keeps what of that content was not (FAILED_MARK,
`Unapplied`: the records after where its reading stopped, and the positions of those set aside
one by one), and an incremental run that reads it again, unchanged, applies exactly those,
passing over the others as it resumes an item: applied again, an older record would overwrite
what a later item brought since (a customer's new address going back to the old one). The
records set aside were dead-lettered as not retryable, never applied: they are among those
applied now, and their dead letters stay, to be purged. Each transaction of such a run writes
the failed checkpoint with what is left, so a run that stops midway leaves the item failed, with
less to apply; one that fails on an internal error there (its cause not fixed) says so
(CRASHED_REREAD) and does not count it as a crash: the item stays out of the automatic runs' way.
A changed item (another version) is read whole, as a new one; a run that reads every item
(Complete) reads it whole too, after the items before it, as it reads them all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy import delete

from openprofiles.context import Services
from openprofiles.dlq.sinks import dead_letter_in
from openprofiles.errors import ServiceError
from openprofiles.flows.batches import (
    apply_retrying,
    in_batches,
    origin,
    records_to_apply,
    why_not_retryable,
)
from openprofiles.flows.checkpoint_store import Checkpoints, forget, store_checkpoint
from openprofiles.flows.checkpoints import (
    CRASH_ATTEMPTS,
    Crashes,
    Unapplied,
    crashes_before,
    failed_plan,
    is_pending,
    partial_checkpoint,
    read_plan,
    unreadable_read_before,
)
from openprofiles.flows.claims import Renewal, Stop, Terminated, hold
from openprofiles.flows.crashes import (
    CRASHED_ITEM,
    CRASHED_REREAD,
    CRASHED_SYSTEMIC,
    Reading,
    apply_alone,
    item_crash,
    note_crash,
)
from openprofiles.flows.items import ItemFailed, item_records
from openprofiles.flows.listing import listing_key, settled
from openprofiles.flows.models import Flow, FlowRun
from openprofiles.flows.runs import Held, finish_run, get_run, no_counts, update_run
from openprofiles.flows.sources import FlowSource, ItemGone, SourceError, SourceItem
from openprofiles.store.chunks import transaction_chunks
from openprofiles.store.conflicts import retrying
from openprofiles.store.schema import flow_run

logger = logging.getLogger(__name__)


Progress = Callable[[FlowRun], None]


def run_claimed(
    services: Services,
    held: Held,
    flow: Flow,
    source: FlowSource,
    *,
    stop: Stop | None = None,
    complete: bool | None = None,
    on_progress: Progress | None = None,
    drop_if_empty: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> FlowRun | None:
    """Run the claimed flow (`run_flow`); `drop_if_empty`: None, the run dropped, when it finds
    no item to read (an Event run that another process's run read the new items for). `stop`:
    where the run leaves its counts for its end should it be stopped (`claimed`)."""
    stop = stop or Stop(held)
    domain_name, flow_name, run_id = held.domain_name, held.flow_name, held.run_id
    type_name = held.type_name
    counts = no_counts()
    read_all = complete if complete is not None else flow.pull_mode == "Complete"
    error: str | None = None
    automatic = held.trigger != "OnDemand"
    is_sqlite = services.database.is_sqlite
    renewal = Renewal(services, held, clock)
    # The item being read, while it is (`note_crash`).
    reading: Reading | None = None
    try:
        # Only this run, which holds the flow, writes them until it ends.
        done = Checkpoints(services, domain_name, flow_name)
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
            # Nor does an automatic Complete run read an item read before that cannot be
            # looked at now (a transient failure: flows.checkpoints `unreadable_read_before`):
            # its dead letter, every file's while a mount answers EIO, would tell of no change.
            items = [
                i
                for i in listed
                if failed_plan(done(i), i.version) is None
                and not unreadable_read_before(done(i), i)
            ]
        else:
            # A Complete run asked for reads every item, those that cannot be looked at too:
            # asked to read them all, it dead-letters each it cannot, saying why (so that the
            # admin knows), and its failed checkpoint has the next run that can look at it
            # read it, as asked.
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
        # The listing done, the run still holds its flow (flows.claims).
        with services.write() as tx:
            hold(tx, held)
            update_run(tx, domain_name, run_id, counts)
            forget(tx, domain_name, flow_name, gone)
        for item in items:
            # Items gone since they were listed commit nothing either.
            renewal()
            failure: ItemFailed | None = None
            version, failed = item.version, False
            reading = Reading(item, item.version, crashes=crashes_before(done(item), item.version))
            # What of the item is left unapplied should it fail (FAILED_MARK).
            left = Unapplied()
            try:
                # Reading commits nothing (a resumed item's records passed over, a line too
                # long to keep read to its end): the claim is renewed as it goes.
                with item_records(source, item, renewal) as read:
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

                    for batch in in_batches(records_to_apply(read, plan)):
                        # A transaction a batch on SQLite, a bounded run of it on PostgreSQL
                        # (store.chunks: the shared lock table), each checkpointing its end.
                        for chunk in transaction_chunks(batch, is_sqlite=is_sqlite):
                            records = list(chunk)
                            last = records[-1][0]
                            try:
                                counts = apply_retrying(
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
                                if not (reading.last_attempt and item_crash(exc)):
                                    raise
                                counts, aside = apply_alone(
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
                if reading.systemic or not (reading.last_attempt and item_crash(exc)):
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
                    hold(tx, held)
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
                            not_retryable=why_not_retryable(
                                domain_name, flow, f"{source.describe(item.key)}, not a record"
                            ),
                            origin=origin(flow, item.key),
                        )
                    checkpoint = left.failed_checkpoint(version) if failed else version
                    store_checkpoint(tx, domain_name, flow_name, item.key, checkpoint)
                    update_run(tx, domain_name, run_id, counts)
                    return get_run(tx, domain_name=domain_name, run_id=run_id)

            # Run again when it lost a race (store.conflicts).
            current = retrying(finish_item)
            reading = None
            if on_progress is not None:
                on_progress(current)
    except SourceError as exc:
        error = exc.message
    except Terminated as exc:
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
        elif reading is not None and item_crash(exc):
            note_crash(services, held, reading)
        finish_run(services, held, counts, error)
        raise
    finally:
        # Ctrl-C, or SIGTERM (cli_support.Terminated: systemd stopping the watcher on every
        # deploy), here or in the run's end below, ends the run FAILED now with these counts
        # (`claimed`), not left RUNNING to hold the flow for STALE_AFTER (a process killed
        # outright still is, and closed after it). Its checkpoints stay as its committed
        # transactions left them (the item it was reading resumes after the batches applied).
        stop.counts = counts
    return finish_run(services, held, counts, error)
