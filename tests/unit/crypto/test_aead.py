"""AES-256-GCM sealing: round trip, and every kind of mismatch refused."""

from __future__ import annotations

import os

import pytest

from openprofiles.crypto import aead
from openprofiles.crypto.errors import DecryptionError

KEY = bytes(range(32))


def test_round_trip() -> None:
    blob = aead.seal(KEY, b"hello customer", b"context")
    assert aead.open_sealed(KEY, blob, b"context") == b"hello customer"


def test_blob_layout_is_version_nonce_ciphertext_tag() -> None:
    blob = aead.seal(KEY, b"12345", b"")
    assert blob[0] == aead.FORMAT_VERSION
    assert len(blob) == 1 + aead.NONCE_SIZE + 5 + aead.TAG_SIZE


def test_same_plaintext_seals_differently() -> None:
    assert aead.seal(KEY, b"same", b"") != aead.seal(KEY, b"same", b"")


def test_empty_plaintext() -> None:
    assert aead.open_sealed(KEY, aead.seal(KEY, b"", b"a"), b"a") == b""


@pytest.mark.parametrize("position", [0, 1, 13, -1])
def test_any_flipped_byte_is_refused(position: int) -> None:
    blob = bytearray(aead.seal(KEY, b"hello customer", b"context"))
    blob[position] ^= 0x01
    with pytest.raises(DecryptionError):
        aead.open_sealed(KEY, bytes(blob), b"context")


def test_truncated_blob_is_refused() -> None:
    blob = aead.seal(KEY, b"hello", b"")
    for cut in (0, 5, len(blob) - 1):
        with pytest.raises(DecryptionError):
            aead.open_sealed(KEY, blob[:cut], b"")


def test_wrong_aad_is_refused() -> None:
    blob = aead.seal(KEY, b"hello", b"row-1")
    with pytest.raises(DecryptionError):
        aead.open_sealed(KEY, blob, b"row-2")


def test_wrong_key_is_refused() -> None:
    blob = aead.seal(KEY, b"hello", b"")
    with pytest.raises(DecryptionError):
        aead.open_sealed(os.urandom(32), blob, b"")


def test_only_256_bit_keys() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        aead.seal(b"k" * 16, b"x", b"")
