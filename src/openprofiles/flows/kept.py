"""What a process keeps of each flow between the watcher's passes, to save work the database or
the HMAC would repeat: `KeptPerFlow`, rows kept per flow under a stamp that says they still
hold (flows.item_keys: the digests of a flow's item keys under its domain's index key;
flows.check_cache: its checkpoints under its change count), so many rows in all at most (the
flows checked longest ago dropped first), and dropped with their flow. What is kept decides
nothing the database would not: a stamp that differs, or nothing kept, means the work is done
again."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sized
from typing import Generic, TypeVar

Stamp = TypeVar("Stamp")
Rows = TypeVar("Rows", bound=Sized)


class KeptPerFlow(Generic[Stamp, Rows]):
    """Rows kept by flow (flows.service's key: the process's Services, the domain and the flow),
    each under the stamp they were made under, `limit` rows in all; safe across threads (the
    watcher's listing threads and its loop)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._kept: OrderedDict[Hashable, tuple[Stamp, Rows]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, flow: Hashable, stamp: Stamp) -> Rows | None:
        """The rows kept for `flow` under `stamp`, or None (none kept, or kept under another)."""
        with self._lock:
            kept = self._kept.get(flow)
            if kept is None or kept[0] != stamp:
                return None
            self._kept.move_to_end(flow)
            return kept[1]

    def put(self, flow: Hashable, stamp: Stamp, rows: Rows) -> None:
        """Keep `rows` for `flow` under `stamp`, in place of what was kept for it; not kept when
        they are more than the limit alone, and the flows kept longest ago dropped while all are
        more than it."""
        with self._lock:
            self._kept.pop(flow, None)
            if len(rows) > self.limit:
                return
            self._kept[flow] = (stamp, rows)
            total = sum(len(kept) for _, kept in self._kept.values())
            while total > self.limit:
                total -= len(self._kept.popitem(last=False)[1][1])

    def forget(self, flow: Hashable) -> None:
        with self._lock:
            self._kept.pop(flow, None)

    def drop(self, gone: Callable[[Hashable], bool]) -> None:
        """Drop what is kept for the flows `gone` says are (flows.service `_drop_gone_flows`)."""
        with self._lock:
            for flow in [flow for flow in self._kept if gone(flow)]:
                del self._kept[flow]

    def __iter__(self) -> Iterator[Hashable]:
        """The flows something is kept for, as they are now."""
        with self._lock:
            return iter(list(self._kept))
