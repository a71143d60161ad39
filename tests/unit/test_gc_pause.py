"""openprofiles.gc_pause: automatic collection is off inside a pause, back on after the last of
overlapping pauses ends, and left off for a process that turned it off itself."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from openprofiles.gc_pause import paused_gc


@pytest.fixture(autouse=True)
def collection_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_a_pause_turns_collection_off_and_back_on() -> None:
    with paused_gc():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_collection_resumes_when_the_last_of_overlapping_pauses_ends() -> None:
    entered, release = threading.Event(), threading.Event()

    def other() -> None:
        with paused_gc():
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=other)
    thread.start()
    assert entered.wait(10)
    with paused_gc():
        assert not gc.isenabled()
    assert not gc.isenabled()  # the other thread's pause is still on
    release.set()
    thread.join(10)
    assert gc.isenabled()


def test_a_pause_ends_on_an_exception_and_as_a_decorator() -> None:
    @paused_gc()
    def inside() -> bool:
        return gc.isenabled()

    assert inside() is False and gc.isenabled()
    with pytest.raises(ValueError), paused_gc():
        raise ValueError
    assert gc.isenabled()


def test_collection_turned_off_by_the_process_stays_off() -> None:
    gc.disable()
    with paused_gc():
        pass
    assert not gc.isenabled()
