"""SIGTERM handled by the process for the length of a block.

SIGTERM is what systemd, Kubernetes, docker and `kill` send to stop a process. Python leaves it
at its default (the process dies at once), so each long-running command says what it means for
it: a loader or connector stops as on Ctrl-C (cli_support.sigterm_as_ctrl_c), the server shuts
down gracefully and exits 0 (serving._sigterm_stops).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any


@contextmanager
def sigterm_handled_by(handler: Callable[[int, FrameType | None], Any]) -> Iterator[None]:
    """While the block runs, SIGTERM calls `handler`; the default is put back after. Left alone
    where Python can set no handler (a thread other than the main one: a test runner's) and
    where SIGTERM is ignored or handled already (whoever started the process chose that)."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return
    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
