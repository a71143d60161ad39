"""store.in_lists: every value once, in order, no list over the bound."""

from __future__ import annotations

from openprofiles.store.in_lists import VALUES_PER_STATEMENT, in_chunks


def test_values_come_back_in_order_in_bounded_lists() -> None:
    values = [f"id-{n}" for n in range(2 * VALUES_PER_STATEMENT + 7)]
    chunks = list(in_chunks(values))
    assert [len(c) for c in chunks] == [VALUES_PER_STATEMENT, VALUES_PER_STATEMENT, 7]
    assert [v for c in chunks for v in c] == values


def test_no_values_no_statement() -> None:
    assert list(in_chunks([])) == []


def test_bytes_digests_are_chunked_like_ids() -> None:
    digests = [bytes([n % 256, n // 256]) for n in range(VALUES_PER_STATEMENT + 1)]
    assert [len(c) for c in in_chunks(digests)] == [VALUES_PER_STATEMENT, 1]
