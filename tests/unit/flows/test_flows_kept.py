"""flows.kept: what the watcher keeps of each flow between passes (item digests, checkpoints) is
found only under the stamp it was kept under, bounded by rows in all, the flow used longest ago
dropped first, and dropped with its flow."""

from __future__ import annotations

from openprofiles.flows.kept import KeptPerFlow


def test_rows_are_found_under_their_stamp_only() -> None:
    kept: KeptPerFlow[str, dict[str, int]] = KeptPerFlow(10)
    kept.put("a", "v1", {"x": 1})
    assert kept.get("a", "v1") == {"x": 1}
    assert kept.get("a", "v2") is None
    assert kept.get("b", "v1") is None
    # An empty set of rows is kept as such: nothing to read again.
    kept.put("b", "v1", {})
    assert kept.get("b", "v1") == {}
    kept.forget("a")
    assert kept.get("a", "v1") is None


def test_the_flow_used_longest_ago_goes_first_past_the_limit() -> None:
    kept: KeptPerFlow[str, list[int]] = KeptPerFlow(5)
    kept.put("a", "s", [1, 2])
    kept.put("b", "s", [1, 2])
    assert kept.get("a", "s") == [1, 2]  # "a" used after "b"
    kept.put("c", "s", [1, 2])
    assert list(kept) == ["a", "c"]
    # More rows than the limit alone are not kept, and what was kept of the flow goes.
    kept.put("a", "s", list(range(6)))
    assert list(kept) == ["c"]


def test_gone_flows_are_dropped() -> None:
    kept: KeptPerFlow[str, list[int]] = KeptPerFlow(10)
    for flow in ("a", "b", "c"):
        kept.put(flow, "s", [1])
    kept.drop(lambda flow: flow != "b")
    assert list(kept) == ["b"]
