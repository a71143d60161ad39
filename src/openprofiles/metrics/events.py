"""The events counted by the process that saw them (openprofiles.metrics): API requests and
their latency, the contact feeds' requests and records, dead letters sent to SQS queues,
requests refused for their Host header.
Counters and histograms of prometheus_client's default registry; under multiprocess mode
(metrics.endpoint `multiprocess_dir`) each worker's go to files of its own. Cheap enough for
every request: a dictionary lookup and two increments.

Counting never fails what it counts: each count runs after the work it counts is done (a
request's writes committed, a queue's send made), so an error of its own (the multiprocess
directory gone, a full disk when its file grows) is logged, once per kind of error in a
process, and the count is lost rather than the request answered 500 and sent again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import Counter, Histogram, disable_created_metrics

logger = logging.getLogger(__name__)

# A `_created` series beside each counter and histogram doubles what is scraped and stored; its
# only use, telling a counter reset, Prometheus does from the value going down.
disable_created_metrics()

API_REQUESTS = Counter(
    "openprofiles_api_requests",
    "Customer Profiles API requests answered, by operation, HTTP status and AWS error name "
    "(empty for a success).",
    ["operation", "status", "error"],
)
# Buckets around what the API's operations take here: a search or a put in milliseconds, a
# batch or a full matching pass in seconds.
API_SECONDS = Histogram(
    "openprofiles_api_request_duration_seconds",
    "Time from a request's arrival to its answer, by operation.",
    ["operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CONTACT_RECORDS = Counter(
    "openprofiles_contact_records",
    "Contact records taken in by POST /contact-records, by outcome: accepted, or rejected "
    "(dead-lettered, or kept for want of a domain or for the contact they continue).",
    ["outcome"],
)
FEED_REQUESTS = Counter(
    "openprofiles_feed_requests",
    "Requests of the contact feeds answered, by feed (contact-records, contact-events) and "
    "HTTP status.",
    ["feed", "status"],
)
QUEUE_SENDS = Counter(
    "openprofiles_dead_letter_queue_sends",
    "Dead letters sent to domains' SQS queues, by result: sent, or failed (kept, and sent "
    "again by the resend).",
    ["result"],
)
HOST_REFUSALS = Counter(
    "openprofiles_host_refusals",
    "Requests refused for a Host header that names no host the server answers for "
    "(wire.allowed_hosts: a DNS rebinding attempt, or a proxy's name missing from "
    "OPENPROFILES_ALLOWED_HOSTS).",
)

# The operation label of a request no route of the API matched.
NO_OPERATION = "none"


# The labelled children by (operation, status, error): prometheus_client's `labels()` costs
# more than the count itself (5 µs against 2 here), and this runs for every request.
_API_CHILDREN: dict[tuple[str, int, str], tuple[Any, Any]] = {}


_failures_told: set[str] = set()
_failures_lock = threading.Lock()


@contextmanager
def _never_raising() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        kind = type(exc).__name__
        with _failures_lock:
            first = kind not in _failures_told
            _failures_told.add(kind)
        if first:
            logger.warning(
                "A metric could not be counted (%s); counts of this kind are lost until the "
                "cause is fixed, and not told again by this process.",
                kind,
                exc_info=exc,
            )


def observe_api_request(
    operation: str | None, status: int, error: str | None, started: float
) -> None:
    """Count one answered API request that arrived at `started` (time.perf_counter)."""
    with _never_raising():
        key = (operation or NO_OPERATION, status, error or "")
        children = _API_CHILDREN.get(key)
        if children is None:
            # Two threads may both make it: labels() returns the same children to both.
            children = _API_CHILDREN[key] = (
                API_REQUESTS.labels(key[0], str(status), key[2]),
                API_SECONDS.labels(key[0]),
            )
        children[0].inc()
        children[1].observe(time.perf_counter() - started)


def count_feed_request(feed: str, status: int) -> None:
    with _never_raising():
        FEED_REQUESTS.labels(feed, str(status)).inc()


def count_contact_records(*, accepted: int, rejected: int) -> None:
    with _never_raising():
        if accepted:
            CONTACT_RECORDS.labels("accepted").inc(accepted)
        if rejected:
            CONTACT_RECORDS.labels("rejected").inc(rejected)


def count_queue_sends(*, sent: int, failed: int) -> None:
    with _never_raising():
        if sent:
            QUEUE_SENDS.labels("sent").inc(sent)
        if failed:
            QUEUE_SENDS.labels("failed").inc(failed)


def count_host_refusal() -> None:
    with _never_raising():
        HOST_REFUSALS.inc()
