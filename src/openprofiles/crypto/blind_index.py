"""Blind-index digests: how searchable keys are stored without storing their values.

A profile key (phone, email, account number, ...) is stored as HMAC-SHA256 under a per-domain
index key of (key name, normalised value). The digest is deterministic, so looking a value up
means digesting the normalised search value and comparing digests; without the index key a copy
of the database cannot confirm a guess, even for low-entropy values like phone numbers.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from openprofiles.crypto.encoding import length_prefixed

# 128 bits: a collision between two different values becomes likely only around 2**64 stored
# digests (birthday bound), far beyond any profile store, and forging a match still needs the key.
# Half of SHA-256's 32 bytes keeps the index, which is the biggest table's key, small.
DIGEST_SIZE = 16

_LABEL = "openprofiles/blind-index/v1"
# Key names come from object type definitions; past this many, digests start from scratch.
_MAX_KEY_NAMES = 4096


class BlindIndex:
    def __init__(self, index_key: bytes) -> None:
        if len(index_key) < 32:
            raise ValueError("a blind-index key must be at least 32 bytes")
        # HMAC state after the key and the fixed part of the message, per key name: a digest
        # copies it and adds only the value (what hmac.new would redo for every value).
        self._keyed = hmac.new(index_key, digestmod=hashlib.sha256)
        self._by_key_name: dict[str, Any] = {}

    def digest(self, key_name: str, normalised_value: str) -> bytes:
        """The 16-byte digest of one (key name, normalised value) pair.

        The key name is part of the input so the same value under two key names (an account
        number that looks like a phone number) gives unrelated digests.
        """
        started = self._by_key_name.get(key_name)
        if started is None:
            started = self._keyed.copy()
            started.update(length_prefixed(_LABEL, key_name))
            if len(self._by_key_name) < _MAX_KEY_NAMES:
                self._by_key_name[key_name] = started
        mac = started.copy()
        # Equal to HMAC(key, length_prefixed(label, key name, value)): parts are concatenated.
        mac.update(length_prefixed(normalised_value))
        return mac.digest()[:DIGEST_SIZE]
