"""An item's records, applied in batches: each batch in a transaction of its own that still
holds the flow (flows.claims), with the run's counts and the item's checkpoint as begun; each
record through the flow's Tasks and the one pipeline, or dead-lettered.

Items are read as flows.items says: whole up to a size, streamed as JSON lines beyond it, in
batches of at most `BATCH_SIZE` records and about `BATCH_BYTES`.

A dead letter that holds no record the object type can take as it is — a failed item, a part of
an item that is not a record, a record that failed a Validate task — says so (its
`not_retryable`, `why_not_retryable`): `dlq retry` leaves it alone, and points at running the
flow again. A record that the pipeline rejected is dead-lettered as the flow's tasks made it, so
a retry ingests what the flow would have.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from openprofiles.context import Services, Tx
from openprofiles.dlq.sinks import dead_letter_in
from openprofiles.errors import NotFound, ServiceError
from openprofiles.flows.checkpoint_store import store_checkpoint
from openprofiles.flows.checkpoints import Unapplied
from openprofiles.flows.claims import Terminated, hold
from openprofiles.flows.items import BadRecord, ItemRecord, ItemRecords
from openprofiles.flows.models import Flow
from openprofiles.flows.runs import Held, update_run
from openprofiles.flows.tasks import RecordFailed, apply_tasks
from openprofiles.ingest.bulk import over_the_limit
from openprofiles.ingest.pipeline import IngestRejected, ingest_object
from openprofiles.json_text import JsonTextError, load_json
from openprofiles.store.conflicts import retrying

BATCH_SIZE = 500
# Records of a streamed item can be long: a batch also ends once its records hold this much text.
BATCH_BYTES = 8 * 1024 * 1024


def records_to_apply(
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


def in_batches(
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


def apply_retrying(
    services: Services,
    held: Held,
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
            hold(tx, held)
            _apply_batch(tx, held.domain_name, held.type_name, read, batch, counted)
            update_run(tx, held.domain_name, held.run_id, counted)
            if partial is not None:
                store_checkpoint(tx, held.domain_name, held.flow_name, read[1], partial)
        return counted

    return retrying(attempt)


def origin(flow: Flow, key: str | None = None, place: str | None = None) -> str:
    """The origin of the flow's dead letters, named first in their reasons and in those of
    their retries (dlq.service): "Flow crm" for an item, "Flow crm, exports/contacts.jsonl, line
    3" for a record of one. The item is named by its key in the source (the file's name in the
    folder, the object's key in the bucket), as `ingest FILE` names a file by its base name."""
    where = ", ".join(part for part in (key, place) if part)
    return f"Flow {flow.name}, {where}" if where else f"Flow {flow.name}"


def why_not_retryable(domain_name: str, flow: Flow, what: str) -> str:
    """Why `dlq retry` cannot ingest a dead letter of the flow that is not a record as the
    object type takes it, and what to do instead."""
    return (
        f"This dead letter holds {what} (flow {flow.name}): a retry cannot ingest it. Fix the "
        f"source and run the flow on demand (openprofiles flows run {flow.name} --domain "
        f"{domain_name}), which reads it again; then purge this dead letter."
    )


def _terminated(
    read: tuple[Flow, str], batch: list[ItemRecord | BadRecord], index: int, reason: str
) -> str:
    """The run's error when the batch's record at `index` failed a TerminateFlow Validate
    task: where it is (as a dead letter's origin says), and what became of the records before
    it in its batch — rolled back with the batch's transaction, so not applied, and read again
    by the flow's next run (the item's checkpoint is the previous batch's). The run's counts
    are those of the batches applied (the batch's copy of them is dropped, `apply_retrying`)."""
    flow, key = read
    where = origin(flow, key, batch[index].place)
    said = f"{where}: {reason} The flow was terminated (TerminateFlow)."
    if index == 0:
        return said
    first = batch[0].place or "the item's start"
    some, were, them = (
        (f"The {index} records", "were", "them") if index > 1 else ("The record", "was", "it")
    )
    return (
        f"{said} {some} before it in its batch (from {first}) {were} not applied either: the "
        f"flow's next run reads {them} again."
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
    for index, item_record in enumerate(batch):
        counts["records_read"] += 1
        if isinstance(item_record, BadRecord):
            dead_letter_in(
                tx,
                domain_name=domain_name,
                object_type_name=type_name,
                object_json=item_record.content,
                reason=item_record.reason,
                category="invalid_value",
                not_retryable=why_not_retryable(
                    domain_name, flow, "a part of an item, not a record"
                ),
                origin=origin(flow, key, item_record.place),
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
                raise Terminated(_terminated(read, batch, index, exc.reason)) from exc
            reason = exc.reason
            # A retry would ingest it without the flow's tasks, its Validate task included.
            not_retryable = why_not_retryable(
                domain_name, flow, "a record that failed a Validate task, which a retry skips"
            )
        except IngestRejected as exc:
            reason, category = exc.reason, exc.category
        except NotFound as exc:
            # The domain or the object type is gone (a request error, not the record's): the
            # run ends FAILED, and the item waits in the source (flows.claims).
            raise Terminated(exc.message) from exc
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
            origin=origin(flow, key, item_record.place),
        )
        counts["records_dead_lettered"] += 1
