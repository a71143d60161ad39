"""GET /metrics (openprofiles.metrics): the exposition, and the workers' shared counts."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from openprofiles.context import Services
from openprofiles.metrics.state import DatabaseState

# prometheus_client's switch to multiprocess mode: read when it is first imported.
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


class _Forward:
    """A registry's metrics, collected into another registry."""

    def __init__(self, source: CollectorRegistry) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        return self._source.collect()


def exposition(services: Services) -> bytes:
    """The metrics in Prometheus' text format: this server's events (every worker's, under
    multiprocess mode; with the process's own CPU, memory and garbage collection otherwise)
    and the database's state."""
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROCESS_ENV):
        MultiProcessCollector(registry)
    else:
        registry.register(_Forward(REGISTRY))
    registry.register(DatabaseState(services))
    return generate_latest(registry)


def metrics_endpoint(services: Services) -> Callable[[Request], Awaitable[Response]]:
    """The /metrics route's endpoint (the database is read in a worker thread)."""

    async def metrics(_request: Request) -> Response:
        body = await run_in_threadpool(exposition, services)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return metrics


@contextmanager
def multiprocess_dir(workers: int) -> Iterator[None]:
    """For `serve --workers N` (N > 1): a new, empty directory for the workers' counts, named
    in the environment the workers inherit (they are new processes, which import
    prometheus_client after it is set), and removed when the server stops. A new one at each
    start, so a restarted server's counters start again from zero, as Prometheus expects of a
    restarted target, and two servers never add up each other's counts. A directory the
    operator named already (PROMETHEUS_MULTIPROC_DIR set, as for another process manager) is
    used as it is."""
    if workers <= 1 or os.environ.get(MULTIPROCESS_ENV):
        yield
        return
    path = tempfile.mkdtemp(prefix="openprofiles-metrics-")
    os.environ[MULTIPROCESS_ENV] = path
    try:
        yield
    finally:
        os.environ.pop(MULTIPROCESS_ENV, None)
        shutil.rmtree(path, ignore_errors=True)
