"""The server's periodic purge of expired profile objects (spec §1.9).

Expired objects are already invisible to every read; this only reclaims their rows. It runs as a
background task of the server (openprofiles.background), every few minutes. Several server
processes on one PostgreSQL database may all run it: deleting expired rows twice is harmless.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from openprofiles.background import PeriodicTask
from openprofiles.context import Services
from openprofiles.objects.service import purge_expired

PURGE_INTERVAL_SECONDS = 300.0

log = logging.getLogger(__name__)


def purge_once(services: Services) -> int:
    with services.write() as tx:
        purged = purge_expired(tx, datetime.now(UTC))
    if purged:
        log.info("purged %d expired profile objects", purged)
    return purged


def expiry_task(
    services: Services, interval_seconds: float = PURGE_INTERVAL_SECONDS
) -> PeriodicTask:
    """The background task that purges expired objects every `interval_seconds`."""
    return PeriodicTask("purge expired objects", lambda: purge_once(services), interval_seconds)
