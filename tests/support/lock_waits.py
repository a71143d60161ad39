"""Two writers in a set order on PostgreSQL: the first does its work in a transaction it keeps
open until the second, started then, waits for one of the first's locks (or has finished without
waiting); then the first commits and the second goes on. What the second did is returned.
`postgres_services` and `in_its_own_transaction` are what such tests start from."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import text
from tests.support.backends import database_url_for

from openprofiles.app import build_services
from openprofiles.context import Services, Tx
from openprofiles.settings import Settings

# A bound on how long the second writer may take to reach a lock, not a synchronisation delay.
WAIT_BOUND_SECONDS = 30
_BLOCKED_BY = text("SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))")


def second_writer_meets_first(
    services: Services, first: Callable[[Tx], Any], second: Callable[[], Any]
) -> Any:
    """Run `first(tx)` in a write transaction; with it open, run `second()` (which opens its own
    transactions) in a thread until it waits for a lock the first holds or returns; commit the
    first; return the second's result, or the exception it raised."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(second())
        except BaseException as exc:  # handed to the test
            out.append(exc)

    thread = threading.Thread(target=run)
    with services.write() as tx:
        first(tx)
        pid = tx.conn.execute(text("SELECT pg_backend_pid()")).scalar()
        thread.start()
        deadline = time.monotonic() + WAIT_BOUND_SECONDS
        with services.database.engine.connect() as watcher:
            while not _blocked(watcher, pid):
                # Waiting on the thread, not a delay: it may finish without ever waiting.
                thread.join(timeout=0.01)
                if not thread.is_alive():
                    break
                if time.monotonic() > deadline:
                    raise AssertionError("the second writer neither waited nor finished")
    thread.join(timeout=WAIT_BOUND_SECONDS)
    assert not thread.is_alive(), "the second writer did not finish after the first committed"
    return out[0]


def _blocked(watcher: Any, pid: int) -> bool:
    waiting = watcher.execute(_BLOCKED_BY, {"pid": pid}).scalar()
    watcher.rollback()
    return bool(waiting)


def until_blocked_by(services: Services, pid: int, waiter: str) -> None:
    """Return once a transaction waits for a lock the backend `pid` holds (polled within
    WAIT_BOUND_SECONDS, a bound, not a delay); AssertionError naming the `waiter` else."""
    deadline = time.monotonic() + WAIT_BOUND_SECONDS
    with services.database.engine.connect() as watcher:
        while time.monotonic() < deadline:
            blocked = watcher.execute(_BLOCKED_BY, {"pid": pid}).scalar()
            watcher.rollback()
            if blocked:
                return
    raise AssertionError(f"{waiter} never waited for the profile")


@contextmanager
def postgres_services(tmp_path: Path) -> Iterator[Services]:
    """Services on a PostgreSQL schema of their own only: on SQLite the one writer serialises
    the two transactions these races need."""
    with database_url_for("postgres", tmp_path) as url:
        built = build_services(Settings(data_dir=tmp_path / "data", database_url=url))
        try:
            yield built
        finally:
            built.database.dispose()


def in_its_own_transaction(services: Services, change: Callable[[Tx], Any]) -> Callable[[], Any]:
    """`change` as a second writer: in a write transaction of its own, its result returned."""

    def run() -> Any:
        with services.write() as tx:
            return change(tx)

    return run
