"""Blind-index digests: deterministic, keyed, and separated by key name and value boundaries."""

from __future__ import annotations

import pytest

from openprofiles.crypto.blind_index import DIGEST_SIZE, BlindIndex

KEY = b"i" * 32


def test_equal_inputs_give_equal_digests() -> None:
    a = BlindIndex(KEY).digest("_phone", "+14155550100")
    b = BlindIndex(KEY).digest("_phone", "+14155550100")
    assert a == b
    assert len(a) == DIGEST_SIZE == 16


def test_different_values_differ() -> None:
    index = BlindIndex(KEY)
    assert index.digest("_phone", "+14155550100") != index.digest("_phone", "+14155550101")


def test_key_name_separates_equal_values() -> None:
    index = BlindIndex(KEY)
    assert index.digest("_phone", "12345") != index.digest("_account", "12345")


def test_boundary_between_name_and_value_is_unambiguous() -> None:
    index = BlindIndex(KEY)
    assert index.digest("ab", "c") != index.digest("a", "bc")
    assert index.digest("", "abc") != index.digest("abc", "")


def test_different_keys_give_unrelated_digests() -> None:
    assert BlindIndex(KEY).digest("_email", "a@example.com") != BlindIndex(b"j" * 32).digest(
        "_email", "a@example.com"
    )


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError):
        BlindIndex(b"short")


def test_digest_is_the_documented_hmac() -> None:
    """Stored digests must stay findable: the digest is HMAC-SHA256 over the length-prefixed
    (label, key name, value), truncated, however it is computed (known answer, computed with
    the standard library from the definition)."""
    import hashlib
    import hmac

    key = bytes(range(32))
    index = BlindIndex(key)
    for key_name, value in [("_phone", "+12065550100"), ("_email", "a@b.c"), ("_phone", "")]:
        message = b"".join(
            len(part).to_bytes(4, "big") + part
            for part in (b"openprofiles/blind-index/v1", key_name.encode(), value.encode())
        )
        expected = hmac.new(key, message, hashlib.sha256).digest()[:DIGEST_SIZE]
        assert index.digest(key_name, value) == expected
        assert index.digest(key_name, value) == expected  # from the cached per-name state
