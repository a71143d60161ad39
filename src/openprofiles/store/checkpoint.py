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
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("openprofiles.store")

# Often enough that the log stays a few MB under a steady write load, rarely enough that a
# busy server does not fsync the database file hundreds of times a second.
DEFAULT_MIN_INTERVAL = 0.2


class Checkpointer:
    """Runs `PRAGMA wal_checkpoint(PASSIVE)` on its own thread after writes were committed.

    `connect` returns a DBAPI connection (sqlite3) in autocommit mode; the checkpointer keeps
    one for its lifetime. The thread starts with the first nudge and stops on `close`.
    """

    def __init__(
        self, connect: Callable[[], Any], *, min_interval: float = DEFAULT_MIN_INTERVAL
    ) -> None:
        self._connect = connect
        self._min_interval = min_interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._done = threading.Condition()
        # What the last checkpoint reported: (busy, frames in the log, frames checkpointed);
        # `runs` counts completed checkpoints. Both for operators and tests.
        self.last_result: tuple[int, int, int] | None = None
        self.runs = 0

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
                    row = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except Exception as error:  # a busy or failing disk: try again on the next nudge
                    logger.warning("WAL checkpoint failed: %s", type(error).__name__)
                else:
                    with self._done:
                        self.last_result = (int(row[0]), int(row[1]), int(row[2]))
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
