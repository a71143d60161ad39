"""Pausing Python's cycle collector while a bulk step builds many objects that all stay alive.

The collector runs after every few hundred new container objects and, every so often, walks
every object the process holds. A step that builds 100,000 lists or tuples that all live until
it ends (a matching job reading a domain's features, shaping its groups, storing them) makes it
run hundreds of times for nothing to free, each full pass walking what the process already
held: in the matching job that was a third of reading the features. `paused_gc` turns automatic
collection off for such a step and back on after; garbage cycles made meanwhile are collected
at the next automatic collection.

The switch is process-wide, so pauses are counted: with two steps paused at once (two threads),
collection resumes when the last ends; a process that turned collection off itself keeps it off.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_paused = 0
_resume = False


@contextmanager
def paused_gc() -> Iterator[None]:
    global _paused, _resume
    with _lock:
        if _paused == 0:
            _resume = gc.isenabled()
            gc.disable()
        _paused += 1
    try:
        yield
    finally:
        with _lock:
            _paused -= 1
            if _paused == 0 and _resume:
                gc.enable()
