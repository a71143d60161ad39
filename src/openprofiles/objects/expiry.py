"""The server's periodic purge of expired profile objects (spec §1.9) and dead letters.

Expired objects are already invisible to every read; this only reclaims their rows, a chunk a
transaction (objects.service.purge_expired_in), so it never holds SQLite's one writer, or
PostgreSQL row locks, for the whole purge. Dead letters hold whole records, so they go once
older than their domain's DefaultExpirationDays (dlq.service.purge_expired). It runs as a
background task of the server (openprofiles.background), every few minutes. Several server
processes on one PostgreSQL database may all run it: deleting expired rows twice is harmless.
"""

from __future__ import annotations

import logging

from openprofiles.background import PeriodicTask
from openprofiles.context import Services
from openprofiles.dlq import service as dead_letters
from openprofiles.objects.service import purge_expired_in

PURGE_INTERVAL_SECONDS = 300.0

log = logging.getLogger(__name__)


def purge_once(services: Services, *, object_chunk: int | None = None) -> int:
    """Purge what has expired; how many objects and dead letters. `object_chunk`: objects
    purged a transaction (default objects.service.PURGE_CHUNK)."""
    # A chunk a transaction, as the dead letters below: other writes go in between, and an
    # interrupted purge keeps what it committed (the next run takes the rest).
    objects = purge_expired_in(services.write, limit=object_chunk)
    letters = 0
    while True:
        # A batch a transaction: other writes go in between.
        with services.write() as tx:
            purged = dead_letters.purge_expired(tx, tx.now)
        letters += purged
        if purged < dead_letters.PURGE_BATCH:
            break
    if objects:
        log.info("purged %d expired profile objects", objects)
    if letters:
        log.info("purged %d dead letters older than their domain's retention", letters)
    return objects + letters


def expiry_task(
    services: Services, interval_seconds: float = PURGE_INTERVAL_SECONDS
) -> PeriodicTask:
    """The background task that purges expired objects every `interval_seconds`."""
    return PeriodicTask("purge expired objects", lambda: purge_once(services), interval_seconds)
