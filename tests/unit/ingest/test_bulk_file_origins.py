"""`openprofiles ingest FILE` says where each dead letter came from, and reads awkward files
clearly: the file's base name and line (JSON lines) or array index, as the letter's origin in
`dlq list`/`show` (text and --json), kept by a `dlq retry` that fails again; a pretty-printed
object is one record; a line too long for any object is neither held nor kept; a file that
cannot be loaded is one line, and an empty one says so."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from openprofiles.cli import main
from openprofiles.ingest.bulk import MAX_LINE_BYTES, places
from openprofiles.json_text import split_json_text

from .test_bulk_cli import setup


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def listed(common: list[str]) -> list[dict[str, Any]]:
    result = run("dlq", "list", *common, "--json")
    assert result.exit_code == 0, result.output
    letters: list[dict[str, Any]] = json.loads(result.output)
    return letters


def test_dead_letters_name_their_file_and_line_and_keep_it_through_a_retry(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    common = setup(tmp_path)
    folder = tmp_path / "exports" / "2026-11"
    folder.mkdir(parents=True)
    lines = folder / "customers.jsonl"
    # Line 3 is blank: lines are numbered as an editor numbers them.
    lines.write_text(
        '{"id": "1", "email": "a@x.com"}\nnot json\n\n{"id": "2", "email": "b@x.com"}\n[1]\n'
    )
    array = folder / "closed.json"
    array.write_text(json.dumps([{"id": "3", "email": "c@x.com"}, "x"], indent=2))

    first = run("ingest", str(lines), *common, "--object-type", "Crm", "--json")
    second = run("ingest", str(array), *common, "--object-type", "Closed", "--json")
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert json.loads(first.output)["DeadLettered"] == 2
    assert json.loads(second.output)["DeadLettered"] == 2

    letters = listed(common)
    origins = [x["Origin"] for x in letters]
    assert origins == [
        "File customers.jsonl, line 2",
        "File customers.jsonl, line 5",
        "File closed.json, array index 0",
        "File closed.json, array index 1",
    ]
    # The base name only: the operator's folders are not named.
    assert not any("exports" in x["Reason"] for x in letters)
    assert all(x["Reason"].startswith(x["Origin"] + ": ") for x in letters)

    text = run("dlq", "list", *common)
    assert "File customers.jsonl, line 2: " in text.output
    shown = run("dlq", "show", letters[2]["MessageId"], *common)
    assert "Origin:         File closed.json, array index 0" in shown.output
    shown_json = json.loads(run("dlq", "show", letters[2]["MessageId"], *common, "--json").output)
    assert shown_json["Origin"] == "File closed.json, array index 0"

    retried = run("dlq", "retry", *common, "--json")
    assert json.loads(retried.output)["Failed"] == [x["MessageId"] for x in letters]
    again = listed(common)
    assert [x["Origin"] for x in again] == origins
    assert [x["Attempts"] for x in again] == [2] * 4
    # Named once, first, however often it is retried.
    assert [x["Reason"] for x in again] == [x["Reason"] for x in letters]
    # Sealed with the letter, and never logged.
    assert "customers.jsonl" not in caplog.text and "closed.json" not in caplog.text
    stored = b"".join(f.read_bytes() for f in (tmp_path / "data").iterdir() if f.is_file())
    assert b"customers.jsonl" not in stored and b"closed.json" not in stored


def test_a_pretty_printed_object_is_one_record(tmp_path: Path) -> None:
    """It was read as JSON lines: four fragments, each dead-lettered."""
    common = setup(tmp_path)
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"id": "9", "email": "p@x.com"}, indent=2))
    result = run("ingest", str(path), *common, "--object-type", "Crm", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert (summary["Read"], summary["Ingested"], summary["DeadLettered"]) == (1, 1, 0)


def test_a_file_that_is_not_records_is_one_line_and_loads_nothing(tmp_path: Path) -> None:
    common = setup(tmp_path)
    truncated = tmp_path / "truncated.json"
    truncated.write_text('{\n  "id": "9",\n  "email": ')
    result = run("ingest", str(truncated), *common, "--object-type", "Crm")
    assert result.exit_code == 1
    assert result.output.startswith(
        f"Error: {truncated} is neither JSON lines, a JSON array nor one JSON object: "
    )
    assert result.output.rstrip().endswith("Nothing was loaded.")
    assert len(result.output.strip().splitlines()) == 1
    assert listed(common) == []

    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    result = run("ingest", str(empty), *common, "--object-type", "Crm")
    assert result.exit_code == 0
    assert result.output == f"{empty} holds no records: nothing was loaded.\n"


def test_a_line_too_long_for_any_object_is_not_kept(tmp_path: Path) -> None:
    """It was read whole into memory (1.5 GB for a 200 MB line) and kept whole in its dead
    letter, which no retry could ingest."""
    common = setup(tmp_path)
    path = tmp_path / "huge.jsonl"
    huge = json.dumps({"id": "h", "blob": "x" * MAX_LINE_BYTES})
    path.write_text(
        f'{{"id": "1", "email": "a@x.com"}}\n{huge}\n{{"id": "2", "email": "b@x.com"}}\n'
    )
    result = run("ingest", str(path), *common, "--object-type", "Crm", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert (summary["Read"], summary["Ingested"], summary["DeadLettered"]) == (3, 2, 1)
    [letter] = listed(common)
    assert letter["Origin"] == "File huge.jsonl, line 2"
    assert f"The line is {len(huge)} bytes long" in letter["Reason"]
    shown = json.loads(run("dlq", "show", letter["MessageId"], *common, "--json").output)
    assert shown["Object"] == ""
    assert "a retry cannot ingest it" in shown["NotRetryable"]
    retried = json.loads(run("dlq", "retry", *common, "--json").output)
    assert list(retried["NotRetried"]) == [letter["MessageId"]]


def test_places_tell_json_lines_from_an_array_and_from_one_record() -> None:
    """`places` reads where json_text cut each record from what it cut: a one-line array, an
    array of one element a line, a pretty-printed object and JSON lines with blank lines."""
    cases = {
        '[{"a": 1}, {"b": 2}]': ["array index 0", "array index 1"],
        '[\n{"a": 1},\n{"b": 2}\n]\n': ["array index 0", "array index 1"],
        ' [{"a": 1}]': ["array index 0"],
        '{\n  "a": 1\n}\n': [None],
        '\n{"a": 1}\n': ["line 2"],
        '{"a": 1}\n\n\nnot json\n{"b": 2}': ["line 1", "line 4", "line 5"],
    }
    for text, expected in cases.items():
        assert places(text, split_json_text(text)) == expected, text


def test_an_array_too_large_to_read_at_once_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An array can only be parsed whole, and was, whatever its size: a multi-GB export ran
    out of memory before anything was loaded."""
    from openprofiles.ingest import bulk

    monkeypatch.setattr(bulk, "MAX_DOCUMENT_BYTES", 1024)
    common = setup(tmp_path)
    array = tmp_path / "big.json"
    array.write_text(json.dumps([{"id": str(n), "email": f"c{n}@x.com"} for n in range(40)]))
    result = run("ingest", str(array), *common, "--object-type", "Crm")
    assert result.exit_code == 1
    assert f"{array} is a JSON array of {array.stat().st_size} bytes, more than the 1024" in (
        result.output
    )
    assert "export it as JSON lines" in result.output and "Nothing was loaded." in result.output
    # The same records as JSON lines load.
    lines = tmp_path / "big.jsonl"
    lines.write_text("".join(json.dumps(r) + "\n" for r in json.loads(array.read_text())))
    assert run("ingest", str(lines), *common, "--object-type", "Crm").exit_code == 0
