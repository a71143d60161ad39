"""Unambiguous byte encodings shared by the crypto modules.

Anything fed to a MAC, a KDF or used as associated data must encode its parts so that no two
different tuples produce the same bytes; plain concatenation would make ("ab", "c") equal to
("a", "bc").
"""

from __future__ import annotations

import json
from collections.abc import Mapping


def length_prefixed(*parts: str | bytes) -> bytes:
    """Each part as a 4-byte big-endian length followed by its bytes (text as UTF-8)."""
    if len(parts) == 1:
        # The hot case (a record id appended to a cached prefix, a value for a blind index):
        # called for every sealed record and digest, so without the general loop.
        data = parts[0].encode("utf-8") if isinstance(parts[0], str) else parts[0]
        return len(data).to_bytes(4, "big") + data
    out = []
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        out.append(len(data).to_bytes(4, "big"))
        out.append(data)
    return b"".join(out)


def canonical_context(context: Mapping[str, str]) -> bytes:
    """An encryption context as canonical JSON (sorted keys, no spaces), so equal contexts give
    equal bytes whatever order the caller built them in."""
    return json.dumps(
        dict(context), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")
