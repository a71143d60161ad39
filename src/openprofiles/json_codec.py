"""How the JSON the store keeps is encoded and decoded: JSON columns (domain configuration, jobs,
match group pages, ...) and the plaintext of every sealed record (crypto.domain_keys). With
orjson, which does it several times faster than the standard library — storing a matching job's
groups spent half its time in `json.dumps`, and sealing a record's plaintext was a tenth of
ingesting it — and the standard library as the fallback for what orjson refuses (integers beyond
64 bits; `NaN` in rows written before) or would read differently.

orjson reads an integer outside its 64-bit range as a float, not as Python's exact integer:
`2**70 + 1` would come back `1.1805916207174113e+21`, changed without an error. Such an integer
has at least 19 digits in a row (-2**63 - 1 is the smallest beyond the range), so a text with
19 digits in a row anywhere (a long digit string inside a string value too, which costs only the
slower parse) is read by the standard library, which keeps integers exact."""

from __future__ import annotations

import json
from typing import Any

import orjson

# Every byte as "0" if a digit, else " ": a run of 19 digits is then a run of 19 "0"s, found by
# a substring search: 1.4 us for a 336-character contact record, against 9 us for the regular
# expression [0-9]{19}, whose search retries at every digit; it runs on every text read.
_DIGITS_AS_ZEROS = bytes(ord("0") if byte in b"0123456789" else ord(" ") for byte in range(256))
_LONG_DIGIT_RUN = b"0" * 19


def dumps(value: Any) -> str:
    try:
        # Non-string keys become strings, as json.dumps makes them.
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(value)


def dumps_bytes(value: Any) -> bytes:
    """`value` as compact UTF-8 JSON (a sealed record's plaintext), as `dumps` encodes it."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def loads(text: str | bytes) -> Any:
    if not may_hold_big_integer(text):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def may_hold_big_integer(text: str | bytes) -> bool:
    """Whether JSON `text` may hold an integer orjson would read inexactly (see above)."""
    if isinstance(text, str):
        # surrogatepass: a lone surrogate (not JSON, refused later) must not fail the check.
        text = text.encode("utf-8", "surrogatepass")
    return _LONG_DIGIT_RUN in text.translate(_DIGITS_AS_ZEROS)
