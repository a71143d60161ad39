"""Background WAL checkpoints for SQLite, off the commit path.

By default SQLite checkpoints inside whichever COMMIT pushes the write-ahead log past 1,000
pages: that commit copies the log into the database file and fsyncs it, so one request in a
few hundred pays several milliseconds for everybody's writes (the p99 of every write path).
Here the pooled connections run with `wal_autocheckpoint=0`, every write transaction nudges a
`Checkpointer` when it commits, and the checkpointer's own thread runs PASSIVE checkpoints —
which never block readers or the writer — at most every `min_interval` seconds. The work done
is the same; it just no longer sits inside a request.

If the thread cannot checkpoint (the file is busy, a disk error), the log keeps growing and
the next nudge tries again; SQLite itself checkpoints when the last connection closes.

A checkpoint alone does not shrink the log: the next write starts it over from the beginning
only if, when that write began, every frame had been copied back. Under a steady write load
(a busy server, a bulk load) a write is always under way, each passive checkpoint ends with
newer frames behind it, and the log grew without bound — 97 MB in 10,000 small commits, 584 MB
in a ten-second CreateProfile benchmark, slowing every read that has to search it. So once the
log holds `restart_after_frames` frames, the checkpointer holds writers off (`pause_writers`:
the writer lock) for one more passive checkpoint, which then copies everything back, and the
next write starts the log over. Pages are 4 KiB, so the default lets the log reach 256 MiB:
that checkpoint holds writers off while it syncs the log and the database file (130–150 ms on
a slow disk, measured), so it should come rarely — every few seconds at the most under the
heaviest load measured, not every 64 MiB (which cost about a tenth of CreateProfile's rate).

Restarting the log does not empty the file: a restarted log is written over from the start,
and the frames past the new end stay in the file until they are written over, or until the
log is cut back to `journal_size_limit` (256 MiB). Those frames are old page images — a deleted
profile's sealed blob, a deleted domain's wrapped data key — which, with the keyring beside the
database, can be opened. So code that erases data calls `request_truncate()` once its
transaction has committed (`Database.request_truncate`): within about `truncate_interval`
seconds the checkpointer copies the log back (a passive checkpoint first, while writers go on),
then holds writers off (`pause_writers`) for a TRUNCATE checkpoint, which copies the rest and
cuts the -wal file to zero bytes. Readers are never stopped: the TRUNCATE waits for readers that
still read from the log for `truncate_wait` seconds at most — writers wait as long — and if one
is still reading (a long read transaction), the writers are let go and it tries again later
(`truncate_interval`, doubling each time up to `truncate_max_interval`). Erasures that come
close together share one truncation. (With `secure_delete`, set on every connection, the
deleted cells are zeroed in the page images that the log holds and the checkpoint copies back.)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

logger = logging.getLogger("openprofiles.store")

# Often enough that the log stays a few MB under a steady write load, rarely enough that a
# busy server does not fsync the database file hundreds of times a second.
DEFAULT_MIN_INTERVAL = 0.2
DEFAULT_RESTART_AFTER_FRAMES = 65_536
# After an erasure: how soon the log is truncated (erasures within it share one truncation),
# how long writers are held off while readers still read from the log, and how long the wait
# between tries grows to while a reader keeps it from happening.
DEFAULT_TRUNCATE_INTERVAL = 0.5
DEFAULT_TRUNCATE_WAIT = 0.1
DEFAULT_TRUNCATE_MAX_INTERVAL = 30.0


class Checkpointer:
    """Runs `PRAGMA wal_checkpoint(PASSIVE)` on its own thread after writes were committed,
    and `PRAGMA wal_checkpoint(TRUNCATE)` after data was erased (`request_truncate`).

    `connect` returns a DBAPI connection (sqlite3) in autocommit mode; the checkpointer keeps
    one for its lifetime. The thread starts with the first nudge (or request) and stops on
    `close`.
    """

    def __init__(
        self,
        connect: Callable[[], Any],
        *,
        min_interval: float = DEFAULT_MIN_INTERVAL,
        pause_writers: Callable[[], AbstractContextManager[Any]] | None = None,
        restart_after_frames: int = DEFAULT_RESTART_AFTER_FRAMES,
        truncate_interval: float = DEFAULT_TRUNCATE_INTERVAL,
        truncate_wait: float = DEFAULT_TRUNCATE_WAIT,
        truncate_max_interval: float = DEFAULT_TRUNCATE_MAX_INTERVAL,
    ) -> None:
        self._connect = connect
        self._min_interval = min_interval
        self._pause_writers = pause_writers
        self.restart_after_frames = restart_after_frames
        self.truncate_interval = truncate_interval
        self.truncate_wait = truncate_wait
        self.truncate_max_interval = truncate_max_interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._done = threading.Condition()
        # What the last checkpoint reported: (busy, frames in the log, frames checkpointed);
        # `runs` counts completed checkpoints, `paused` those that held writers off. For
        # operators and tests.
        self.last_result: tuple[int, int, int] | None = None
        self.runs = 0
        self.paused = 0
        # An erasure committed and the log has not been truncated since (request_truncate);
        # guarded by `_done`. `truncations` counts truncations done, `truncate_busy` tries that
        # a reader held up.
        self._truncate_pending = False
        self.truncations = 0
        self.truncate_busy = 0

    def nudge(self) -> None:
        """Note that a write transaction committed; a checkpoint will follow shortly."""
        if self._stop.is_set():
            return
        self._start()
        self._wake.set()

    def request_truncate(self) -> None:
        """Note that a transaction erased data: the log, which still holds the erased rows'
        page images, is to be emptied soon (the module docstring), and at the latest when the
        checkpointer closes. Returns at once (it never waits for a lock or the disk: safe on
        the event loop). Called inside the erasing transaction (Tx.erased), which holds the
        writer lock: the truncation, which takes that lock, comes after its commit."""
        if self._stop.is_set():
            return
        with self._done:
            self._truncate_pending = True
        self._start()
        self._wake.set()

    def wait_for_truncation(self, after: int, timeout: float) -> bool:
        """Block until more than `after` truncations have completed (or `timeout` passes)."""
        return self.wait_for(lambda: self.truncations > after, timeout)

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until `predicate` (of the counters above) holds, checked after each
        checkpoint or truncation try (or until `timeout` passes)."""
        with self._done:
            return self._done.wait_for(predicate, timeout)

    def _start(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None and not self._stop.is_set():
                    self._thread = threading.Thread(
                        target=self._run, name="sqlite-checkpoint", daemon=True
                    )
                    self._thread.start()

    def wait_for_run(self, after: int, timeout: float) -> bool:
        """Block until more than `after` checkpoints have completed (or `timeout` passes)."""
        with self._done:
            return self._done.wait_for(lambda: self.runs > after, timeout)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)

    def _run(self) -> None:
        connection = None
        try:
            connection = self._connect()
            # When a requested truncation may run next: erasures close together share one, and
            # while a reader holds one up the tries come further apart (`backoff`).
            truncate_at = 0.0
            backoff = self.truncate_interval
            while True:
                with self._done:
                    pending = self._truncate_pending
                self._wake.wait(max(0.0, truncate_at - time.monotonic()) if pending else None)
                if self._stop.is_set():
                    with self._done:
                        pending = self._truncate_pending
                    if pending:
                        # One try before the end, not left to the next start: a command that
                        # erased and exits at once, beside a server that keeps the file open.
                        self._truncate(connection)
                    return
                self._wake.clear()
                started = time.monotonic()
                with self._done:
                    pending = self._truncate_pending
                if pending and started >= truncate_at:
                    if self._truncate(connection):
                        backoff = self.truncate_interval
                    else:
                        backoff = min(backoff * 2, self.truncate_max_interval)
                    truncate_at = time.monotonic() + backoff
                else:
                    self._passive(connection)
                # Coalesce the commits of the next interval into one checkpoint.
                rest = self._min_interval - (time.monotonic() - started)
                if rest > 0:
                    self._stop.wait(rest)
        except Exception as error:
            logger.error("WAL checkpoint thread stopped: %s", type(error).__name__)
        finally:
            if connection is not None:
                connection.close()

    def _passive(self, connection: Any) -> None:
        try:
            result = self._checkpoint(connection)
            if self._must_pause_writers(result):
                assert self._pause_writers is not None
                with self._pause_writers():
                    result = self._checkpoint(connection)
                self.paused += 1
        except Exception as error:  # a busy or failing disk: try again on the next nudge
            logger.warning("WAL checkpoint failed: %s", type(error).__name__)
        else:
            self._note_run(result)

    def _truncate(self, connection: Any) -> bool:
        """Empty the log for a requested truncation; whether it was emptied (if not, it stays
        requested and is tried again later)."""
        try:
            # Most of the copying, while writers go on.
            self._note_run(self._checkpoint(connection))
            pause = self._pause_writers() if self._pause_writers is not None else nullcontext()
            with pause:
                # Every erasure that asked before now has committed or rolled back (it asked
                # holding the writer lock, which this pause has taken since), and none can
                # commit until the writers are let go.
                with self._done:
                    self._truncate_pending = False
                result = self._checkpoint_truncate(connection)
        except Exception as error:  # a failing disk: try again later
            logger.warning("WAL truncation failed: %s", type(error).__name__)
            done = False
        else:
            done = result[0] == 0
            self._note_run(result)
        with self._done:
            if done:
                self.truncations += 1
            else:
                self._truncate_pending = True
                self.truncate_busy += 1
            self._done.notify_all()
        return done

    def _checkpoint_truncate(self, connection: Any) -> tuple[int, int, int]:
        """`PRAGMA wal_checkpoint(TRUNCATE)`, waiting `truncate_wait` at most for the readers
        still reading from the log (it reports busy if they did not finish)."""
        former = int(connection.execute("PRAGMA busy_timeout").fetchone()[0])
        connection.execute(f"PRAGMA busy_timeout={max(1, round(self.truncate_wait * 1000))}")
        try:
            row = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            connection.execute(f"PRAGMA busy_timeout={former}")
        return int(row[0]), int(row[1]), int(row[2])

    def _note_run(self, result: tuple[int, int, int]) -> None:
        with self._done:
            self.last_result = result
            self.runs += 1
            self._done.notify_all()

    @staticmethod
    def _checkpoint(connection: Any) -> tuple[int, int, int]:
        row = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def _must_pause_writers(self, result: tuple[int, int, int]) -> bool:
        """Whether the log has grown long: no write has started it over for a while. (Even
        when this checkpoint copied every frame, a write already under way when it ended keeps
        the log going.)"""
        _busy, logged, _copied = result
        return self._pause_writers is not None and logged >= self.restart_after_frames
