"""How often a log line that repeats is written: `RepeatedLines`, shared by the API (wire.dispatch)
and the web pages (ui.web), which both log a domain's key that cannot be used.

While a KMS is down, every request of its domains, API call or page, meets the same key
problem, and a line for each would bury the rest of the log: the first is written, the repeats
within a window only counted, and the first after the window says how many were left out.

Each server process has its own limiters: with several workers, each writes its own lines.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

# A key problem is logged at most once per domain and message in this many seconds, by the API
# (the problem withheld from its caller) and by the pages alike.
KEY_PROBLEM_LOG_WINDOW_SECONDS = 60.0
# How many keys a RepeatedLines follows at once. An API caller can make new (domain, message)
# pairs (a CreateDomain with any domain name and alias): past this, the key followed longest is
# let go (its count reported), and the table stays bounded.
MOST_FOLLOWED = 1024

K = TypeVar("K", bound=Hashable)


class RepeatedLines(Generic[K]):
    """Which of the repeats of a log line to write, by key: the first at once; the repeats
    within `window` seconds of it are only counted; the first one after the window is written
    with that count, and opens the next window.

    No count is lost, and the table stays bounded: a key is let go once its window has passed,
    or when `most_followed` keys are followed and a new one comes (the one followed longest);
    a key let go with lines left out has its count written by `report` (the key, the count:
    the caller's line for it, with no request of its own to name), called by `admit` before it
    answers, outside the lock. So the count of repeats that stop within a window is written by
    the first `admit` of any key after that window: at the latest with the next line of any
    key. Until then it is pending: a process that meets no key problem again never writes it.
    A key let go to make room and met again within its window gets a line at once: more lines
    than one a window, only while more than `most_followed` keys repeat at once.

    Thread-safe: requests fail on the event loop and in worker threads at once. `clock` gives
    monotonic seconds (a test gives its own)."""

    def __init__(
        self,
        window: float,
        *,
        report: Callable[[K, int], None],
        clock: Callable[[], float] = time.monotonic,
        most_followed: int = MOST_FOLLOWED,
    ) -> None:
        self._window = window
        self._report = report
        self._clock = clock
        self._most_followed = most_followed
        self._lock = threading.Lock()
        # key -> [when its window opened, repeats left out since], in the order the windows
        # opened (a key whose window opens again goes to the end): the first ones are the
        # first to pass, and the ones followed longest.
        self._followed: dict[K, list[float | int]] = {}

    @property
    def window(self) -> float:
        return self._window

    def admit(self, key: K) -> int | None:
        """None when this line is to be left out (it is counted); else how many lines of the
        key were left out since the last one written (0 for the first). Before it answers, it
        reports (`report`) the counts of the other keys it let go."""
        let_go: list[tuple[K, int]] = []
        with self._lock:
            # Read in the lock, so the windows open in the order of `_followed`.
            now = self._clock()
            left_out = self._let_go_passed(now, key, let_go)
            entry = self._followed.get(key)
            if entry is not None:  # its window has not passed (`_let_go_passed`)
                entry[1] += 1
                answer: int | None = None
            else:
                while len(self._followed) >= self._most_followed:
                    oldest = next(iter(self._followed))
                    _, count = self._followed.pop(oldest)
                    if count:
                        let_go.append((oldest, int(count)))
                self._followed[key] = [now, 0]
                answer = left_out
        # Outside the lock: a report writes a log line, which may take a while.
        for other, count in let_go:
            self._report(other, count)
        return answer

    def clear(self) -> None:
        """Follow no key any more, nothing reported (a test starts from a fresh limiter)."""
        with self._lock:
            self._followed.clear()

    def left_out_note(self, left_out: int, repeats: str) -> str:
        """What a written line adds for the `left_out` lines (admit's count) before it: "" for
        none; else " [N more `repeats` met this in the W s after the last such line; not
        logged]", `repeats` saying what repeated ("requests of the domain")."""
        if not left_out:
            return ""
        return (
            f" [{left_out} more {repeats} met this in the {self._window:g} s after the last "
            "such line; not logged]"
        )

    def _let_go_passed(self, now: float, key: K, let_go: list[tuple[K, int]]) -> int:
        """Stop following the keys whose window has passed: those of other keys with a count
        go to `let_go`, to be reported; `key`'s count is returned (0 when it had none, or is
        not followed), for the line about to be written to carry it."""
        own = 0
        while self._followed:
            oldest = next(iter(self._followed))
            opened, count = self._followed[oldest]
            if now - opened < self._window:
                break  # the later ones opened later still
            del self._followed[oldest]
            if oldest == key:
                own = int(count)
            elif count:
                let_go.append((oldest, int(count)))
        return own
