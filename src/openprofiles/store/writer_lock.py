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
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from types import TracebackType


class WriterLock:
    """Held for the length of one write transaction."""

    def __init__(self, path: Path | None) -> None:
        # None: a database without a file (in memory), which no other process can open.
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        if path is not None:
            # Owner-only like the database itself; the file holds nothing, only the lock.
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def __enter__(self) -> WriterLock:
        self._thread_lock.acquire()
        if self._fd is not None:
            try:
                # Blocks in the kernel (the GIL released) until the other process's write ends.
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except BaseException:
                self._thread_lock.release()
                raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
