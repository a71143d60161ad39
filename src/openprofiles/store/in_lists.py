"""IN lists short enough for one statement, on SQLite and PostgreSQL alike.

A statement naming an unbounded list of values fails past the driver's limit of bound values
(SQLite 32,766, PostgreSQL 65,535), and a long list makes one statement slow to plan. Every
query whose IN list grows with the data (merged profiles, a batch's digests, a group's
members) names its values in the chunks `in_chunks` yields.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

# Values per statement: PostgreSQL takes many, but a bound keeps one statement small, and a
# statement naming two lists (domain, type, digests) stays far below SQLite's limit.
VALUES_PER_STATEMENT = 500


def in_chunks(values: Sequence[T]) -> Iterator[list[T]]:
    """`values` in lists of at most VALUES_PER_STATEMENT, in their order."""
    for start in range(0, len(values), VALUES_PER_STATEMENT):
        yield list(values[start : start + VALUES_PER_STATEMENT])
