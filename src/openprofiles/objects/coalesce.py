"""The PutProfileObject calls an event loop runs in one turn go through the pipeline as one batch.

The pipeline's cost is mostly per batch, not per record: its reads are a few IN-list queries and
its writes one executemany per statement, whatever the batch's size. Eight objects in one
`ingest_batch` cost about a third each of what eight batches of one do (docs/performance.md,
eleventh session). A busy server process has several PutProfileObject requests ready at once;
so on the event loop (SQLite; `blocking.may_defer`) the handler queues its object here and
answers with a `Deferred`. Once the turn's requests have run, each domain and object type's
queue is applied by one `ingest_batch`, in the order the requests came, so each record sees
what the ones before it did, as it would one request after the other. What runs once a profile
is written (auto-merge, `profiles.service.hooks_after`) runs once for the batch, as for a
BatchPutProfileObject: its records share one write time, so a RECENCY rule sees them as written
together — as they were, concurrently.

Each request still gets its own answer: its object's unique key, or, for a record the pipeline
rejected, the id of its dead letter or a request error naming it (objects.answers; the turn's
rejected records are dead-lettered together, as PutProfileObject does for one:
objects.handlers). Accepted records are answered as soon as their write has committed, without
waiting for those dead letters (an SQS queue may take its time).
An API error of the batch (an unknown domain or object type, a domain key that is disabled or
cannot be reached, a write that kept losing races) is every request's answer. A batch that fails
in any other way (a fault no rejection covers) is applied again one record at a time, so that
a record that breaks something fails alone. As for every write on the loop, the answers wait
for the commit, and if it fails, every request of the batch gets an internal error
(store.group_commit).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

from openprofiles.blocking import Deferred, run_on_the_loop
from openprofiles.context import Principal, RequestContext, Services
from openprofiles.errors import BadRequest, InternalServer, ServiceError
from openprofiles.ingest.pipeline import IngestRejected, IngestResult, ingest_batch
from openprofiles.ingest.rejections import dead_letter_rejected
from openprofiles.objects.answers import rejected_answer
from openprofiles.store.conflicts import retrying

T = TypeVar("T")
logger = logging.getLogger("openprofiles.objects")


@dataclass
class _Put:
    source: dict[str, Any]
    raw: str
    answer: asyncio.Future[dict[str, Any]]


@dataclass
class _Batch:
    services: Services
    # The first request's; every request of the batch was authorized for PutProfileObject.
    principal: Principal
    domain_name: str
    type_name: str
    puts: list[_Put] = field(default_factory=list)


class _TurnQueue:
    """The PutProfileObject calls of one event loop waiting for the end of the turn."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.batches: dict[tuple[int, str, str], _Batch] = {}
        # The batches being applied: the loop keeps only weak references to its tasks.
        self.running: set[asyncio.Task[None]] = set()
        # Batches applied, for tests and diagnostics.
        self.applied = 0

    def add(self, ctx: RequestContext, domain_name: str, type_name: str, put: _Put) -> None:
        if not self.batches:
            # After the requests the loop already has ready in this turn: theirs join the batch.
            # In a context of its own: not the first request's, whose on-the-loop state
            # (openprofiles.blocking) would follow the batch into a worker thread.
            self.loop.call_soon(self._apply_all, context=contextvars.Context())
        key = (id(ctx.services), domain_name, type_name)
        batch = self.batches.get(key)
        if batch is None:
            batch = self.batches[key] = _Batch(ctx.services, ctx.principal, domain_name, type_name)
        batch.puts.append(put)

    def _apply_all(self) -> None:
        batches, self.batches = self.batches, {}
        for batch in batches.values():
            self.applied += 1
            task = self.loop.create_task(_apply_or_fail(batch))
            self.running.add(task)
            task.add_done_callback(self.running.discard)


_queues: WeakKeyDictionary[asyncio.AbstractEventLoop, _TurnQueue] = WeakKeyDictionary()


def turn_queue(loop: asyncio.AbstractEventLoop) -> _TurnQueue:
    queue = _queues.get(loop)
    if queue is None:
        queue = _queues[loop] = _TurnQueue(loop)
    return queue


def queue_put(
    ctx: RequestContext, domain_name: str, type_name: str, source: dict[str, Any], raw: str
) -> Deferred:
    """Queue one PutProfileObject's record (parsed `source`, submitted text `raw`) for this
    turn's batch; its answer, once the batch is applied."""
    loop = asyncio.get_running_loop()
    put = _Put(source, raw, loop.create_future())
    turn_queue(loop).add(ctx, domain_name, type_name, put)
    return Deferred(put.answer)


