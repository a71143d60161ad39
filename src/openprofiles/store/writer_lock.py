"""The SQLite writer's turn, shared by threads and by processes.

SQLite lets one transaction write at a time. A second writer that meets the lock retries on
its busy handler, which sleeps in growing steps (1, 2, 5, 10, ... 100 ms) — fine for a rare
collision, ruinous when several server processes (`openprofiles serve --workers N`) or a server
and a bulk command write all the time: each collision costs a sleep, not the few hundred
microseconds the other write takes. `WriterLock` queues writers instead: a thread lock inside
the process and an exclusive `flock` on a file beside the database across processes, so a
waiting writer is woken by the kernel the moment the lock is free and BEGIN IMMEDIATE then finds
the database free.

Every process that writes through `Database` takes this lock; a writer that does not (a plain
`sqlite3` shell) is still handled by SQLite's busy timeout.

`flock` does not queue: when the holder releases, whoever asks next may get it, and a writer
that writes batch after batch (a bulk ingestion, a rule pass) asks again at once — a server's
write waiting behind it could lose that race batch after batch (seconds, seen with
`openprofiles ingest` running). So a second file is a turnstile: a writer that has to wait for
the lock holds the turnstile shared while it waits, and a writer in a worker thread takes the
turnstile exclusively (and lets it go) before it asks for the lock — it waits until every
writer already waiting has had its turn. A server's write then waits for one batch at most.

No wait is without end: a writer stopped while it holds the lock (a loader suspended with
Ctrl-Z or SIGSTOP) would otherwise stall every write of every process for as long as it stays
stopped, with nothing said. A writer waits at most `wait_seconds`, the database's lock timeout
(Settings.database_lock_timeout_seconds, 30 s by default; 0 there, None here: no bound), which
store.database also makes SQLite's busy timeout, the bound of a writer outside the lock. Then it
gets `WriterLockBusy`: a 503 for the API, which the SDKs retry, and a message naming the
holder's process for a command. The lock remembers the latest such wait (`stalled_holder`), for
/health to report while the same holder keeps the lock: every write fails meanwhile. A blocking
`flock` cannot be given up on (it has no timeout, and a thread cannot be interrupted in it), so
a waiter asks without blocking, again and again, with pauses growing to `_LONGEST_PAUSE`; the
turnstile still keeps its place in line meanwhile, so a pause costs at most that much delay,
never the turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from openprofiles.blocking import WouldBlock, must_not_block
from openprofiles.errors import ServiceUnavailable
from openprofiles.settings import DEFAULT_DATABASE_LOCK_TIMEOUT_SECONDS

# What holds the lock, as the first byte of the lock file says: a request on an event loop
# (short by construction: openprofiles.blocking's operations) or anything else — a request in a
# worker thread, a rule pass, a bulk ingestion — which may hold it for seconds. Another
# process's event loop waits for the first kind where it is and never for the second.
_SHORT = b"s"
_MAY_BE_LONG = b"l"

# The longest an event loop waits in place for another process's short request (see
# _acquire_without_waiting): a request holds the lock for milliseconds; one that holds it longer
# (its process stopped) is waited for in a worker thread instead, and the loop serves on.
_SHORT_WAIT_SECONDS = 0.5
# Pauses between tries while the lock is taken: from a tenth of a millisecond (most holders
# write for less than a millisecond), doubling, to this.
_FIRST_PAUSE = 0.0001
_LONGEST_PAUSE = 0.001


class WriterLockBusy(ServiceUnavailable):
    """The writer lock was not free within the wait's bound: another process holds it (perhaps
    stopped with Ctrl-Z or SIGSTOP). Nothing was written; trying again later is safe."""

    # A lock file's path, a process id and a time: printed whole in logs and tracebacks
    # (logging_setup withholds other messages).
    message_has_no_personal_data = True


def _flock_within(fd: int, operation: int, deadline: float) -> bool:
    """Take the flock `operation` (LOCK_EX or LOCK_SH) on `fd` before `deadline` (monotonic
    clock); False when it stayed taken until then (see the module's docstring: no blocking
    flock)."""
    pause = _FIRST_PAUSE
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(pause, left))
        pause = min(pause * 2, _LONGEST_PAUSE)


class WriterLock:
    """Held for the length of one write transaction.

    Threads wait for it where they are. Code on the event loop (openprofiles.blocking) never
    waits: it takes the lock only when it is free, and otherwise raises WouldBlock with a way
    to wait without blocking the loop — for a holder in this process, until it releases; for
    another process, a worker thread that waits in the kernel and then keeps the lock reserved
    for the loop's next try.
    """

    def __init__(
        self,
        path: Path | None,
        *,
        wait_seconds: float | None = DEFAULT_DATABASE_LOCK_TIMEOUT_SECONDS,
    ) -> None:
        # None: a database without a file (in memory), which no other process can open.
        self._path = path
        # None: wait as long as the holder holds it (what an operator may choose, as for
        # PostgreSQL's lock_timeout: Settings.database_lock_timeout_seconds, where it is 0).
        self._wait_seconds = wait_seconds
        # (time.monotonic(), the lock file's st_mtime_ns) when a wait last reached its bound
        # (_busy): the holder it met, as its declaration (_declare) stamped the file.
        self._stall: tuple[float, int] | None = None
        self._thread_lock = threading.Lock()
        # Event loops' futures waiting for the thread lock's release (see _released); the
        # lock guards the check-then-wait against a release between the two.
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()
        self._waiters_lock = threading.Lock()
        # Held (thread lock and flock) on behalf of the event loop's next writer; only the
        # loop's thread reads or changes it.
        self._reserved = False
        # Another process's short holder outlasted the loop's wait in place (_SHORT_WAIT_SECONDS)
        # and has not let go since: the loop does not wait in place for it again.
        self._short_holder_stalled = False
        # The refusal a wait in a worker thread for the loop (_reserve) ended with, for the loop's
        # next try to raise inside its request (_acquire_without_waiting). Set and taken on the
        # loop's thread; dropped when a writer of any thread takes the lock (_declare).
        self._refusal: WriterLockBusy | None = None
        self._fd: int | None = None
        self._turnstile_fd: int | None = None
        if path is not None:
            # Owner-only like the database itself; the file holds nothing, only the lock.
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._turnstile_fd = os.open(
                path.with_name(path.name + ".turnstile"),
                os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                0o600,
            )

    def __enter__(self) -> WriterLock:
        if must_not_block():
            self._acquire_without_waiting()
            return self
        deadline = self._deadline()
        # Bounded too: a writer of this process may itself be waiting for a stopped process.
        if not self._thread_lock.acquire(
            timeout=-1 if self._wait_seconds is None else self._wait_seconds
        ):
            raise self._busy()
        if self._fd is not None:
            try:
                self._after_those_waiting(deadline)
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    self._wait_in_line(deadline)
                self._declare(_MAY_BE_LONG)
            except BaseException:
                self._release_thread_lock()
                raise
        return self

    def _first_in_line(self) -> bool:
        """Whether no other writer waits for the lock; if so, this one is marked as waiting
        (the turnstile held shared, for the caller to let go). A writer already waiting may be
        a bulk load, which could win the lock when the short holder lets go, and waiting in
        place the loop would then stand still for one of its batches."""
        assert self._turnstile_fd is not None
        try:
            fcntl.flock(self._turnstile_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        # Not atomic (flock converts by unlocking first): a writer coming in between queues
        # beside this one, as before there was a turnstile. If it keeps the turnstile (its
        # process stopped there), this one holds nothing and is not first.
        return _flock_within(
            self._turnstile_fd, fcntl.LOCK_SH, time.monotonic() + _SHORT_WAIT_SECONDS
        )

    def _after_those_waiting(self, deadline: float) -> None:
        """Return once every writer of another process that was waiting for the lock has had
        it (they hold the turnstile shared until then); WriterLockBusy at `deadline`."""
        assert self._turnstile_fd is not None
        if not _flock_within(self._turnstile_fd, fcntl.LOCK_EX, deadline):
            raise self._busy()
        fcntl.flock(self._turnstile_fd, fcntl.LOCK_UN)

    def _wait_in_line(self, deadline: float | None = None) -> None:
        """Wait for the other process's write to end, marked as waiting (the turnstile), until
        `deadline` (by default `wait_seconds` from now), then WriterLockBusy."""
        assert self._fd is not None and self._turnstile_fd is not None
        if deadline is None:
            deadline = self._deadline()
        if not _flock_within(self._turnstile_fd, fcntl.LOCK_SH, deadline):
            raise self._busy()
        try:
            if not _flock_within(self._fd, fcntl.LOCK_EX, deadline):
                raise self._busy()
        finally:
            fcntl.flock(self._turnstile_fd, fcntl.LOCK_UN)

    def _deadline(self) -> float:
        if self._wait_seconds is None:
            return math.inf
        return time.monotonic() + self._wait_seconds

    def _busy(self) -> WriterLockBusy:
        """The error for a wait that reached its bound, naming the process the lock file says
        holds the lock (the last to declare itself: _declare). Remembered for `stalled_holder`."""
        declared = self._declared_at()
        if declared is not None:
            self._stall = (time.monotonic(), declared)
        pid = self._holder_pid()
        holder = "another process" if pid is None else f"process {pid}"
        return WriterLockBusy(
            f"The database's writer lock ({self._path}) was not free within "
            f"{self._wait_seconds:g} seconds: {holder} holds it (a command stopped with Ctrl-Z "
            "or SIGSTOP holds it until it is continued or ended). Nothing was written; running "
            "this again is safe once the lock is free.",
            caller_message=(
                "The database is busy: another process has held its writer lock for "
                f"{self._wait_seconds:g} seconds. Nothing of the request was applied; send it "
                "again later."
            ),
        )

    def stalled_holder(self, *, within: float, now: float | None = None) -> str | None:
        """Who made a writer of this process give up (WriterLockBusy) in the `within` seconds
        before `now` (time.monotonic()) and has held the lock since, and for how long; else None.

        Takes no lock and never waits (a health check asks it): "held since" is read from the
        lock file, which every holder stamps as it takes the lock (_declare), so a new holder —
        the stalled one let go — ends the report at once. A holder that let go with nobody
        taking the lock after it is reported until `within` has passed since the last refusal,
        as a write failure is (store.database's write_problem)."""
        stall = self._stall
        now = time.monotonic() if now is None else now
        if stall is None or now - stall[0] > within or self._declared_at() != stall[1]:
            return None
        pid = self._holder_pid()
        holder = "another process" if pid is None else f"process {pid}"
        held = max(0.0, time.time() - stall[1] / 1e9)
        return f"the writer lock has been held by {holder} for {held:.0f} s"

    def _declared_at(self) -> int | None:
        """When the lock file was last stamped by a holder taking the lock (_declare), in
        nanoseconds since the epoch; None without a file."""
        if self._fd is None:
            return None
        try:
            return os.fstat(self._fd).st_mtime_ns
        except OSError:
            return None

    def _holder_pid(self) -> int | None:
        """The process id the holder declared after its kind (_declare), if there is one."""
        if self._fd is None:
            return None
        try:
            declared = os.pread(self._fd, 16, 0)[1:].split(b"\n")[0]
            return int(declared) if declared.isdigit() else None
        except OSError:
            return None

    def _acquire_without_waiting(self) -> None:
        """Take the lock if it is free (or reserved for the loop); WouldBlock if another thread
        or process holds it (openprofiles.blocking: the request then tries again); the
        WriterLockBusy a wait for this try ended with (_reserve)."""
        refusal = self._refusal
        if refusal is not None:
            self._refusal = None
            raise refusal
        if self._reserved:
            self._reserved = False  # this write owns it now; __exit__ releases it
            self._declare(_SHORT)
            return
        if not self._thread_lock.acquire(blocking=False):
            raise WouldBlock("the SQLite writer lock is held in this process", self._released)
        if self._fd is not None:
            try:
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    # The holder writes its kind right after taking the lock; read in the
                    # microseconds between the two, the previous holder's kind is seen.
                    if (
                        os.pread(self._fd, 1, 0) != _SHORT
                        or self._short_holder_stalled
                        or not self._first_in_line()
                    ):
                        raise WouldBlock(
                            "the SQLite writer lock is held by another process", self._reserve
                        ) from None
                    # Another process's event loop holds it for one short request, and nobody
                    # waits before this one: waiting here costs less than any way around it (a
                    # retry repeats the request). Unless it holds it far longer than a request
                    # takes (its process stopped): then in a worker thread, as for a long one.
                    try:
                        taken = _flock_within(
                            self._fd, fcntl.LOCK_EX, time.monotonic() + _SHORT_WAIT_SECONDS
                        )
                    finally:
                        assert self._turnstile_fd is not None
                        fcntl.flock(self._turnstile_fd, fcntl.LOCK_UN)
                    if not taken:
                        # Not again for the loop's next requests, until the lock changes hands.
                        self._short_holder_stalled = True
                        raise WouldBlock(
                            "the SQLite writer lock is held long by another process's loop",
                            self._reserve,
                        ) from None
                self._declare(_SHORT)
            except BaseException:
                self._release_thread_lock()
                raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._release()

    def _release(self) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._release_thread_lock()

    def _release_thread_lock(self) -> None:
        self._thread_lock.release()
        if self._waiters:  # read without the lock: a waiter added after this sees it free
            self._wake_one()

    async def _released(self) -> Callable[[], None] | None:
        """Return once this process's holder has released the lock (at once if it is free):
        what a request on the event loop awaits instead of blocking the loop on it.

        Waiters are woken one at a time, in order: waking all of them made each run its
        request again up to the lock, and all but one find it taken again. The returned
        callable passes the turn on when the woken request's try did not take the lock."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._waiters_lock:
            if not self._thread_lock.locked():
                return self._pass_on
            self._waiters.append((loop, future))
        await future
        return self._pass_on

    def _wake_one(self) -> None:
        while True:
            with self._waiters_lock:
                if not self._waiters:
                    return
                loop, future = self._waiters.popleft()
            try:
                loop.call_soon_threadsafe(self._resolve, future)
                return
            except RuntimeError:
                # That loop has closed (the server stopped): nobody awaits the future; the turn
                # goes to the next waiter. Raising here would fail the write that released.
                continue

    def wake_waiters_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wake every request of `loop` waiting for this process's holder to release (called on
        that loop, as its shared transaction opens: they can join it, store.group_commit).

        Woken one at a time instead, each would wait for a release — and behind another
        process's long writer, each release is a batch of its writes away."""
        with self._waiters_lock:
            mine = [future for (owner, future) in self._waiters if owner is loop]
            self._waiters = deque(item for item in self._waiters if item[0] is not loop)
        for future in mine:
            if not future.done():  # a cancelled request's
                future.set_result(None)

    def _resolve(self, future: asyncio.Future[None]) -> None:
        if future.done():  # its request was cancelled: the turn goes to the next waiter
            self._pass_on()
        else:
            future.set_result(None)

    def _pass_on(self) -> None:
        if self._waiters and not self._thread_lock.locked():
            self._wake_one()

    async def _reserve(self) -> Callable[[], None] | None:
        """Wait in a worker thread for another process to release the lock, and keep it for
        the loop's next writer; returns what gives it back if that try did not use it.

        Waiting for another process has no wake-up the loop could await, and trying again
        blindly could lose to that process's next write every time; a thread parked in
        `flock` costs nothing while it waits.

        A wait that reaches its bound returns too, and the try it was for raises the
        WriterLockBusy where the request takes the lock: inside the request, whose adapter
        answers it 503 as it does a wait in a worker thread. Raised here, out of the adapter's
        retry loop (openprofiles.blocking), it reached the server as an unhandled exception,
        answered 500 without the API's error shape."""
        if self._reserved or not self._thread_lock.acquire(blocking=False):
            return None  # held in this process now: the next try waits for that
        assert self._fd is not None
        waiting = asyncio.get_running_loop().run_in_executor(None, self._wait_in_line)
        try:
            await asyncio.shield(waiting)
        except asyncio.CancelledError:
            # The request is gone; the thread still gets the lock, and gives it back then.
            waiting.add_done_callback(
                lambda done: (
                    self._release() if done.exception() is None else self._release_thread_lock()
                )
            )
            raise
        except WriterLockBusy as refused:
            self._release_thread_lock()
            self._refusal = refused
            return None
        except BaseException:
            self._release_thread_lock()
            raise
        self._reserved = True
        return self._give_back_reservation

    def _declare(self, kind: bytes) -> None:
        """Say, in the lock file, what kind of writer holds the lock now (see _SHORT), and
        which process.

        Advisory: if the byte cannot be written, another process's loop may wait in place for a
        long writer, which is slow but correct — better than failing the write that holds the
        lock (and leaving the lock taken)."""
        assert self._fd is not None
        self._short_holder_stalled = False  # this process holds it now: the stalled one let go
        self._refusal = None  # and a refusal not raised yet is out of date
        with contextlib.suppress(OSError):
            # And the holder's process id, which a writer that waited in vain names (_busy).
            os.pwrite(self._fd, kind + b"%d\n" % os.getpid(), 0)

    def _give_back_reservation(self) -> None:
        if self._reserved:
            self._reserved = False
            self._release()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._turnstile_fd is not None:
            os.close(self._turnstile_fd)
            self._turnstile_fd = None
