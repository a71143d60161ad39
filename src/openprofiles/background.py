"""The server's periodic background work, run by the ASGI lifespan while it serves.

Each task runs in a worker thread (its database calls block): once at start-up, then every
`interval_seconds` after the previous run ended, so runs of one task never overlap in a process.
A run that fails is logged (its exception type only: a message could quote data) and the task
runs again at the next tick. Several server processes may run the same tasks; each task says in
its own module why that is safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeriodicTask:
    name: str
    run: Callable[[], object]
    # 0 turns the task off.
    interval_seconds: float


async def _loop(task: PeriodicTask) -> None:
    while True:
        try:
            await asyncio.to_thread(task.run)
        except Exception as exc:  # retried at the next tick, never fatal to the server
            log.error("background task %r failed: %s", task.name, type(exc).__name__)
        await asyncio.sleep(task.interval_seconds)


def background_lifespan(
    tasks: Sequence[PeriodicTask], on_shutdown: Sequence[Callable[[], None]] = ()
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A Starlette lifespan running every task whose interval is above zero; at shutdown, once
    they are stopped, it calls each of `on_shutdown` in a worker thread (they may wait for
    threads of their own to end)."""

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        running = [asyncio.create_task(_loop(t)) for t in tasks if t.interval_seconds > 0]
        try:
            yield
        finally:
            for task in running:
                task.cancel()
            for task in running:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for close in on_shutdown:
                await asyncio.to_thread(close)

    return lifespan
