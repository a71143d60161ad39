"""The state gauges of openprofiles.metrics, read from the database: dead letters kept, by domain
and reason category; those whose send to the domain's SQS queue failed and wait for a resend;
contact records kept for want of a domain, and those of them waiting for the contact they
continue. Grouped counts that open nothing sealed, but each reads every row of its table, and
those tables can grow large (a million dead letters: about half a second a pass on PostgreSQL;
both dead-letter counts come from one pass). So a process reads them at most every
OPENPROFILES_METRICS_STATE_SECONDS (15 by default), one read at a time, whoever scrapes how
often: a flood of scrapes costs the database nothing more.

A read that fails (the database out of reach) leaves the gauges out of the scrape, and
`openprofiles_database_state_up` says 0; the counters of openprofiles.metrics.events are
scraped all the same, which is when they are most wanted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, Metric

from openprofiles.contacts.kept import count_unrouted
from openprofiles.context import Services
from openprofiles.dlq.service import count_letters

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _State:
    letters: dict[tuple[str, str], int]
    unsent: dict[str, int]
    kept: int
    waiting: int


class DatabaseState:
    """A prometheus_client collector of the gauges, for a scrape's registry; one per app."""

    def __init__(self, services: Services, clock: Callable[[], float] = time.monotonic) -> None:
        self._services = services
        # Prometheus scrapes every 15 to 60 s, and these counts change over minutes.
        self._every = services.settings.metrics_state_seconds
        self._clock = clock
        self._lock = threading.Lock()
        # The outcome of the last read (None: it failed), when it began, and how many reads
        # have ended: a scrape that waited for a read takes its outcome, whatever it was.
        self._state: _State | None = None
        self._read_at = float("-inf")
        self._reads = 0

    def collect(self) -> Iterator[Metric]:
        state = self._current()
        up = GaugeMetricFamily(
            "openprofiles_database_state_up",
            "1 when the gauges read from the database (dead letters, kept contact records) "
            "could be read at the last try, 0 when the read failed (they are left out then).",
            value=1 if state is not None else 0,
        )
        yield up
        if state is None:
            return
        letters = GaugeMetricFamily(
            "openprofiles_dead_letters",
            "Dead letters kept in domains' dead-letter stores, by domain and reason category.",
            labels=["domain", "category"],
        )
        for (domain_name, category), count in sorted(state.letters.items()):
            letters.add_metric([domain_name, category], count)
        unsent = GaugeMetricFamily(
            "openprofiles_dead_letters_unsent",
            "Dead letters whose send to their domain's SQS queue failed, waiting for a resend, "
            "by domain.",
            labels=["domain"],
        )
        for domain_name, count in sorted(state.unsent.items()):
            unsent.add_metric([domain_name], count)
        kept = GaugeMetricFamily(
            "openprofiles_kept_contact_records",
            "Contact records kept for want of a domain that takes them (an unassociated "
            "instance, a domain whose key cannot be used), and those waiting for the contact "
            "they continue (openprofiles instances unrouted lists them).",
            labels=["waiting"],
        )
        kept.add_metric(["false"], state.kept)
        kept.add_metric(["true"], state.waiting)
        yield from (letters, unsent, kept)

    def _current(self) -> _State | None:
        """The outcome of a read begun within the last `_every` seconds, or of one read now:
        one reader at a time, and the scrapes that waited for it take its outcome. None when
        the read failed, which serves as long: a database that does not answer (a connect
        timeout, a table locked by a migration) must not be asked once more per waiting scrape,
        each holding a thread of the pool the requests share."""
        reads_before = self._reads
        with self._lock:
            if self._reads != reads_before or self._clock() - self._read_at < self._every:
                return self._state
            self._read_at = self._clock()
            try:
                self._state = self._read()
            except Exception as exc:
                # The type only: a database error's message can hold a URL with a password.
                logger.warning(
                    "metrics: the database's state could not be read (%s)", type(exc).__name__
                )
                self._state = None
            finally:
                self._reads += 1
            return self._state

    def _read(self) -> _State:
        with self._services.read() as tx:
            letters = count_letters(tx)
            return _State(
                letters=letters.by_category,
                unsent=letters.unsent,
                kept=sum(count_unrouted(tx, waiting=False).values()),
                waiting=sum(count_unrouted(tx, waiting=True).values()),
            )
