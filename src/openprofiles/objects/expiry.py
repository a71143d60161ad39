"""The server's periodic purge of expired profile objects (spec §1.9).

Expired objects are already invisible to every read; this only reclaims their rows. It runs in
a background task of the ASGI lifespan, every few minutes, in a worker thread (the database
calls block). Several server processes on one PostgreSQL database may all run it: deleting
expired rows twice is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from openprofiles.context import Services
from openprofiles.objects.service import purge_expired

PURGE_INTERVAL_SECONDS = 300.0

log = logging.getLogger(__name__)


def purge_once(services: Services) -> int:
    with services.write() as tx:
        return purge_expired(tx, datetime.now(UTC))


def expiry_lifespan(
    services: Services, interval_seconds: float = PURGE_INTERVAL_SECONDS
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A Starlette lifespan that purges expired objects every `interval_seconds`."""

    async def loop() -> None:
        while True:
            try:
                purged = await asyncio.to_thread(purge_once, services)
                if purged:
                    log.info("purged %d expired profile objects", purged)
            except Exception:  # a failed purge is retried at the next tick, never fatal
                log.exception("purging expired profile objects failed")
            await asyncio.sleep(interval_seconds)

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return lifespan
