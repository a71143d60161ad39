"""Opaque, tamper-evident NextToken values.

A token carries the state a list operation needs to resume (e.g. the last key returned). The
state is sealed with AES-256-GCM under a key derived from the server secret, with the scope
(operation + domain + anything else that must match) as associated data. Sealing rather than
only signing keeps the state confidential: tokens travel in query strings (`next-token`) and
end up in access logs, and resume state such as a search key value can be personal data.
GCM's tag makes the token tamper-evident and bound to its scope, like an HMAC would.

Two plaintext forms, told apart by the token's first character:

* "1": the envelope `{"s": state, "t": time}` as JSON. Every token is written so when it fits.
* "2": for a state of strings only (`{"after": uri}`) that does not fit as JSON: the time, then
  each key and value as its length and its code points, 21 bits each (every code point fits in
  21 bits). JSON escapes a character outside ASCII as `\\uXXXX`, 6 bytes (12 outside the Basic
  Multilingual Plane), and a control character too; 21 bits is under 3 bytes whatever the
  character. The model lets ListIntegrations' last Uri, its cursor, be 255 characters of
  any kind: as JSON that does not fit in a NextToken of 1,024 characters, packed it always
  does (`MAX_PACKED_UNITS`). The cursor stays the Uri itself, so a page resumes exactly after
  it (`uri > after`) as before, in the same order, whatever was put or deleted meanwhile.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import struct
import time
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from openprofiles.errors import BadRequest

MAX_TOKEN_LENGTH = 1024  # the model's max for NextToken
_VERSION = "1"
_PACKED_VERSION = "2"
_INVALID = "The NextToken is invalid or has expired."
# What AES-GCM adds to a plaintext: the nonce and the tag.
_SEAL_OVERHEAD = 12 + 16
# The longest plaintext a token can carry: the token is the version character and the sealed
# bytes in unpadded base64, 4 characters per 3 bytes.
MAX_PLAINTEXT_BYTES = (MAX_TOKEN_LENGTH - 1) * 6 // 8 - _SEAL_OVERHEAD
_PACKED_TIME = struct.Struct(">q")
_UNIT_BITS = 21  # the code points of Unicode are below 2**21
# How many 21-bit units a packed state may have: one per key and value (its length) plus one
# per code point of each. A state of strings of at most this many units always fits
# (ListIntegrations' worst: {"after": 255 characters} is 1 + 5 + 1 + 255 = 262).
MAX_PACKED_UNITS = (MAX_PLAINTEXT_BYTES - _PACKED_TIME.size) * 8 // _UNIT_BITS


class TokenTooLarge(ValueError):
    """The state does not fit in a NextToken of MAX_TOKEN_LENGTH characters in either form."""


class TokenCodec:
    """Encode and decode NextToken values bound to a scope, optionally with an age limit."""

    def __init__(
        self,
        secret: bytes,
        *,
        max_age_seconds: int | None = 24 * 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the NextToken secret must be at least 16 bytes")
        # A dedicated key derived from the server secret, so the secret itself is never used
        # directly as a cipher key and other uses of it stay independent.
        key = hmac.new(secret, b"openprofiles/next-token/v1", hashlib.sha256).digest()
        self._aead = AESGCM(key)
        self._max_age = max_age_seconds
        self._clock = clock

    def encode(self, scope: str, state: dict[str, Any]) -> str:
        """A token of `state`: as JSON when that fits, else packed when the state is strings
        only (module docstring); TokenTooLarge when neither fits."""
        now = int(self._clock())
        plain = json.dumps({"s": state, "t": now}, separators=(",", ":"), sort_keys=True).encode()
        if len(plain) <= MAX_PLAINTEXT_BYTES:
            return self._seal(_VERSION, scope, plain)
        packed = _pack_strings(state)
        if packed is not None and _PACKED_TIME.size + len(packed) <= MAX_PLAINTEXT_BYTES:
            return self._seal(_PACKED_VERSION, scope, _PACKED_TIME.pack(now) + packed)
        raise TokenTooLarge(
            f"NextToken state too large ({len(plain)} bytes as JSON > {MAX_PLAINTEXT_BYTES})"
        )

    def _seal(self, version: str, scope: str, plain: bytes) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plain, _aad(scope, version))
        token = version + base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode()
        if len(token) > MAX_TOKEN_LENGTH:  # not reached: MAX_PLAINTEXT_BYTES is that limit
            raise TokenTooLarge(f"NextToken too long ({len(token)} > {MAX_TOKEN_LENGTH})")
        return token

    def decode(self, scope: str, token: str) -> dict[str, Any]:
        version = token[:1]
        if version not in (_VERSION, _PACKED_VERSION) or len(token) > MAX_TOKEN_LENGTH:
            raise BadRequest(_INVALID)
        text = token[1:]
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (ValueError, binascii.Error):
            raise BadRequest(_INVALID) from None
        # Only the canonical encoding is accepted: otherwise the unused low bits of the last
        # character could be changed without changing the bytes.
        if len(raw) < 12 + 16 or base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != text:
            raise BadRequest(_INVALID)
        try:
            plain = self._aead.decrypt(raw[:12], raw[12:], _aad(scope, version))
        except InvalidTag:
            raise BadRequest(_INVALID) from None
        # The plaintext is this server's own (GCM's tag checked): its form is not questioned.
        if version == _PACKED_VERSION:
            (issued,) = _PACKED_TIME.unpack_from(plain)
            state: dict[str, Any] = _unpack_strings(plain[_PACKED_TIME.size :])
        else:
            envelope = json.loads(plain)
            issued, state = envelope["t"], envelope["s"]
        if self._max_age is not None and self._clock() - issued > self._max_age:
            raise BadRequest(_INVALID)
        return state


def token_scope(operation: str, *query: Any) -> str:
    """The scope of a NextToken of `operation` listing what `query` selects (the domain, and the
    search values or match type that pick the items): a token then only resumes the listing it
    came from, and any other answers BadRequest. Hashed because the query may be long, and a
    JSON list because its parts must not run into one another ("a/b" + "c" vs "a" + "b/c")."""
    digest = hashlib.sha256(json.dumps(list(query)).encode()).hexdigest()
    return f"{operation}:{digest}"


def _aad(scope: str, version: str) -> bytes:
    # The first form's associated data is as it always was (tokens issued before the second
    # form still open); the second's names its form, so that a token's version character
    # cannot be changed to have its plaintext read in the other form.
    label = b"openprofiles/next-token" if version == _VERSION else b"openprofiles/next-token/2"
    return label + b"\x00" + scope.encode()


def _pack_strings(state: dict[str, Any]) -> bytes | None:
    """The keys and values of a state of strings as 21-bit units, each string its length then
    its code points, zero bits after the last to a whole byte; None when a value is not a
    string or the state has more than MAX_PACKED_UNITS units."""
    units: list[int] = []
    for key, value in sorted(state.items()):
        if not isinstance(value, str):
            return None
        for text in (key, value):
            units.append(len(text))
            units.extend(map(ord, text))
    if len(units) > MAX_PACKED_UNITS:
        return None
    number = 0
    for unit in units:
        number = number << _UNIT_BITS | unit
    bits = len(units) * _UNIT_BITS
    padding = -bits % 8
    return (number << padding).to_bytes((bits + padding) // 8, "big")


def _unpack_strings(packed: bytes) -> dict[str, str]:
    """The state `_pack_strings` packed. The padding is under 8 bits, so under a unit: the
    count of units is the whole units the bytes hold."""
    count = len(packed) * 8 // _UNIT_BITS
    number = int.from_bytes(packed, "big") >> (len(packed) * 8 - count * _UNIT_BITS)
    mask = (1 << _UNIT_BITS) - 1
    units = [number >> (_UNIT_BITS * (count - 1 - i)) & mask for i in range(count)]
    texts: list[str] = []
    at = 0
    while at < len(units):
        length = units[at]
        texts.append("".join(map(chr, units[at + 1 : at + 1 + length])))
        at += 1 + length
    return dict(zip(texts[::2], texts[1::2], strict=True))
