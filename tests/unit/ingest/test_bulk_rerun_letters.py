"""Reading a file again keeps one dead letter per rejected record.

A re-run of `openprofiles ingest FILE` is safe for the records (their UNIQUE keys replace
themselves), and operators re-run a load that was interrupted; every rejected line used to get
one more letter each time (an operator review: 78 letters for 60 bad lines after a crash and a
re-run). The same record from the same place now counts another attempt on its letter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from openprofiles.cli import main

from .test_bulk_cli import setup


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_a_file_loaded_three_times_keeps_one_letter_per_rejected_line(tmp_path: Path) -> None:
    common = setup(tmp_path)
    file = tmp_path / "customers.jsonl"
    # Lines 2 and 4 hold the same text: two records, two letters.
    file.write_text('{"id": "1", "email": "a@x.com"}\nnot json\n{"id": "2"}\nnot json\n')
    for _ in range(3):
        loaded = run("ingest", str(file), *common, "--object-type", "Crm", "--json")
        assert loaded.exit_code == 0, loaded.output
    letters = json.loads(run("dlq", "list", *common, "--json").output)
    assert sorted((x["Origin"], x["Attempts"]) for x in letters) == [
        ("File customers.jsonl, line 2", 3),
        ("File customers.jsonl, line 4", 3),
    ]
    # A changed line is another record: a letter of its own.
    file.write_text('{"id": "1", "email": "a@x.com"}\nstill not json\n')
    run("ingest", str(file), *common, "--object-type", "Crm")
    letters = json.loads(run("dlq", "list", *common, "--json").output)
    assert len(letters) == 3
