"""`openprofiles ingest contact-records FILE` reads its file as `openprofiles ingest FILE` does
(ingest.bulk.read_records): JSON lines a batch at a time, so a file far larger than memory
loads; a line too long to be a record is rejected without being read into memory, where it is
named by its line; and each record is checked as a body's are (a record nested deeper than
PutProfileObject takes is rejected with its ContactId, the rest loaded)."""

from __future__ import annotations

import codecs
import json
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from tests.support.contact_loader import D, found, loaded_data_dir
from tests.unit.integrations.integ_helpers import ctr

from openprofiles.app import build_services
from openprofiles.cli import main
from openprofiles.contacts import http
from openprofiles.contacts.kept import list_unrouted
from openprofiles.contacts.models import BatchOutcome
from openprofiles.context import Services
from openprofiles.dlq.service import list_messages
from openprofiles.ingest import MAX_OBJECT_CHARS
from openprofiles.json_text import MAX_JSON_DEPTH
from openprofiles.settings import Settings


@pytest.fixture
def loaded(settings: Settings) -> Iterator[tuple[Services, list[str]]]:
    with loaded_data_dir(settings) as made:
        yield made


def load(options: list[str], file: Path, *more: str) -> dict[str, Any]:
    result = CliRunner().invoke(
        main, ["ingest", "contact-records", *options, str(file), "--json", *more]
    )
    assert result.exit_code == 0, result.output
    summary: dict[str, Any] = json.loads(result.output.strip().splitlines()[-1])
    return summary


def test_a_large_file_is_loaded_without_being_held_in_memory(
    sqlite_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 37 MB file peaked at 453 MB resident: the loader read the whole file, then parsed all
    of it, before storing anything, so an export of several GB was killed before loading a
    record. Here the intake is replaced by a counter (what it does with a batch is not what is
    measured) and the Python heap's peak while the command reads a 24 MB file must stay under
    a quarter of the file: the file's text alone is the whole size."""
    services = build_services(sqlite_settings)
    services.database.dispose()
    options = ["--data-dir", str(sqlite_settings.data_dir)]
    taken: list[int] = []

    def counted(services: Services, items: list[Any], origins: Any = None) -> BatchOutcome:
        assert all(isinstance(parsed, dict) for _, parsed in items)
        taken.append(len(items))
        return BatchOutcome(accepted=len(items))

    monkeypatch.setattr(http, "process_batch", counted)
    # Large records (Amazon Connect allows a contact 32 KB of attributes), so that the file is
    # large without spending the test's time on parsing tens of thousands of records.
    note = "x" * 32_000
    line = json.dumps(ctr("big-0", Attributes={"note": note}))
    count = 24 * 1024 * 1024 // (len(line) + 1)
    file = tmp_path / "export.jsonl"
    with file.open("w") as out:
        for i in range(count):
            out.write(json.dumps(ctr(f"big-{i}", Attributes={"note": note})) + "\n")
    size = file.stat().st_size
    assert size > 20 * 1024 * 1024

    # Once before measuring: the modules the command imports, the database's creation.
    small = tmp_path / "small.jsonl"
    small.write_text(line + "\n")
    assert load(options, small)["Read"] == 1
    taken.clear()

    tracemalloc.start()
    try:
        summary = load(options, file, "--batch-size", "10")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (summary["Read"], summary["Accepted"]) == (count, count)
    assert sum(taken) == count and max(taken) == 10
    assert peak < size / 4, f"peak {peak} bytes reading a file of {size}"


def test_a_line_too_long_to_be_a_record_is_rejected_unread_and_the_rest_loaded(
    loaded: tuple[Services, list[str]], tmp_path: Path
) -> None:
    """A line longer than any record can be is not read into memory (ingest.bulk): it is a
    rejected record kept with its line, whose text was not kept, and the rest of the file is
    loaded."""
    services, options = loaded
    huge = json.dumps(ctr("huge", Attributes={"note": "y" * (4 * MAX_OBJECT_CHARS + 10)}))
    file = tmp_path / "long.jsonl"
    file.write_text(
        "\n".join([json.dumps(ctr("l-0")), huge, json.dumps(ctr("l-2"))]) + "\n", "utf-8"
    )
    summary = load(options, file)
    assert (summary["Read"], summary["Accepted"], summary["Rejected"]) == (3, 2, 1)
    assert [found(services, c) for c in ("l-0", "huge", "l-2")] == [1, 0, 1]
    with services.read() as tx:
        [kept] = list_unrouted(tx)
    assert kept.origin == "File long.jsonl, line 2"
    assert kept.object_json == ""
    assert f"The line is {len(huge.encode())} bytes long" in kept.reason


def test_a_record_nested_too_deeply_is_rejected_with_its_contact_id(
    loaded: tuple[Services, list[str]], tmp_path: Path
) -> None:
    """PutProfileObject refuses an object nested more than MAX_JSON_DEPTH deep; a contact
    record nested so in a file was stored. It is dead-lettered in its domain now, named by its
    line, whether or not its text has an escape (whose check recursed, and overflowed on a
    record nested some hundreds deep), and the rest of the file is loaded."""
    services, options = loaded
    deep = "[" * (MAX_JSON_DEPTH + 100) + "]" * (MAX_JSON_DEPTH + 100)
    deeper = "[" * 900 + "]" * 900
    records = [
        json.dumps(ctr("n-0")),
        json.dumps(ctr("n-1"))[:-1] + f', "deep": {deep}}}',
        json.dumps(ctr("n-2", Attributes={"note": "caf\u00e9"}))[:-1] + f', "deep": {deeper}}}',
        json.dumps(ctr("n-3")),
    ]
    assert "\\u00e9" in records[2]
    file = tmp_path / "deep.jsonl"
    file.write_text("\n".join(records) + "\n")
    summary = load(options, file, "--batch-size", "2")
    assert (summary["Read"], summary["Accepted"], summary["Rejected"]) == (4, 2, 2)
    assert [found(services, f"n-{i}") for i in range(4)] == [1, 0, 0, 1]
    with services.read() as tx:
        letters = list_messages(tx, domain_name=D)
    assert [json.loads(x.object_json)["ContactId"] for x in letters] == ["n-1", "n-2"]
    assert [x.origin for x in letters] == ["File deep.jsonl, line 2", "File deep.jsonl, line 3"]
    assert all(f"nested at most {MAX_JSON_DEPTH} levels deep" in x.reason for x in letters), letters


def test_arrays_and_pretty_records_are_read_whole_with_their_places(
    loaded: tuple[Services, list[str]], tmp_path: Path
) -> None:
    """What is not JSON lines is still read as a JSON document: a pretty-printed array (with a
    byte order mark) whose bad element is named by its index, and one pretty-printed record."""
    services, options = loaded
    records = [ctr("a-0"), ctr("a-1", Channel=["VOICE"]), ctr("a-2")]
    array = tmp_path / "records.json"
    array.write_bytes(codecs.BOM_UTF8 + json.dumps(records, indent=2).encode())
    summary = load(options, array)
    assert (summary["Read"], summary["Accepted"], summary["Rejected"]) == (3, 2, 1)
    single = tmp_path / "single.json"
    single.write_text(json.dumps(ctr("a-3"), indent=2))
    assert load(options, single)["Accepted"] == 1
    assert [found(services, f"a-{i}") for i in range(4)] == [1, 0, 1, 1]
    with services.read() as tx:
        [letter] = list_messages(tx, domain_name=D)
    assert letter.origin == "File records.json, array index 1"
