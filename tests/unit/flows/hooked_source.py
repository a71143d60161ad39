"""A flow source for tests of what another process does at a precise moment of a run: it reads
a real source (a folder, a bucket), and calls `hooks[key]()` once, when that item is opened."""

from __future__ import annotations

from collections.abc import Callable

from openprofiles.flows.sources import FlowSource, ItemStream, SourceItem


class Hooked:
    def __init__(self, inner: FlowSource, hooks: dict[str, Callable[[], None]]) -> None:
        self.inner = inner
        self.hooks = hooks

    def items(self) -> list[SourceItem]:
        return self.inner.items()

    def open(self, key: str) -> ItemStream:
        hook = self.hooks.pop(key, None)
        if hook is not None:
            hook()
        return self.inner.open(key)

    def describe(self, key: str) -> str:
        return self.inner.describe(key)
