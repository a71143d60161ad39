"""NextToken codec: round trip, tamper evidence, scope binding, expiry, size."""

from __future__ import annotations

import re

import pytest

from openprofiles.errors import BadRequest
from openprofiles.wire.pagination import MAX_TOKEN_LENGTH, TokenCodec

SECRET = b"0123456789abcdef0123456789abcdef"
INVALID = "The NextToken is invalid or has expired."


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_round_trip_is_opaque_and_url_safe() -> None:
    codec = TokenCodec(SECRET)
    state = {"after": "jane@example.com", "n": 3}
    token = codec.encode("ListProfileObjects/d", state)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert "jane" not in token and len(token) <= MAX_TOKEN_LENGTH
    assert codec.decode("ListProfileObjects/d", token) == state


@pytest.mark.parametrize("position", [1, 5, 20, -1])
def test_tampered_token_is_rejected(position: int) -> None:
    codec = TokenCodec(SECRET)
    token = codec.encode("s", {"k": 1})
    flipped = "A" if token[position] != "A" else "B"
    tampered = (
        token[:position] + flipped + token[position + 1 :]
        if position != -1
        else token[:-1] + flipped
    )
    with pytest.raises(BadRequest, match=re.escape(INVALID)):
        codec.decode("s", tampered)


@pytest.mark.parametrize("token", ["", "x", "1", "1!!!!", "2abc", "1" + "A" * 2000, "1AAAA"])
def test_malformed_token_is_rejected(token: str) -> None:
    with pytest.raises(BadRequest, match=re.escape(INVALID)):
        TokenCodec(SECRET).decode("s", token)


def test_other_scope_or_secret_is_rejected() -> None:
    token = TokenCodec(SECRET).encode("ListDomains", {"k": 1})
    with pytest.raises(BadRequest):
        TokenCodec(SECRET).decode("ListProfileObjects/d", token)
    with pytest.raises(BadRequest):
        TokenCodec(b"another secret of 32 bytes......").decode("ListDomains", token)


def test_expired_token_is_rejected() -> None:
    clock = Clock()
    codec = TokenCodec(SECRET, max_age_seconds=60, clock=clock)
    token = codec.encode("s", {})
    clock.now += 59
    assert codec.decode("s", token) == {}
    clock.now += 2
    with pytest.raises(BadRequest, match=re.escape(INVALID)):
        codec.decode("s", token)


def test_state_too_large_and_short_secret() -> None:
    with pytest.raises(ValueError):
        TokenCodec(SECRET).encode("s", {"k": "x" * 1000})
    with pytest.raises(ValueError):
        TokenCodec(b"short")
