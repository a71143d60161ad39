"""Running a coroutine on an event loop of its own, for tests of code that runs on one."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any


def run_in_fresh_thread(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """asyncio.run in a fresh thread: the test's own thread may have an event loop running
    (Playwright's sync API leaves one in an xdist worker's main thread). Returns the
    coroutine's result, or raises its exception in the test's thread."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(("ok", asyncio.run(coroutine)))
        except BaseException as error:  # re-raised in the test's thread
            outcome.append(("error", error))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    kind, value = outcome[0]
    if kind == "error":
        raise value
    return value
