"""GET /metrics (openprofiles.metrics): the exposition, and the workers' shared counts."""

from __future__ import annotations

import fcntl
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
from openprofiles.metrics.access import refusal
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
    OPENPROFILES_METRICS_STATE_SECONDS: metrics.state), for the scrapes that carry the bearer
    token of OPENPROFILES_METRICS_TOKEN when one is set (metrics.access)."""
    state = DatabaseState(services)
    token = services.settings.metrics_token

    async def metrics(request: Request) -> Response:
        # Refused before anything is read: a refused scrape costs the database nothing.
        refused = refusal(request, token)
        if refused is not None:
            return refused
        body = await run_in_threadpool(exposition, state)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return metrics


# The directories `multiprocess_dir` makes: the prefix, then the supervisor's process id.
DIR_PREFIX = "openprofiles-metrics-"
# Where a directory is made: a server holds an flock on the directory itself while it makes it,
# so one that died before the rename left a directory whose lock anyone can take
# (`_remove_orphaned_dirs`).
_NEW_PREFIX = f"{DIR_PREFIX}new-"
# In each directory: the file its supervisor holds an flock on for as long as it runs.
LOCK_FILE = "supervisor.lock"


@contextmanager
def multiprocess_dir(workers: int) -> Iterator[None]:
    """For `serve --workers N` (N > 1): a new, empty directory for the workers' counts, named
    in the environment the workers inherit (they are new processes, which import
    prometheus_client after it is set), and removed when the server stops. A new one at each
    start, so a restarted server's counters start again from zero, as Prometheus expects of a
    restarted target, and two servers never add up each other's counts. The directories of
    servers that were killed before they could remove theirs are removed first: those whose
    lock no process holds (`_remove_orphaned_dirs`).

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
    path, lock = _locked_dir()
    os.environ[MULTIPROCESS_ENV] = str(path)
    try:
        yield
    finally:
        os.environ.pop(MULTIPROCESS_ENV, None)
        shutil.rmtree(path, ignore_errors=True)
        os.close(lock)


def _locked_dir() -> tuple[Path, int]:
    """A new count directory, and the descriptor of its lock file, held (flock) until closed.

    Made under a `_NEW_PREFIX` name, and flocked (the directory itself) from its first moment to
    its rename: a server killed meanwhile leaves a directory the next start can tell for an
    orphan. That first moment, between mkdtemp and the flock, another server's orphan check may
    take the free lock and remove the directory: then the flock fails, or finds the directory
    gone, and a new one is made. The lock file takes its name only once locked, and the
    directory its final name after that (a rename keeps the locks, which are on the file and
    the directory): an orphan check finds a held lock, never one it could take."""
    while True:
        new = Path(tempfile.mkdtemp(prefix=_NEW_PREFIX))
        try:
            making = os.open(new, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            continue  # removed by another server's check before it could even be opened
        try:
            try:
                fcntl.flock(making, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # another server's check holds it, to remove it
            if not _is_open(new, making):
                continue  # removed by another server's check before the flock
            claiming = new / f"{LOCK_FILE}.new"
            lock = os.open(claiming, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: no one else holds it
            claiming.rename(new / LOCK_FILE)
            path = new.with_name(f"{DIR_PREFIX}{os.getpid()}-{new.name[len(_NEW_PREFIX) :]}")
            new.rename(path)
            return path, lock
        finally:
            os.close(making)


def _is_open(path: Path, descriptor: int) -> bool:
    """Whether `path` is (still) the file open as `descriptor`."""
    try:
        found = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(descriptor)
    return (found.st_dev, found.st_ino) == (held.st_dev, held.st_ino)


def _remove_orphaned_dirs() -> None:
    """Remove the count directories of servers that are gone (killed: no `finally`), and those
    of servers killed while making theirs.

    A directory is an orphan when the lock its supervisor held for its life can be taken: a
    process id says nothing across pid namespaces (containers sharing /tmp, where another
    container's live server has an id this one does not see, or sees as another process).
    One still being made is locked itself (`_locked_dir`). Directories without a lock file
    were made by an earlier version; for them the id is all there is."""
    for found in Path(tempfile.gettempdir()).glob(f"{DIR_PREFIX}*"):
        if found.name.startswith(_NEW_PREFIX):
            # Not followed if a link, and not opened if not a directory (a FIFO would block). One
            # gone since the glob was removed, or renamed once made: nothing to do.
            _remove_unless_held(found, found, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        elif not _remove_unless_held(found, found / LOCK_FILE, os.O_RDWR):
            pid = found.name[len(DIR_PREFIX) :].split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(found, ignore_errors=True)


def _remove_unless_held(directory: Path, lock_path: Path, flags: int) -> bool:
    """Remove `directory` when the flock on `lock_path` (opened with `flags`) can be taken: no
    live server holds it. False when there is no `lock_path` to tell by."""
    try:
        lock = os.open(lock_path, flags)
    except FileNotFoundError:
        return False
    except OSError:  # not ours to check (another user's, or not a directory)
        return True
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pass  # its server runs, or is making it
    else:
        shutil.rmtree(directory, ignore_errors=True)  # removed while held: no one takes it now
    finally:
        os.close(lock)
    return True


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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
