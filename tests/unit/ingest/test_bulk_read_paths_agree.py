"""The two ways `openprofiles ingest` reads a file (JSON lines a line at a time, or a document
read whole) agree on what a record is: a first line too long for any object streams as JSON
lines (not kept, as any other such line), and a blank line is blank on both."""

from __future__ import annotations

import json
from pathlib import Path

from openprofiles.ingest.bulk import MAX_LINE_BYTES, read_records
from openprofiles.json_text import split_json_text


def test_a_first_line_too_long_for_any_object_is_not_kept(tmp_path: Path) -> None:
    """It sent the file down the document path, which kept the whole line (megabytes) in its
    dead letter as a retryable record."""
    huge = json.dumps({"id": "h", "blob": "x" * MAX_LINE_BYTES})
    path = tmp_path / "huge-first.jsonl"
    path.write_text(huge + "\n" + json.dumps({"id": "ok"}) + "\n")
    total, records = read_records(path)
    first, second = list(records)
    assert total == 2
    assert first.text == ""
    assert first.dropped == len(huge.encode())
    assert first.origin == "File huge-first.jsonl, line 1"
    assert json.loads(second.text) == {"id": "ok"}
    assert second.origin == "File huge-first.jsonl, line 2"


def test_a_line_of_no_break_spaces_is_blank_on_both_paths(tmp_path: Path) -> None:
    text = '{"id": "a"}\n\u00a0\u00a0\n\x1c\n{"id": "b"}\n'
    # Read whole (the document path): the blank lines are skipped.
    assert split_json_text(text) == ['{"id": "a"}', '{"id": "b"}']
    path = tmp_path / "nbsp.jsonl"
    path.write_text(text, encoding="utf-8")
    total, records = read_records(path)  # its first line is an object: JSON lines
    assert total == 2
    assert [(r.text, r.origin) for r in records] == [
        ('{"id": "a"}', "File nbsp.jsonl, line 1"),
        ('{"id": "b"}', "File nbsp.jsonl, line 4"),
    ]
