"""JSON columns' codec (json_codec): orjson's output read back as the standard library's
would be, and the standard library's behaviour where orjson refuses a value."""

from __future__ import annotations

import json
import math

import pytest

from openprofiles import json_codec


def test_round_trip_matches_the_standard_library() -> None:
    value = {"Name": "Zoë", "levels": [(1, 2.5, None, True)], 3: "int key", "nested": {"a": []}}
    assert json_codec.loads(json_codec.dumps(value)) == json.loads(json.dumps(value))


@pytest.mark.parametrize(
    "number",
    [
        2**70 + 1,  # not a float's value: read as a float, it would come back changed
        2**64,  # one beyond orjson's unsigned range
        -(2**63) - 1,  # one below its signed range: 19 digits
        10**30 + 7,
    ],
)
def test_integers_beyond_64_bits_are_read_exactly(number: int) -> None:
    value = {"n": number, "in": [number]}
    read = json_codec.loads(json_codec.dumps(value))
    assert read == value
    assert type(read["n"]) is int
    # Bytes, as a driver may hand a JSON column over.
    assert json_codec.loads(json_codec.dumps(value).encode()) == value


def test_64_bit_integers_and_long_digit_strings_still_read() -> None:
    value = {"max": 2**64 - 1, "min": -(2**63), "account": "12345678901234567890123"}
    assert json_codec.loads(json_codec.dumps(value)) == value


def test_rows_written_with_nan_still_read() -> None:
    # json.dumps writes NaN (not JSON, refused by orjson); such rows predate this codec.
    read = json_codec.loads(json.dumps({"score": float("nan")}))
    assert math.isnan(read["score"])
