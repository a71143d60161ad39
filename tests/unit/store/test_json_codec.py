"""JSON columns' codec (store.json_codec): orjson's output read back as the standard library's
would be, and the standard library's behaviour where orjson refuses a value."""

from __future__ import annotations

import json
import math

from openprofiles.store import json_codec


def test_round_trip_matches_the_standard_library() -> None:
    value = {"Name": "Zoë", "levels": [(1, 2.5, None, True)], 3: "int key", "nested": {"a": []}}
    assert json_codec.loads(json_codec.dumps(value)) == json.loads(json.dumps(value))


def test_integers_beyond_64_bits_fall_back_to_the_standard_library() -> None:
    big = {"n": 2**70}
    assert json_codec.loads(json_codec.dumps(big)) == big


def test_rows_written_with_nan_still_read() -> None:
    # json.dumps writes NaN (not JSON, refused by orjson); such rows predate this codec.
    read = json_codec.loads(json.dumps({"score": float("nan")}))
    assert math.isnan(read["score"])
