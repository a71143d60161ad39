"""Opaque, tamper-evident NextToken values.

A token carries the state a list operation needs to resume (e.g. the last key returned). The
state is sealed with AES-256-GCM under a key derived from the server secret, with the scope
(operation + domain + anything else that must match) as associated data. Sealing rather than
only signing keeps the state confidential: tokens travel in query strings (`next-token`) and
end up in access logs, and resume state such as a search key value can be personal data.
GCM's tag makes the token tamper-evident and bound to its scope, like an HMAC would.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import time
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from openprofiles.errors import BadRequest

MAX_TOKEN_LENGTH = 1024  # the model's max for NextToken
_VERSION = "1"
_INVALID = "The NextToken is invalid or has expired."


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
        plain = json.dumps(
            {"s": state, "t": int(self._clock())}, separators=(",", ":"), sort_keys=True
        ).encode()
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plain, _aad(scope))
        token = _VERSION + base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode()
        if len(token) > MAX_TOKEN_LENGTH:
            raise ValueError(f"NextToken state too large ({len(token)} > {MAX_TOKEN_LENGTH})")
        return token

    def decode(self, scope: str, token: str) -> dict[str, Any]:
        if not token.startswith(_VERSION) or len(token) > MAX_TOKEN_LENGTH:
            raise BadRequest(_INVALID)
        text = token[len(_VERSION) :]
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (ValueError, binascii.Error):
            raise BadRequest(_INVALID) from None
        # Only the canonical encoding is accepted: otherwise the unused low bits of the last
        # character could be changed without changing the bytes.
        if len(raw) < 12 + 16 or base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != text:
            raise BadRequest(_INVALID)
        try:
            plain = self._aead.decrypt(raw[:12], raw[12:], _aad(scope))
        except InvalidTag:
            raise BadRequest(_INVALID) from None
        envelope = json.loads(plain)
        if self._max_age is not None and self._clock() - envelope["t"] > self._max_age:
            raise BadRequest(_INVALID)
        state: dict[str, Any] = envelope["s"]
        return state


def token_scope(operation: str, *query: Any) -> str:
    """The scope of a NextToken of `operation` listing what `query` selects (the domain, and the
    search values or match type that pick the items): a token then only resumes the listing it
    came from, and any other answers BadRequest. Hashed because the query may be long, and a
    JSON list because its parts must not run into one another ("a/b" + "c" vs "a" + "b/c")."""
    digest = hashlib.sha256(json.dumps(list(query)).encode()).hexdigest()
    return f"{operation}:{digest}"


def _aad(scope: str) -> bytes:
    return b"openprofiles/next-token\x00" + scope.encode()
