"""What a failed item's checkpoint keeps of what was not applied (FAILED_MARK, `_Unapplied`):
read back as written, another version of the item not taken for it, and within
CHECKPOINT_LENGTH however many records were set aside."""

from __future__ import annotations

from typing import Any

import pytest

from openprofiles.flows import service as flows


@pytest.mark.parametrize(
    "left",
    [
        flows._Unapplied(),
        flows._Unapplied(1500),
        flows._Unapplied(40, frozenset({3, 7, 8, 9, 12})),
        flows._Unapplied(0, frozenset({1})),
    ],
)
def test_a_failed_checkpoint_says_what_was_not_applied(left: Any) -> None:
    version = "1764550000000000000-4096"
    checkpoint = left.failed_checkpoint(version)
    assert flows._failed(checkpoint, version) == left
    # Another version of the item: not this failed item (read whole, as a changed item is).
    assert flows._failed(checkpoint, version + "0") is None
    assert flows._is_pending(checkpoint, flows.SourceItem("a.jsonl", version)) is False


def test_a_failed_checkpoint_too_long_to_name_every_record_set_aside_applies_more() -> None:
    """Beyond CHECKPOINT_LENGTH, the records from the first set aside that cannot be named on
    are applied again, rather than one set aside never."""
    version = "e" * 40
    aside = frozenset(range(2, 400, 2))
    checkpoint = flows._Unapplied(500, aside).failed_checkpoint(version)
    assert len(checkpoint) <= flows.CHECKPOINT_LENGTH
    left = flows._failed(checkpoint, version)
    assert left is not None
    assert all(left.wants(p) for p in aside) and all(left.wants(p) for p in range(501, 510))
    assert not left.wants(1)
