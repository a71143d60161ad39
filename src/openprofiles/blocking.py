"""Running a request on the event loop, and leaving it the moment the request would block.

A request handed to a worker thread costs more than most requests themselves: the event loop's
thread and the worker contend for the GIL at every hand-over, and on a small machine that
contention was most of a CreateProfile's server CPU (benchmarks/search.py; docs/performance.md,
sixth session). So the hot data-plane operations on SQLite run on the event loop's thread
(`wire.dispatch.make_asgi_app`), where a request is a fraction of a millisecond of work.

That is only acceptable while such a request cannot stall the loop, and with it every other
connection of the process. The places that can wait on something outside the process call
`avoid_blocking` first: taking the SQLite writer lock while another thread or process holds it
(a rule pass can hold it for seconds), unwrapping a domain's data key (a KMS call on a cold
cache), and queueing work to run after a commit (a call to a remote queue). On the loop they
raise `WouldBlock` instead; the adapter then runs the whole request again — on the loop once
the writer lock is free or reserved for it (`store.writer_lock` says when), otherwise in a
worker thread, where waiting is harmless.

Running it again is safe because nothing of the first attempt has been committed: `WouldBlock`
unwinds through the open transaction, which rolls back. Once a request has committed a write on
the loop, it is no longer restartable, so from then on `avoid_blocking` lets it wait where it
is (no data-plane operation writes twice on its success path; the dead-letter path writes after
a rolled-back attempt, so it is still restartable).

A write on the loop may share its transaction with the writes of other requests the loop runs
in the same turn (`store.group_commit`); it is "committed" for the purpose above once its part
is in that transaction, and the request's answer waits for the shared commit (`reply_after`).

A handler the API adapter allows to (`may_defer`) may also answer later: it queues its work to
be done after the turn's requests have run, together with theirs (`objects.coalesce`), and
returns a `Deferred` answer that the adapter awaits. The queued work runs as requests do, by
`run_on_the_loop`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
RetryAfter = Callable[[], Awaitable[Callable[[], None] | None]]


class WouldBlock(BaseException):  # noqa: N818 — a signal to the adapter, not an error
    """The request, running on the event loop, reached something that may wait.

    A BaseException, so handlers' `except Exception` clauses (which turn errors into API
    errors) let it through to the adapter unchanged. `retry_after`, when given, is a coroutine
    function that returns once trying again on the loop is worthwhile (the writer lock was
    released, or is reserved for that try); what it returns, when not None, is called after
    that try to give back what it reserved and the try did not use. Without `retry_after` the
    request moves to a worker thread.
    """

    def __init__(self, what: str, retry_after: RetryAfter | None = None) -> None:
        super().__init__(what)
        self.retry_after = retry_after


# What a shared commit resolves to: None once committed, else the error that stopped it.
CommitOutcome = asyncio.Future[BaseException | None]


@dataclass
class LoopRequest:
    """The state of one attempt at a request on the event loop."""

    committed: bool = False
    # Set when a write of the attempt joined a shared transaction: its answer must wait for it.
    reply_after: CommitOutcome | None = None
    # Set by the API adapter: the request's handler may answer with a `Deferred`.
    may_defer: bool = False


@dataclass(frozen=True)
class Deferred:
    """A handler's answer that is not known yet: the handler queued its work to run with other
    requests' (only where `may_defer()`), and the API adapter awaits `answer` (the handler's
    result, or the API error it raises) before it serializes it."""

    answer: Awaitable[dict[str, Any]]


_current: ContextVar[LoopRequest | None] = ContextVar("openprofiles_on_the_loop", default=None)


@contextmanager
def on_the_loop() -> Iterator[LoopRequest]:
    """Mark the work in this block as running on the event loop (see the module docstring)."""
    state = LoopRequest()
    token = _current.set(state)
    try:
        yield state
    finally:
        _current.reset(token)


def loop_request() -> LoopRequest | None:
    """The running request's state when it runs on the event loop, else None."""
    return _current.get()


def must_not_block() -> bool:
    """Whether the running code is on the event loop and may still be restarted elsewhere."""
    state = _current.get()
    return state is not None and not state.committed


def may_defer() -> bool:
    """Whether the running handler may answer with a `Deferred`: it runs on the event loop for
    the API adapter, and nothing of it is written yet."""
    state = _current.get()
    return state is not None and state.may_defer and not state.committed


def avoid_blocking(what: str) -> None:
    """Raise WouldBlock (naming `what` for debugging) when the running code must not block."""
    if must_not_block():
        raise WouldBlock(what)


def reply_after(outcome: CommitOutcome) -> None:
    """The running request's answer must wait for `outcome` (a shared commit its write is in)."""
    state = _current.get()
    if state is not None:
        state.reply_after = outcome


def note_commit() -> None:
    """A write transaction of the running request has committed: it cannot be restarted now."""
    state = _current.get()
    if state is not None:
        state.committed = True


# Tries on the event loop of work that keeps finding the writer lock taken (each try after a
# release or a reservation); then it waits in a worker thread like any other. Generous on
# purpose: a request moved to a thread holds the lock while the loop runs the next ones, which
# then find it taken — a bound of three turned into a steady stream of thread hand-overs under
# load (benchmarks/search.py).
ATTEMPTS_ON_THE_LOOP = 50


async def run_on_the_loop(
    work: Callable[[], T], *, may_defer: bool = False
) -> tuple[T, CommitOutcome | None]:
    """Run `work` (a request, or work queued by requests) on the event loop: again on the loop
    when it would block and is told when trying again is worthwhile, otherwise in a worker
    thread (see the module docstring). Its result, and the shared commit its outcome must wait
    for: None when it ran in a thread, or joined no shared transaction. `may_defer` lets the
    handler it runs answer with a `Deferred` (on the loop only)."""
    give_back: Callable[[], None] | None = None
    for attempt in range(ATTEMPTS_ON_THE_LOOP):
        try:
            with on_the_loop() as state:
                state.may_defer = may_defer
                result = work()
        except WouldBlock as blocked:
            # Nothing of the attempt was committed.
            retry_after = blocked.retry_after
        else:
            return result, state.reply_after
        finally:
            if give_back is not None:  # what was reserved for this attempt
                give_back()
                give_back = None
        if retry_after is None or attempt == ATTEMPTS_ON_THE_LOOP - 1:
            break
        give_back = await retry_after()
    # Imported here: every CLI command imports this module (through the store), and anyio,
    # which starlette's thread pool brings, takes about 20 ms to import.
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(work), None
