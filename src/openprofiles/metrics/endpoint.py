"""GET /metrics (openprofiles.metrics): the exposition, and the workers' shared counts."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

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


def exposition(state: DatabaseState) -> bytes:
    """The metrics in Prometheus' text format: this server's events (every worker's, under
    multiprocess mode; with the process's own CPU, memory and garbage collection otherwise)
    and the database's `state`."""
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROCESS_ENV):
        MultiProcessCollector(registry)
    else:
        registry.register(_Forward(REGISTRY))
    registry.register(state)
    return generate_latest(registry)


def metrics_endpoint(services: Services) -> Callable[[Request], Awaitable[Response]]:
    """The /metrics route's endpoint (the database is read in a worker thread, at most every
    OPENPROFILES_METRICS_STATE_SECONDS: metrics.state)."""
    state = DatabaseState(services)

    async def metrics(_request: Request) -> Response:
        body = await run_in_threadpool(exposition, state)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return metrics


# The directories `multiprocess_dir` makes: the prefix, then the supervisor's process id.
DIR_PREFIX = "openprofiles-metrics-"


@contextmanager
def multiprocess_dir(workers: int) -> Iterator[None]:
    """For `serve --workers N` (N > 1): a new, empty directory for the workers' counts, named
    in the environment the workers inherit (they are new processes, which import
    prometheus_client after it is set), and removed when the server stops. A new one at each
    start, so a restarted server's counters start again from zero, as Prometheus expects of a
    restarted target, and two servers never add up each other's counts. The directories of
    servers that were killed before they could remove theirs are removed first.

    A directory the operator named (PROMETHEUS_MULTIPROC_DIR set, as under another process
    manager) is used, whatever N is, emptied of the counts of processes that have ended
    (prometheus_client asks for it; `_remove_dead_counts`)."""
    named = os.environ.get(MULTIPROCESS_ENV)
    if named:
        _remove_dead_counts(Path(named))
        yield
        return
    if workers <= 1:
        yield
        return
    _remove_orphaned_dirs()
    path = tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}-")
    os.environ[MULTIPROCESS_ENV] = path
    try:
        yield
    finally:
        os.environ.pop(MULTIPROCESS_ENV, None)
        shutil.rmtree(path, ignore_errors=True)


# prometheus_client's files in a multiprocess directory: the kind of metric, then the process id.
_COUNT_FILE = re.compile(r"(?:counter|histogram|summary|gauge_[a-z]+)_(\d+)\.db")


def _remove_dead_counts(directory: Path) -> None:
    """Remove from an operator-named directory the count files of processes that have ended:
    only prometheus_client's, and never a live process's (another server sharing it, a
    command that inherited the variable), whose counts would vanish with its file."""
    for found in directory.glob("*.db"):
        named = _COUNT_FILE.fullmatch(found.name)
        if named is not None and not _alive(int(named.group(1))):
            found.unlink(missing_ok=True)


def _remove_orphaned_dirs() -> None:
    """Remove the count directories of servers whose process is gone (killed: no `finally`)."""
    for found in Path(tempfile.gettempdir()).glob(f"{DIR_PREFIX}*"):
        pid = found.name[len(DIR_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(found, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
