"""How long a contact lasted, as the contact history shows it (ui.history.shown_duration)."""

from __future__ import annotations

import pytest

from openprofiles.ui.history import shown_duration


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, ""),
        (0, "0:00"),
        (65, "1:05"),
        (3599, "59:59"),
        # A 2.5-hour call read "150:05".
        (9005, "2:30:05"),
        (36000, "10:00:00"),
        # An end before the start was shown blank, as if unknown.
        (-3, "—"),
    ],
)
def test_a_duration_reads_as_a_clock(seconds: int | None, shown: str) -> None:
    assert shown_duration(seconds) == shown
