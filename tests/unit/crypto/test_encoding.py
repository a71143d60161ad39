"""length_prefixed's bytes are fixed: sealed records and digests depend on them."""

from __future__ import annotations

from openprofiles.crypto.encoding import length_prefixed


def test_known_bytes_for_one_part_and_several() -> None:
    assert length_prefixed("ab") == b"\x00\x00\x00\x02ab"
    assert length_prefixed(b"\xff") == b"\x00\x00\x00\x01\xff"
    assert length_prefixed("é") == b"\x00\x00\x00\x02\xc3\xa9"
    assert length_prefixed("") == b"\x00\x00\x00\x00"
    assert length_prefixed("ab", b"c") == b"\x00\x00\x00\x02ab\x00\x00\x00\x01c"


def test_parts_concatenate_and_never_collide() -> None:
    # A prefix encoded once and a part appended later equal the parts encoded together.
    assert length_prefixed("a", "b") + length_prefixed("cd") == length_prefixed("a", "b", "cd")
    assert length_prefixed("ab", "c") != length_prefixed("a", "bc")
