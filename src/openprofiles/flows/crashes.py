"""An item whose reading stops runs with an internal error: counted, and set aside on its last
attempt, so that the items after it do not wait for ever.

An item whose reading raises an error the run does not know (a bug, a record that crashes the
mapping) stops the run, FAILED with an internal error, as any such error does; the run counts
it in the item's checkpoint (CRASHED_MARK: runs in a row, and after how many of its records),
so that it is not retried for ever while the items after it wait. A run that gets past where
they stopped starts the count afresh. An error that says nothing of the item is not counted
(`item_crash`): the pool's TimeoutError, and every error of the database but a value or row
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
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from openprofiles.context import Services
from openprofiles.dlq.sinks import dead_letter_in
from openprofiles.errors import ServiceError
from openprofiles.flows.batches import apply_retrying, origin, why_not_retryable
from openprofiles.flows.checkpoint_store import store_checkpoint
from openprofiles.flows.checkpoints import CRASH_ATTEMPTS, Crashes, Unapplied, crashed_checkpoint
from openprofiles.flows.claims import Terminated, hold
from openprofiles.flows.items import BadRecord, ItemFailed, ItemRecord
from openprofiles.flows.models import Flow
from openprofiles.flows.runs import Held, update_run
from openprofiles.flows.sources import ItemGone, SourceError, SourceItem
from openprofiles.store.conflicts import retrying

logger = logging.getLogger(__name__)


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


@dataclass
class Reading:
    """The item a run is reading, for the run's end should an unexpected error stop it there
    (`note_crash`): the version read, up to which position its records are done in committed
    transactions (applied, passed over, or set aside), the runs that stopped on it before
    (`crashes_before`), what of it the run set out to apply (`plan`) and the positions it set aside;
    `failed_before`: the item failed in this version (a run asked for reads it again), and
    `systemic`: the error that stops the run was found not to be the records' (`apply_alone`)."""

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


def item_crash(exc: BaseException) -> bool:
    """Whether `exc`, escaping a run while it read an item, may be the item's (counted towards
    CRASH_ATTEMPTS): an error the run does not know. Not one that says nothing of the item: no
    connection from the pool in time (TimeoutError), and every error of the database but a
    value or a row it refused (IntegrityError, DataError: a constraint or a trigger refusing the
    record): its connection failing, a commit whose outcome is unknown (OperationalError,
    InterfaceError), a read-only server after a failover (InternalError), a permission revoked
    or a column missing (ProgrammingError), NotSupportedError."""
    known = (Terminated, SourceError, ServiceError, ItemFailed, ItemGone, PoolTimeout)
    if not isinstance(exc, Exception) or isinstance(exc, known):
        return False
    return not isinstance(exc, DBAPIError) or isinstance(exc, (IntegrityError, DataError))


def note_crash(services: Services, held: Held, reading: Reading) -> None:
    """Count the run stopped on the item (CRASHED_MARK), after the records applied: in the
    run's end, as best it can (the error that stopped the run is what the caller sees)."""
    checkpoint = crashed_checkpoint(reading.crashes, reading.applied, reading.version)

    def attempt() -> None:
        with services.write() as tx:
            hold(tx, held)
            store_checkpoint(tx, held.domain_name, held.flow_name, reading.item.key, checkpoint)

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


def apply_alone(
    services: Services,
    held: Held,
    read: tuple[Flow, str],
    chunk: list[tuple[int, ItemRecord | BadRecord]],
    counts: dict[str, int],
    *,
    checkpoint: Callable[[int], str | None],
    reading: Reading,
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
            counts = apply_retrying(services, held, read, [record], counts, checkpoint(done))
        except Exception as exc:
            if not item_crash(exc):
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
                hold(tx, held)
                dead_letter_in(
                    tx,
                    domain_name=held.domain_name,
                    object_type_name=held.type_name,
                    object_json=record.text if isinstance(record, ItemRecord) else record.content,
                    reason=CRASHED_RECORD.format(error=error, attempts=CRASH_ATTEMPTS),
                    category="invalid_value",
                    not_retryable=why_not_retryable(
                        held.domain_name,
                        flow,
                        "a record that stopped the flow with an internal error, read "
                        "without the flow's tasks",
                    ),
                    origin=origin(flow, key, record.place),
                )
                counted["records_read"] += 1
                counted["records_dead_lettered"] += 1
                update_run(tx, held.domain_name, held.run_id, counted)
                if (partial := checkpoint(done)) is not None:
                    store_checkpoint(tx, held.domain_name, held.flow_name, key, partial)
            return counted

        counts = retrying(set_aside_one)
    return counts, [position for position, _, _ in raised]
