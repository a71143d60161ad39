"""Running callers at the same moment, for tests of what concurrent processes may do."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def race(callers: Sequence[Callable[[], list[T]]]) -> list[T]:
    """Run the callers in threads released together by a barrier; everything they returned,
    concatenated. Any caller's exception fails the test."""
    start = threading.Barrier(len(callers))
    results: list[list[T]] = [[] for _ in callers]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            start.wait(timeout=30)
            results[i] = callers[i]()
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(callers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    return [item for returned in results for item in returned]
