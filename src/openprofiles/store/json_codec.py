"""How JSON columns (domain configuration, jobs, match group pages, ...) are encoded and decoded:
with orjson, which does it several times faster than the standard library — storing a matching
job's groups spent half its time in `json.dumps` — and the standard library as the fallback for
what orjson refuses (integers beyond 64 bits; `NaN` in rows written before)."""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> str:
    try:
        # Non-string keys become strings, as json.dumps makes them.
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(value)


def loads(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
