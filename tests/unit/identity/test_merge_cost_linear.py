"""MergeProfiles and its undo do work linear in the profiles' Attributes (both backends).

Taking the Attributes key by key, each time copying them and rescanning who set every field,
made a merge of 50,000 attributes run for minutes. No clock is read here: the test counts the
lines of Python the identity service runs (a trace of its own module only) for N and for 4N
attributes. Linear work grows about fourfold; work per key that scans all keys, sixteenfold."""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

from openprofiles.context import Services
from openprofiles.identity import service

from .conftest import DOMAIN, fields_of, new_profile

SMALL = 100
# Linear work with N taking 4N is at most about 4 times as much (less, for the fixed part);
# anything quadratic in N is far past this bound.
GROWTH_BOUND = 6


def lines_run(action: Callable[[], Any]) -> tuple[int, Any]:
    """How many lines of identity/service.py `action` runs (a loop's line each time round), and
    what it returns."""
    count = 0

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return local

    def calls(frame: FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename == service.__file__ else None

    previous = sys.gettrace()
    sys.settrace(calls)
    try:
        result = action()
    finally:
        sys.settrace(previous)
    return count, result


def merge_and_undo(services: Services, n: int) -> tuple[int, int]:
    """Lines run by a merge of a profile with `n` attributes into one with `n` others (half of
    them also on the merged profile, which FieldSourceProfileIds picks), and by its undo; the
    results are checked on the way."""
    main_attributes = {f"m{i}": f"main {i}" for i in range(n)}
    donor_attributes = {f"d{i}": f"donor {i}" for i in range(n)}
    donor_attributes.update({f"m{i}": f"donor {i}" for i in range(n // 2)})
    main = new_profile(services, FirstName="Main", Attributes=main_attributes)
    donor = new_profile(services, LastName="Donor", Attributes=donor_attributes)
    picked = {f"m{i}": donor for i in range(n // 2)}

    def merge() -> str:
        with services.write() as tx:
            return service.merge_profiles(
                tx,
                domain_name=DOMAIN,
                main_profile_id=main,
                profile_ids=[donor],
                field_sources={"Attributes": picked},
            ).merge_id

    merge_lines, merge_id = lines_run(merge)
    merged = fields_of(services, main)
    assert merged["Attributes"] == {**main_attributes, **donor_attributes}
    assert (merged["FirstName"], merged["LastName"]) == ("Main", "Donor")

    def undo() -> service.UndoResult:
        with services.write() as tx:
            return service.undo_merge(tx, domain_name=DOMAIN, merge_id=merge_id)

    undo_lines, result = lines_run(undo)
    assert fields_of(services, main) == {"FirstName": "Main", "Attributes": main_attributes}
    assert fields_of(services, donor) == {"LastName": "Donor", "Attributes": donor_attributes}
    assert len(result.reverted_fields) == n + n // 2 + 1  # the keys taken, and LastName
    return merge_lines, undo_lines


def test_merge_and_undo_work_grows_linearly_with_attributes(services, domain):
    small_merge, small_undo = merge_and_undo(services, SMALL)
    large_merge, large_undo = merge_and_undo(services, 4 * SMALL)
    assert large_merge < GROWTH_BOUND * small_merge, (small_merge, large_merge)
    assert large_undo < GROWTH_BOUND * small_undo, (small_undo, large_undo)
