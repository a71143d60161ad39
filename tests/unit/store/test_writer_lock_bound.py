"""A writer waits for the SQLite writer lock a bounded time (store/writer_lock.py): another
process that holds it and does not let go (a loader stopped with Ctrl-Z) makes writers fail
with a 503 naming that process, instead of stalling every write for as long as it stays
stopped. The holder here is a real second process holding the lock through WriterLock, until
the test writes a line to its stdin."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from tests.support.event_loop import run_in_fresh_thread
from tests.unit.store.test_writer_lock import _try_lock

from openprofiles import logging_setup
from openprofiles.blocking import WouldBlock, on_the_loop
from openprofiles.errors import ServiceUnavailable
from openprofiles.store.writer_lock import WriterLock, WriterLockBusy
from openprofiles.wire.errors import render_error

_HOLDER = """
import sys
from pathlib import Path
from openprofiles.blocking import on_the_loop
from openprofiles.store.writer_lock import WriterLock
lock = WriterLock(Path(sys.argv[1]))
if sys.argv[2] == "loop":  # a request on the loop of a server's process: declared short
    with on_the_loop():
        lock.__enter__()
else:  # a worker thread, a rule pass, a bulk load: declared as one that may hold it long
    lock.__enter__()
print("held", flush=True)
sys.stdin.readline()
lock.__exit__(None, None, None)
print("released", flush=True)
"""

# Long enough for a loaded machine to start trying, short enough for a test.
WAIT = 1.0


@contextmanager
def _holder(path: Path, where: str) -> Iterator[subprocess.Popen[str]]:
    other = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path), where],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert other.stdin is not None and other.stdout is not None
    try:
        assert other.stdout.readline().strip() == "held"
        yield other
    finally:
        if other.poll() is None:
            other.stdin.close()
        other.wait(timeout=30)


def _release(holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None and holder.stdout is not None
    holder.stdin.write("go\n")
    holder.stdin.flush()
    assert holder.stdout.readline().strip() == "released"


def _in_a_thread(take: object) -> BaseException | None:
    """Run `take` in a thread and return what it raised; a thread still waiting after 30 s (no
    bound: the code before the fix) fails the test instead of hanging it."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            take()  # type: ignore[operator]
            outcome.append(None)
        except BaseException as error:  # reported to the test
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "still waiting for the lock: the wait has no bound"
    return outcome[0]


def test_a_writer_waits_a_bounded_time_and_is_told_which_process_holds_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "db.sqlite3-writer.lock"
    lock = WriterLock(path, wait_seconds=WAIT)
    try:
        with _holder(path, "thread") as holder:
            refused = _in_a_thread(lock.__enter__)
            assert isinstance(refused, WriterLockBusy), refused
            # A 503 for the API (the SDKs retry it), with no path or pid in the caller's text.
            assert isinstance(refused, ServiceUnavailable)
            status, headers, body = render_error(refused, "r1")
            assert status == 503
            assert headers["x-amzn-ErrorType"] == "ServiceUnavailableException"
            assert str(path) not in body.decode() and str(holder.pid) not in body.decode()
            # For a command: the process to look at, and that running it again is safe.
            assert f"process {holder.pid} holds it" in refused.message
            assert "Ctrl-Z" in refused.message and "again is safe" in refused.message
            # Printed whole in logs and tracebacks: a path, a pid, a time, no personal data.
            assert refused.message in logging_setup.describe(refused)
            # Nothing left taken: the thread lock, the turnstile (a waiter's mark).
            assert not lock._thread_lock.locked()
            assert _try_lock(path.with_name(path.name + ".turnstile"))
            _release(holder)
        # Once the holder lets go, the lock is taken as before.
        with lock:
            assert not _try_lock(path)
        assert _try_lock(path)
    finally:
        lock.close()


def test_a_second_writer_of_the_process_is_bounded_too(tmp_path: Path) -> None:
    """Writers of one process queue on its thread lock behind the one waiting for the other
    process: they wait no longer than the bound either."""
    path = tmp_path / "db.sqlite3-writer.lock"
    lock = WriterLock(path, wait_seconds=WAIT)
    try:
        with _holder(path, "thread") as holder:
            outcomes = []
            threads = [
                threading.Thread(target=lambda: outcomes.append(_in_a_thread(lock.__enter__)))
                for _ in range(2)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
            assert len(outcomes) == 2
            assert all(isinstance(outcome, WriterLockBusy) for outcome in outcomes), outcomes
            _release(holder)
    finally:
        lock.close()


def test_on_the_loop_the_wait_in_a_worker_thread_is_bounded(tmp_path: Path) -> None:
    """The loop never waits for a long holder: it awaits a worker thread's wait, which ends
    with the same 503 when the holder does not let go — raised by the request's next try, where
    it takes the lock (inside the request, whose adapter renders it), not by the wait itself:
    raised there, out of the adapter's retry loop (blocking.run_on_the_loop), it was answered
    500 without the API's error shape."""
    path = tmp_path / "db.sqlite3-writer.lock"
    lock = WriterLock(path, wait_seconds=WAIT)
    try:
        with _holder(path, "thread") as holder:
            with pytest.raises(WouldBlock) as raised, on_the_loop():
                lock.__enter__()
            retry_after = raised.value.retry_after
            assert retry_after is not None
            given_back: list[object] = []

            async def wait() -> None:
                given_back.append(await asyncio.wait_for(retry_after(), timeout=30))

            assert _in_a_thread(lambda: run_in_fresh_thread(wait())) is None
            assert given_back == [None]  # nothing reserved
            assert not lock._thread_lock.locked()
            with pytest.raises(WriterLockBusy) as refused, on_the_loop():
                lock.__enter__()
            assert f"process {holder.pid} holds it" in refused.value.message
            assert not lock._thread_lock.locked()
            # Raised once: the try after it finds the lock taken again, as before the wait.
            with pytest.raises(WouldBlock), on_the_loop():
                lock.__enter__()
            _release(holder)
    finally:
        lock.close()


def test_on_the_loop_a_short_holder_that_does_not_let_go_is_not_waited_for_in_place(
    tmp_path: Path,
) -> None:
    """Another server process's loop holds the lock for a request, then stops (SIGSTOP): the
    loop here waits in place for a short while only, then off the loop like for a long holder
    — and not in place again for its next requests, until the lock changes hands."""
    path = tmp_path / "db.sqlite3-writer.lock"
    lock = WriterLock(path, wait_seconds=WAIT)

    def take_on_the_loop() -> None:
        with on_the_loop():
            lock.__enter__()

    try:
        with _holder(path, "loop") as holder:
            for _ in range(2):
                refused = _in_a_thread(take_on_the_loop)
                assert isinstance(refused, WouldBlock), refused
                assert refused.retry_after == lock._reserve
                assert not lock._thread_lock.locked()
            assert lock._short_holder_stalled
            _release(holder)
        take_on_the_loop()
        assert not lock._short_holder_stalled
        lock.__exit__(None, None, None)
    finally:
        lock.close()
