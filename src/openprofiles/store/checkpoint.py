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
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

logger = logging.getLogger("openprofiles.store")

# Often enough that the log stays a few MB under a steady write load, rarely enough that a
# busy server does not fsync the database file hundreds of times a second.
DEFAULT_MIN_INTERVAL = 0.2
DEFAULT_RESTART_AFTER_FRAMES = 65_536


class Checkpointer:
    """Runs `PRAGMA wal_checkpoint(PASSIVE)` on its own thread after writes were committed.

    `connect` returns a DBAPI connection (sqlite3) in autocommit mode; the checkpointer keeps
    one for its lifetime. The thread starts with the first nudge and stops on `close`.
    """

    def __init__(
        self,
        connect: Callable[[], Any],
        *,
        min_interval: float = DEFAULT_MIN_INTERVAL,
        pause_writers: Callable[[], AbstractContextManager[Any]] | None = None,
        restart_after_frames: int = DEFAULT_RESTART_AFTER_FRAMES,
    ) -> None:
        self._connect = connect
        self._min_interval = min_interval
        self._pause_writers = pause_writers
        self.restart_after_frames = restart_after_frames
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

    def nudge(self) -> None:
        """Note that a write transaction committed; a checkpoint will follow shortly."""
        if self._stop.is_set():
            return
        if self._thread is None:
            with self._start_lock:
                if self._thread is None and not self._stop.is_set():
                    self._thread = threading.Thread(
                        target=self._run, name="sqlite-checkpoint", daemon=True
                    )
                    self._thread.start()
        self._wake.set()

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
            while True:
                self._wake.wait()
                if self._stop.is_set():
                    return
                self._wake.clear()
                started = time.monotonic()
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
                    with self._done:
                        self.last_result = result
                        self.runs += 1
                        self._done.notify_all()
                # Coalesce the commits of the next interval into one checkpoint.
                rest = self._min_interval - (time.monotonic() - started)
                if rest > 0:
                    self._stop.wait(rest)
        except Exception as error:
            logger.error("WAL checkpoint thread stopped: %s", type(error).__name__)
        finally:
            if connection is not None:
                connection.close()

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
