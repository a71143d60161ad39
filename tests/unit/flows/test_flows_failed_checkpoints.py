"""What a failed item's checkpoint keeps of what was not applied (FAILED_MARK, `Unapplied`):
read back as written, another version of the item not taken for it, and every record set aside
named however many there are (before 0040 it was held to 255 characters, and the records from
the first one left unnamed on were applied again: test_flows_many_set_aside)."""

from __future__ import annotations

from typing import Any

import pytest

from openprofiles.flows import checkpoints as flows
from openprofiles.flows.sources import SourceItem


@pytest.mark.parametrize(
    "left",
    [
        flows.Unapplied(),
        flows.Unapplied(1500),
        flows.Unapplied(40, frozenset({3, 7, 8, 9, 12})),
        flows.Unapplied(0, frozenset({1})),
    ],
)
def test_a_failed_checkpoint_says_what_was_not_applied(left: Any) -> None:
    version = "1764550000000000000-4096"
    checkpoint = left.failed_checkpoint(version)
    assert flows.failed_plan(checkpoint, version) == left
    # Another version of the item: not this failed item (read whole, as a changed item is).
    assert flows.failed_plan(checkpoint, version + "0") is None
    assert flows.is_pending(checkpoint, SourceItem("a.jsonl", version)) is False


def test_a_failed_checkpoint_names_every_record_set_aside_however_many() -> None:
    version = "e" * 40
    aside = frozenset(range(2, 400, 2))
    left = flows.failed_plan(flows.Unapplied(500, aside).failed_checkpoint(version), version)
    assert left == flows.Unapplied(500, aside)
    # The records between those set aside were applied: none of them is wanted again.
    assert [p for p in range(1, 510) if left.wants(p)] == [*sorted(aside), *range(501, 510)]
