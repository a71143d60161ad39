"""Code on the event loop is told when it must not block, until it has committed
(openprofiles.blocking)."""

from __future__ import annotations

import pytest

from openprofiles.blocking import (
    WouldBlock,
    avoid_blocking,
    must_not_block,
    note_commit,
    on_the_loop,
)


def test_outside_the_loop_nothing_is_refused() -> None:
    assert not must_not_block()
    avoid_blocking("a KMS call")  # no error: a worker thread may wait
    note_commit()  # harmless outside


def test_on_the_loop_a_wait_is_refused_until_something_committed() -> None:
    with on_the_loop():
        assert must_not_block()
        with pytest.raises(WouldBlock, match="a KMS call") as raised:
            avoid_blocking("a KMS call")
        assert raised.value.retry_after is None
        note_commit()
        # Committed work cannot be run again elsewhere: from now on it waits where it is.
        assert not must_not_block()
        avoid_blocking("a KMS call")
    assert not must_not_block()


def test_each_request_starts_restartable() -> None:
    with on_the_loop():
        note_commit()
    with on_the_loop():
        assert must_not_block()


def test_would_block_passes_through_except_exception() -> None:
    """Handlers turn `Exception`s into API errors; the signal must reach the adapter."""
    with pytest.raises(WouldBlock), on_the_loop():
        try:
            avoid_blocking("an action after commit")
        except Exception:  # noqa: BLE001 — what a handler's error mapping does
            pytest.fail("WouldBlock was caught as an error")
