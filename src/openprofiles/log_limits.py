"""How often a log line that repeats is written: `RepeatedLines`, shared by the API (wire.dispatch)
and the web pages (ui.web), which both log a domain's key that cannot be used.

While a KMS is down, every request of its domains, API call or page, meets the same key
problem, and a line for each would bury the rest of the log: the first is written, the repeats
within a window only counted, and the first after the window says how many were left out.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

# A key problem is logged at most once per domain and message in this many seconds, by the API
# (the problem withheld from its caller) and by the pages alike.
KEY_PROBLEM_LOG_WINDOW_SECONDS = 60.0
# How many keys a RepeatedLines follows at once. An API caller can make new (domain, message)
# pairs (a CreateDomain with any domain name and alias): past this, a new key's lines are all
# written, and the table stays bounded.
MOST_FOLLOWED = 1024


class RepeatedLines:
    """Which of the repeats of a log line to write, by key: the first at once; the repeats
    within `window` seconds of it are only counted; the first one after the window is written
    with that count, and opens the next window. (Repeats that stop within a window leave their
    count unwritten until the key comes again.) Thread-safe: requests fail on the event loop
    and in worker threads at once. `clock` gives monotonic seconds (a test gives its own)."""

    def __init__(
        self,
        window: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        most_followed: int = MOST_FOLLOWED,
    ) -> None:
        self._window = window
        self._clock = clock
        self._most_followed = most_followed
        self._lock = threading.Lock()
        # key -> [when its window opened, repeats left out since]
        self._followed: dict[Hashable, list[Any]] = {}

    @property
    def window(self) -> float:
        return self._window

    def admit(self, key: Hashable) -> int | None:
        """None when this line is to be left out (it is counted); else how many lines of the
        key were left out since the last one written (0 for the first)."""
        now = self._clock()
        with self._lock:
            entry = self._followed.get(key)
            if entry is not None and now - entry[0] < self._window:
                entry[1] += 1
                return None
            left_out = entry[1] if entry is not None else 0
            if entry is None and len(self._followed) >= self._most_followed:
                self._forget_settled(now)
                if len(self._followed) >= self._most_followed:
                    return 0  # written, not followed
            self._followed[key] = [now, 0]
            return left_out

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

    def _forget_settled(self, now: float) -> None:
        """Stop following the keys whose window has passed with nothing left out: their next
        line would be written anyway, and none has a count to report."""
        for key, (opened, left_out) in list(self._followed.items()):
            if left_out == 0 and now - opened >= self._window:
                del self._followed[key]