class _CommitFailed(Exception):
    """The shared commit of the batch's write failed: nothing of it was applied."""


async def _apply_or_fail(batch: _Batch) -> None:
    """Apply the batch; whatever happens, no request is left waiting for its answer."""
    try:
        await _apply(batch)
    except Exception as error:
        logger.error("applying a batch of objects failed: %s", type(error).__name__, exc_info=error)
    finally:
        # Also when the task is cancelled (the loop is stopping).
        _fail_all(batch.puts, InternalServer("An internal error occurred."))


async def _apply(batch: _Batch) -> None:
    try:
        outcomes = await _run(batch, lambda ctx: _ingest(ctx, batch))
    except _CommitFailed:
        _fail_all(batch.puts, InternalServer("An internal error occurred; the write was undone."))
        return
    except Exception as error:  # noqa: BLE001 — each request is told (logged when internal)
        if len(batch.puts) > 1 and _may_be_one_records(error):
            # Applied again one record at a time, so that a record that breaks fails alone.
            logger.warning(
                "a batch of %d objects failed (%s); applying them one at a time",
                len(batch.puts),
                type(error).__name__,
            )
            for put in batch.puts:
                one = [put]
                await _apply(
                    _Batch(batch.services, batch.principal, batch.domain_name, batch.type_name, one)
                )
        else:
            _fail_all(batch.puts, error)
        return
    await _answer(batch, outcomes)


def _may_be_one_records(error: Exception) -> bool:
    """Whether a batch's failure may come from one of its records: anything but an API error,
    which is about what every request of the batch shares (its domain or object type, the
    domain's key, a KMS that cannot be reached, races lost until `retrying` gave up). Applying
    such a batch again record by record would only pay for the failure once per record."""
    return not isinstance(error, ServiceError)


async def _answer(batch: _Batch, outcomes: list[IngestResult | IngestRejected]) -> None:
    """Each request's answer: its object's unique key, or its dead letter's id."""
    rejected = [
        (put, outcome)
        for put, outcome in zip(batch.puts, outcomes, strict=True)
        if isinstance(outcome, IngestRejected)
    ]
    # Accepted records are answered now: their write has committed, and the dead letters of
    # the others may wait on SQS (timeouts of up to half a minute).
    for put, outcome in zip(batch.puts, outcomes, strict=True):
        if isinstance(outcome, IngestResult) and not put.answer.done():
            put.answer.set_result({"ProfileObjectUniqueKey": outcome.profile_object_unique_key})
    letter_ids: dict[int, str] = {}
    if rejected:
        try:
            ids = await _run(
                batch,
                lambda ctx: dead_letter_rejected(
                    ctx, batch.domain_name, batch.type_name, [(p.raw, o) for p, o in rejected]
                ),
            )
        except _CommitFailed:
            failed = InternalServer("An internal error occurred; the write was undone.")
            _fail_all([put for put, _ in rejected], failed)
        except Exception as error:  # noqa: BLE001 — each rejected record's request is told
            _fail_all([put for put, _ in rejected], error)
        else:
            letter_ids = {id(put): letter for (put, _), letter in zip(rejected, ids, strict=True)}
    for put, rejection in rejected:
        if put.answer.done():
            continue
        try:
            put.answer.set_result(rejected_answer(rejection, letter_ids[id(put)]))
        except BadRequest as error:
            put.answer.set_exception(error)


def _ingest(ctx: RequestContext, batch: _Batch) -> list[IngestResult | IngestRejected]:
    with ctx.write() as tx:
        return ingest_batch(
            tx,
            domain_name=batch.domain_name,
            object_type_name=batch.type_name,
            records=[(put.source, put.raw) for put in batch.puts],
        )


async def _run(batch: _Batch, work: Callable[[RequestContext], T]) -> T:
    """`work` as a request would run (on the loop, or in a thread when it would block; again
    after a lost race), once its shared commit, if any, is done."""
    ctx = RequestContext(services=batch.services, principal=batch.principal)

    def attempt() -> T:
        ctx.committed_writes = 0
        return work(ctx)

    result, shared_commit = await run_on_the_loop(
        lambda: retrying(attempt, may_retry=lambda: ctx.committed_writes == 0)
    )
    if shared_commit is not None:
        # Shielded: a request that goes away must not cancel the other members' commit.
        failure = await asyncio.shield(shared_commit)
        if failure is not None:
            raise _CommitFailed() from failure
    return result


def _fail_all(puts: list[_Put], error: BaseException) -> None:
    for put in puts:
        if not put.answer.done():
            put.answer.set_exception(error)
