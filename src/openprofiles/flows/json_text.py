"""Cutting a text of records into records: one JSON value (an array gives its elements), or JSON
lines (one value per line). A text that is neither is refused as a whole (`NotJsonText`), with
the parser's message and position, rather than cut into meaningless per-line fragments.

Which of the two a text that does not parse as a whole is meant to be: JSON lines when at least
half of its non-empty lines parse on their own — then a bad line fails alone and the others are
records. A JSON document broken somewhere never comes near that: its lines open or close values
(`[`, `{`, `"id": 1,`, `},`), and at most the last element of an array stands alone on its line.

Flows use it; contacts.records.split_body does the same for contact-record bodies, and could
share it.
"""

from __future__ import annotations

import json


class NotJsonText(ValueError):
    """The text is neither one JSON value nor JSON lines; `message` says where parsing it as one
    JSON value stopped, and why (the parser's message, line and column)."""

    def __init__(self, error: json.JSONDecodeError) -> None:
        self.message = f"{error.msg} at line {error.lineno} column {error.colno}"
        super().__init__(self.message)


def split_json_text(text: str) -> list[str]:
    """The raw JSON text of every record of `text`, in order: the elements of a JSON array, a
    JSON value that is not an array, or the non-empty lines of JSON lines (a line that is not
    JSON is still returned: it is that record's to fail). NotJsonText when it is none of these.
    """
    try:
        whole = json.loads(text)
    except json.JSONDecodeError as exc:
        error = exc
    else:
        if isinstance(whole, list):
            return [json.dumps(item, ensure_ascii=False) for item in whole]
        return [text.strip()]
    # Lines end at "\n" only: str.splitlines would also cut at U+2028 and other characters that
    # JSON strings may hold as they are.
    lines = [stripped for line in text.split("\n") if (stripped := line.strip())]
    needed = (len(lines) + 1) // 2
    parsed = failed = 0
    # Only as many lines as the decision takes are parsed: each record is parsed again when it
    # is applied.
    for line in lines:
        if parsed >= needed or failed > len(lines) - needed:
            break
        try:
            json.loads(line)
        except ValueError:
            failed += 1
        else:
            parsed += 1
    if parsed >= needed:
        return lines
    raise NotJsonText(error)
