"""Writers queue on the writer lock, across processes too (store/writer_lock.py)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from tests.support.event_loop import run_in_fresh_thread

from openprofiles.blocking import WouldBlock, on_the_loop
from openprofiles.store.database import Database
from openprofiles.store.writer_lock import WriterLock


def _try_lock(path: Path) -> bool:
    """Whether another process could take the writer lock now (an open file description of its
    own, as another process has)."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def test_a_write_holds_the_lock_file_other_processes_take(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    lock = tmp_path / "db.sqlite3-writer.lock"
    try:
        with database.write() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
            assert not _try_lock(lock)
        assert _try_lock(lock)
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600
        # A failed write releases it too.
        with pytest.raises(RuntimeError), database.write() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
            raise RuntimeError("the block failed")
        assert _try_lock(lock)
    finally:
        database.dispose()


def test_a_second_database_waits_for_the_first_writer(tmp_path: Path) -> None:
    """Two Database objects on one file behave like two processes: the second writer waits for
    the first to commit, then writes, instead of failing with 'database is locked'."""
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    first, second = Database(url), Database(url)
    holding, waiting_started, done = threading.Event(), threading.Event(), threading.Event()
    outcome: list[object] = []

    def second_writer() -> None:
        holding.wait()
        waiting_started.set()
        try:
            with second.write() as conn:
                outcome.append(conn.execute(text("SELECT count(*) FROM t")).scalar())
                conn.execute(text("INSERT INTO t VALUES (2)"))
        except Exception as error:  # reported through `outcome`
            outcome.append(error)
        done.set()

    thread = threading.Thread(target=second_writer)
    thread.start()
    try:
        with first.write() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
            holding.set()
            assert waiting_started.wait(timeout=30)
            assert not done.is_set()
        assert done.wait(timeout=30)
        # The second writer saw the first one's committed row, then added its own.
        assert outcome == [1]
        with first.read() as conn:
            assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 2
    finally:
        thread.join(timeout=30)
        first.dispose()
        second.dispose()


def test_an_in_memory_database_needs_no_lock_file(tmp_path: Path) -> None:
    database = Database("sqlite://")
    try:
        with database.write() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
    finally:
        database.dispose()
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- on the event loop

_HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
os.pwrite(fd, sys.argv[2].encode(), 0)
print("held", flush=True)
sys.stdin.readline()
fcntl.flock(fd, fcntl.LOCK_UN)
print("released", flush=True)
"""


@contextmanager
def _other_process(script: str, *args: str, ready: str) -> Iterator[subprocess.Popen[str]]:
    """`script` run by another Python process, once it has printed `ready`; its stdin closed
    at the end (the scripts here end then)."""
    other = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert other.stdout is not None and other.stdin is not None
    try:
        assert other.stdout.readline().strip() == ready
        yield other
    finally:
        if other.poll() is None:
            other.stdin.close()
        other.wait(timeout=30)


def _other_process_holding(path: Path, kind: str) -> Any:
    """Another process holding the writer lock, declared as `kind` ("s": a short request on its
    event loop; "l": anything else), until a line is written to its stdin."""
    return _other_process(_HOLDER, str(path), kind, ready="held")


def _release(holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None and holder.stdout is not None
    holder.stdin.write("go\n")
    holder.stdin.flush()
    assert holder.stdout.readline().strip() == "released"


def _lock_file(tmp_path: Path) -> tuple[WriterLock, Path]:
    path = tmp_path / "db.sqlite3-writer.lock"
    return WriterLock(path), path


def _take_on_the_loop(lock: WriterLock) -> None:
    with on_the_loop():
        lock.__enter__()


def test_on_the_loop_a_free_lock_is_taken_and_declared_short(tmp_path: Path) -> None:
    lock, path = _lock_file(tmp_path)
    try:
        _take_on_the_loop(lock)
        assert not _try_lock(path)
        assert path.read_bytes()[:1] == b"s"
        lock.__exit__(None, None, None)
        assert _try_lock(path)
        # A writer in a thread may hold it long (a rule pass, a bulk load): declared so.
        with lock:
            assert path.read_bytes()[:1] == b"l"
    finally:
        lock.close()


def test_on_the_loop_a_holder_in_this_process_is_awaited_not_waited_for(tmp_path: Path) -> None:
    lock, path = _lock_file(tmp_path)
    holding, release = threading.Event(), threading.Event()

    def holder() -> None:
        with lock:
            holding.set()
            release.wait(timeout=30)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert holding.wait(timeout=30)
        with pytest.raises(WouldBlock) as raised:
            _take_on_the_loop(lock)
        retry_after = raised.value.retry_after
        assert retry_after is not None

        async def wait_then_take() -> bool:
            waiting = asyncio.ensure_future(retry_after())
            for _ in range(20):  # the loop keeps running while the holder holds the lock
                await asyncio.sleep(0)
            still_waiting = not waiting.done()
            release.set()
            give_back = await asyncio.wait_for(waiting, timeout=30)
            _take_on_the_loop(lock)  # free now, without waiting
            if give_back is not None:
                give_back()  # the turn was used: passing it on changes nothing
            return still_waiting

        assert run_in_fresh_thread(wait_then_take())
        assert not _try_lock(path)
        lock.__exit__(None, None, None)
        assert _try_lock(path)
    finally:
        release.set()
        thread.join(timeout=30)
        lock.close()


def _reserved_after_a_long_holder(lock: WriterLock, path: Path) -> Any:
    """Another process holds the lock long; a try on the loop is refused, awaits the wait in a
    worker thread (still pending while the other process holds the lock), and gets the lock
    reserved once that process releases it. Returns what gives the reservation back."""
    with _other_process_holding(path, "l") as holder:
        with pytest.raises(WouldBlock) as raised:
            _take_on_the_loop(lock)
        retry_after = raised.value.retry_after
        assert retry_after is not None

        async def reserve() -> Any:
            waiting = asyncio.ensure_future(retry_after())
            for _ in range(20):
                await asyncio.sleep(0)
            assert not waiting.done()  # the other process still holds it
            await asyncio.get_running_loop().run_in_executor(None, _release, holder)
            return await asyncio.wait_for(waiting, timeout=30)

        return run_in_fresh_thread(reserve())


def test_on_the_loop_another_process_holding_it_long_is_waited_for_in_a_thread(
    tmp_path: Path,
) -> None:
    lock, path = _lock_file(tmp_path)
    try:
        give_back = _reserved_after_a_long_holder(lock, path)
        # Reserved for the loop's next writer: held already, taken without waiting.
        assert give_back is not None
        assert not _try_lock(path)
        _take_on_the_loop(lock)
        give_back()  # used by that writer: nothing to give back
        assert not _try_lock(path)
        lock.__exit__(None, None, None)
        assert _try_lock(path)
        # A reservation no try used is given back.
        give_back = _reserved_after_a_long_holder(lock, path)
        assert give_back is not None and not _try_lock(path)
        give_back()
        assert _try_lock(path)
    finally:
        lock.close()


def test_on_the_loop_another_process_s_short_request_is_waited_for_in_place(
    tmp_path: Path,
) -> None:
    lock, path = _lock_file(tmp_path)
    try:
        with _other_process_holding(path, "s") as holder:
            taken = threading.Event()
            outcome: list[BaseException] = []

            def take() -> None:
                try:
                    _take_on_the_loop(lock)
                    taken.set()
                except BaseException as error:  # reported below
                    outcome.append(error)

            thread = threading.Thread(target=take)
            thread.start()
            assert not taken.wait(timeout=0.2)  # bounded check that it waits, not a sync point
            _release(holder)
            thread.join(timeout=30)
        assert outcome == [] and taken.is_set()
        assert not _try_lock(path)
        lock.__exit__(None, None, None)
        assert _try_lock(path)
    finally:
        lock.close()


def test_a_waiter_whose_event_loop_closed_does_not_fail_the_release(tmp_path: Path) -> None:
    """A server that stopped while a request awaited the lock: the release skips its waiter and
    wakes the next one."""
    lock, _ = _lock_file(tmp_path)
    closed = asyncio.new_event_loop()
    try:
        lock.__enter__()
        gone = closed.create_future()
        lock._waiters.append((closed, gone))
        closed.close()

        async def wait_for_the_turn() -> bool:
            waiting = asyncio.get_running_loop().create_future()
            lock._waiters.append((asyncio.get_running_loop(), waiting))
            # Released from another thread, as a write in a worker thread would be.
            await asyncio.get_running_loop().run_in_executor(
                None, lock.__exit__, None, None, None
            )  # no RuntimeError from the closed loop
            await asyncio.wait_for(waiting, timeout=30)
            return waiting.done()

        assert run_in_fresh_thread(wait_for_the_turn())
        assert not lock._waiters
    finally:
        lock.close()


# ------------------------------------------------ a writer that writes batch after batch

_BATCH_WRITER = """
import os, sys, time
from pathlib import Path
from openprofiles.store.writer_lock import WriterLock
lock_path = Path(sys.argv[1])
lock = WriterLock(lock_path)
turnstile = os.stat(lock_path.with_name(lock_path.name + ".turnstile")).st_ino
counter = os.open(sys.argv[2], os.O_RDWR | os.O_CREAT)

def someone_waits_in_line():
    # A writer of another process waiting for the lock holds the turnstile shared
    # (writer_lock._wait_in_line); /proc/locks shows that flock as READ on its inode.
    with open("/proc/locks") as locks:
        for line in locks:
            fields = line.split()
            if (fields[1:4] == ["FLOCK", "ADVISORY", "READ"]
                    and fields[5].endswith(f":{turnstile}")
                    and fields[4] != str(os.getpid())):
                return True
    return False

batches = jumped = 0
print("started", flush=True)
while not os.path.exists(sys.argv[3]):
    with lock:
        batches += 1
        jumped += someone_waits_in_line()
        os.pwrite(counter, f"{batches} {jumped}".encode().ljust(24), 0)
        time.sleep(0.02)  # the batch's work, done while holding the lock
    # and at once the next batch: no pause in which a waiting writer could slip in
