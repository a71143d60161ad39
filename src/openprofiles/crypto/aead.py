"""Authenticated encryption of byte strings: AES-256-GCM with a versioned blob format.

Blob layout: 1 byte format version | 12 byte random nonce | ciphertext || 16 byte tag.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from openprofiles.crypto.errors import DecryptionError

FORMAT_VERSION = 1
KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
_HEADER = bytes([FORMAT_VERSION])


def _check_key(key: bytes) -> None:
    # AESGCM would also accept 16- and 24-byte keys; we promise AES-256 everywhere.
    if len(key) != KEY_SIZE:
        raise ValueError(f"an AES-256-GCM key is {KEY_SIZE} bytes, not {len(key)}")


class Sealer:
    """AES-256-GCM under one key, its cipher object built once: building it costs about as
    much as sealing a small record, and a domain's key seals thousands of them."""

    def __init__(self, key: bytes) -> None:
        _check_key(key)
        self._aesgcm = AESGCM(key)

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt and authenticate `plaintext`; `aad` is authenticated but not stored."""
        # A random 96-bit nonce is safe for well over 2**32 messages per key; each domain has
        # its own data key, so no single key gets near that bound.
        nonce = os.urandom(NONCE_SIZE)
        # The version byte is authenticated too, so a blob cannot be relabelled as another format.
        return _HEADER + nonce + self._aesgcm.encrypt(nonce, plaintext, _HEADER + aad)

    def open(self, blob: bytes, aad: bytes) -> bytes:
        """The plaintext of a blob made by `seal`, or DecryptionError if anything does not match."""
        if len(blob) < 1 + NONCE_SIZE + TAG_SIZE:
            raise DecryptionError("sealed blob is too short")
        if blob[:1] != _HEADER:
            raise DecryptionError(f"unknown sealed blob format version {blob[0]}")
        nonce = blob[1 : 1 + NONCE_SIZE]
        try:
            return self._aesgcm.decrypt(nonce, blob[1 + NONCE_SIZE :], _HEADER + aad)
        except InvalidTag:
            # Tamper, wrong key and wrong associated data are indistinguishable by design.
            raise DecryptionError(
                "sealed blob failed authentication (tampered, wrong key or wrong context)"
            ) from None

    def open_many(self, items: Iterable[tuple[bytes, bytes]]) -> list[bytes]:
        """The plaintexts of (blob, aad) pairs, as `open` gives them one by one: for many small
        blobs, where the call per blob is a good part of the cost."""
        decrypt = self._aesgcm.decrypt
        out = []
        try:
            for blob, aad in items:
                if len(blob) < 1 + NONCE_SIZE + TAG_SIZE or blob[:1] != _HEADER:
                    out.append(self.open(blob, aad))  # raises with open's message
                    continue
                out.append(decrypt(blob[1 : 1 + NONCE_SIZE], blob[1 + NONCE_SIZE :], _HEADER + aad))
        except InvalidTag:
            raise DecryptionError(
                "sealed blob failed authentication (tampered, wrong key or wrong context)"
            ) from None
        return out


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt and authenticate `plaintext` under `key` (see `Sealer.seal`)."""
    return Sealer(key).seal(plaintext, aad)


def open_sealed(key: bytes, blob: bytes, aad: bytes) -> bytes:
    """The plaintext of a blob made by `seal` (see `Sealer.open`)."""
    return Sealer(key).open(blob, aad)
