"""NextToken codec: every cursor the model allows fits in a token of the model's 1,024
characters, however its text is written (a Uri of 255 characters of any kind); a token too long
as JSON is packed, and a packed token is as opaque, scoped and short-lived as any."""

from __future__ import annotations

import re

import pytest

from openprofiles.errors import BadRequest
from openprofiles.wire.pagination import MAX_TOKEN_LENGTH, TokenCodec, TokenTooLarge

SECRET = b"0123456789abcdef0123456789abcdef"
INVALID = "The NextToken is invalid or has expired."
URI_MAX = 255  # PutIntegration's Uri: string1To255

# The longest cursor of each List operation whose cursor is text a caller chose, written with
# the characters that make its JSON longest.
WORST_STATES = {
    **{
        f"ListIntegrations {name}": {"after": char * URI_MAX}
        for name, char in [
            ("ASCII", "a"),
            ("2-byte", "é"),
            ("3-byte", "顧"),
            ("4-byte", "\U0001f600"),
            ("last code point", "\U0010ffff"),
            ("control", "\x01"),
            ("quote", '"'),
            ("lone surrogate", "\ud800"),
        ]
    },
    "ListIntegrations mixed": {"after": "\x01顧\U0001f600a" * (URI_MAX // 4)},
    # typeName: ^[a-zA-Z_][a-zA-Z_0-9-]*$, at most 255.
    "ListProfileObjectTypes": {"after": "o" * 255},
    # a domain name: ^[a-zA-Z0-9_-]+$, at most 64.
    "ListAccountIntegrations": {"after": "d" * 64},
}


@pytest.mark.parametrize("state", WORST_STATES.values(), ids=WORST_STATES.keys())
def test_the_longest_cursors_fit_and_round_trip(state: dict[str, str]) -> None:
    codec = TokenCodec(SECRET)
    token = codec.encode("ListIntegrations/d", state)
    assert len(token) <= MAX_TOKEN_LENGTH
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert codec.decode("ListIntegrations/d", token) == state


def test_a_token_that_fits_as_json_is_written_as_before() -> None:
    """Processes of an older version (one database, several processes) still read it."""
    assert TokenCodec(SECRET).encode("s", {"after": "é" * 100}).startswith("1")
    assert TokenCodec(SECRET).encode("s", {"after": "\U0001f600" * URI_MAX}).startswith("2")


def test_a_packed_token_is_scoped_tamper_evident_and_expires() -> None:
    now = [1_000_000.0]
    codec = TokenCodec(SECRET, max_age_seconds=60, clock=lambda: now[0])
    state = {"after": "\U0001f600" * URI_MAX}
    token = codec.encode("ListIntegrations/a", state)
    assert "\U0001f600" not in token
    with pytest.raises(BadRequest, match=re.escape(INVALID)):
        codec.decode("ListIntegrations/b", token)
    # Read as the other form, or changed anywhere, it is refused.
    for changed in ("1" + token[1:], token[:40] + ("A" if token[40] != "A" else "B") + token[41:]):
        with pytest.raises(BadRequest, match=re.escape(INVALID)):
            codec.decode("ListIntegrations/a", changed)
    now[0] += 59
    assert codec.decode("ListIntegrations/a", token) == state
    now[0] += 2
    with pytest.raises(BadRequest, match=re.escape(INVALID)):
        codec.decode("ListIntegrations/a", token)


def test_a_state_that_fits_in_neither_form_is_refused_as_too_large() -> None:
    # A ValueError, as before: the web pages drop what they cannot seal (ui.web.sealed_query).
    with pytest.raises(TokenTooLarge):
        TokenCodec(SECRET).encode("s", {"after": "\U0001f600" * 300})
    with pytest.raises(ValueError):
        TokenCodec(SECRET).encode("s", {"after": "\U0001f600" * 200, "n": 1})