"""


def _batches(counter: Path) -> tuple[int, int]:
    """(batches written, batches begun while a writer of the test's process waited in line)."""
    written, jumped = counter.read_bytes().split() or [b"0", b"0"]
    return int(written), int(jumped)


@pytest.mark.parametrize("where", ["thread", "event loop"])
def test_a_writer_waiting_behind_batch_after_batch_gets_the_next_turn(
    tmp_path: Path, where: str
) -> None:
    """Another process takes the lock again the moment it releases it. A waiting writer (in a
    worker thread, or the event loop's, through a reservation) must get it after that batch —
    flock alone lets the releasing process win the race again, batch after batch."""
    lock, path = _lock_file(tmp_path)
    counter, stop = tmp_path / "batches", tmp_path / "stop"
    writer = subprocess.Popen(
        [sys.executable, "-c", _BATCH_WRITER, str(path), str(counter), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    try:
        assert writer.stdout.readline().strip() == "started"
        turns_waited, jumped_ahead = [], []
        for _ in range(20):
            before, jumped_before = _batches(counter)
            if where == "thread":
                lock.__enter__()
            else:
                run_in_fresh_thread(_take_on_the_loop_when_reserved(lock))
            # The other process cannot start a batch while this one holds the lock.
            written, jumped = _batches(counter)
            turns_waited.append(written - before)
            jumped_ahead.append(jumped - jumped_before)
            lock.__exit__(None, None, None)
        # Once this writer waits in line, the other process starts at most the one batch it
        # was already asking for — however late this process got there (a loaded machine).
        assert max(jumped_ahead) <= 1, jumped_ahead
        # And it does get in line: flock alone lets the other process win turn after turn.
        # (The median: a turn's count from `before` also holds the scheduler's delays.)
        assert sorted(turns_waited)[len(turns_waited) // 2] <= 2, turns_waited
    finally:
        stop.touch()
        writer.wait(timeout=30)
        lock.close()


async def _take_on_the_loop_when_reserved(lock: WriterLock) -> None:
    """What the adapter does on the loop: try, and when refused await what the refusal says
    (here a worker thread waiting for the other process), then try again."""
    for _ in range(1000):
        try:
            _take_on_the_loop(lock)
            return
        except WouldBlock as blocked:
            assert blocked.retry_after is not None
            give_back = await blocked.retry_after()
            try:
                _take_on_the_loop(lock)
                return
            except WouldBlock:
                if give_back is not None:
                    give_back()
    raise AssertionError("never got the lock")


def test_requests_waiting_on_a_loop_are_woken_together_when_it_takes_the_lock(
    tmp_path: Path,
) -> None:
    """When the loop's shared transaction opens (store.group_commit), the loop's requests
    waiting for the lock are woken to join it, not one release at a time."""
    lock, _ = _lock_file(tmp_path)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        lock._thread_lock.acquire()  # a writer of this process holds it
        waiting = [asyncio.ensure_future(lock._released()) for _ in range(3)]
        while len(lock._waiters) < 3:
            await asyncio.sleep(0)  # let each waiter start and queue
        lock.wake_waiters_on(loop)
        # Woken without a release: the lock is still held (by the transaction they join).
        await asyncio.gather(*waiting)
        assert lock._thread_lock.locked()
        assert not lock._waiters
        lock._thread_lock.release()

    try:
        run_in_fresh_thread(scenario())
    finally:
        lock.close()


_IN_LINE = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_SH)  # as a writer waiting for the lock holds the turnstile
print("in line", flush=True)
sys.stdin.readline()
"""


def test_on_the_loop_a_short_holder_is_not_waited_for_in_place_behind_another_waiter(
    tmp_path: Path,
) -> None:
    """Another process's loop holds the lock for a short request, but a writer (perhaps a bulk
    load) already waits for it: that one may take the lock next, and the loop would stand
    still for its batch. So the loop waits off the loop, as for a long holder."""
    lock, path = _lock_file(tmp_path)
    try:
        with _other_process_holding(path, "s") as holder:
            with _other_process(_IN_LINE, str(path) + ".turnstile", ready="in line"):
                outcome: list[Any] = []

                def take() -> None:
                    try:
                        _take_on_the_loop(lock)
                        outcome.append("waited in place and took it")
                    except WouldBlock as refused:
                        outcome.append(refused)

                # In a thread, so that waiting in place fails the test instead of hanging it.
                thread = threading.Thread(target=take)
                thread.start()
                thread.join(timeout=30)
                if thread.is_alive():
                    _release(holder)
                    thread.join(timeout=30)
                    lock.__exit__(None, None, None)
                    pytest.fail("the loop waited in place behind another waiter")
                (refused,) = outcome
                assert isinstance(refused, WouldBlock), refused
                assert refused.retry_after == lock._reserve
                assert not lock._thread_lock.locked()
            _release(holder)
        # With nobody in line, the lock is free and taken at once.
        _take_on_the_loop(lock)
        lock.__exit__(None, None, None)
    finally:
        lock.close()
