"""A large JSON-lines export whose first line is too long to read fails that line alone, as the
same line second does — on SQLite and PostgreSQL.

An item larger than MAX_DOCUMENT_BYTES is read as JSON lines once a line among its first ones is
a JSON object on its own (flows.items `_check_json_lines`). A first line longer than
MAX_DOCUMENT_BYTES has no line end in what is looked at, so no line was judged, and the whole
export was refused as "not JSON lines": every good record in one dead letter with no content.
Now a first line that starts as a record (`{`) counts: it fails alone (too long), and the rest is
read. A large JSON array, on one line or many, is still refused whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.context import Services
from openprofiles.flows import items
from openprofiles.flows.service import run_flow

from .test_flows_failed_items import TYPE, counts, ingested, jsonl, letters, user
from .test_flows_templates import D, flow_definition, put_flow

LIMIT = 2048


@pytest.fixture(autouse=True)
def small_documents(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(items, "MAX_DOCUMENT_BYTES", LIMIT)
    monkeypatch.setattr(items, "CHUNK_BYTES", 256)


def test_a_first_line_too_long_fails_alone_as_a_second_one_does(
    services: Services, tmp_path: Path
) -> None:
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    long_first = jsonl(user(0, notes="x" * 3000))
    (folder / "a.jsonl").write_text(long_first + jsonl(*[user(n) for n in range(1, 40)]))
    long_second = jsonl(user(101, notes="x" * 3000))
    (folder / "b.jsonl").write_text(
        jsonl(user(100)) + long_second + jsonl(*[user(n) for n in range(102, 140)])
    )
    # Blank lines before it change nothing.
    (folder / "c.jsonl").write_text(
        "\n \n" + long_first + jsonl(*[user(n) for n in range(200, 239)])
    )
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder)))

    run = run_flow(services, domain_name=D, flow_name="crm")

    assert counts(run) == ("COMPLETED", 3, 120, 117, 3)
    assert ingested(services, *range(1, 40)) == list(range(1, 40))
    assert ingested(services, *range(102, 140)) == list(range(102, 140))
    assert ingested(services, *range(200, 239)) == list(range(200, 239))
    a, b, c = letters(services)
    assert (a.origin, b.origin, c.origin) == (
        "Flow crm, a.jsonl, line 1",
        "Flow crm, b.jsonl, line 2",
        "Flow crm, c.jsonl, line 3",
    )
    assert a.reason.endswith(
        f"Line 1 of the file {folder / 'a.jsonl'} is {len(long_first) - 1} bytes long, more "
        f"than the {LIMIT} bytes a flow reads of one record; it was not read."
    )
    assert f"is {len(long_second) - 1} bytes long" in b.reason


def test_a_large_json_array_on_one_line_is_still_refused_whole(
    services: Services, tmp_path: Path
) -> None:
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps([user(n) for n in range(40)]) + "\n")
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder)))

    run = run_flow(services, domain_name=D, flow_name="crm")

    assert counts(run) == ("COMPLETED", 1, 1, 0, 1)
    [letter] = letters(services)
    assert letter.origin == "Flow crm, a.json"
    assert "is not JSON lines (a JSON array" in letter.reason


def test_one_json_document_on_one_long_line_fails_whole_saying_what_to_do(
    services: Services, tmp_path: Path
) -> None:
    """A minified export (`{"Records": [...]}` on one line) larger than a document may be starts
    with `{` as a JSON-lines record does; with no line after it, it is too large a document,
    and its dead letter says so and what to do, not that its line 1 is too long a record."""
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    document = json.dumps({"Records": [user(n) for n in range(40)]})
    (folder / "a.json").write_text(document)
    # With a line end, and blank lines, after it: still the one document.
    (folder / "b.json").write_text(document + "\n \n")
    # A record after it: JSON lines whose first line is too long, failing alone (as above).
    (folder / "c.jsonl").write_text(document + "\n" + jsonl(user(100)))
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder)))

    run = run_flow(services, domain_name=D, flow_name="crm")

    assert counts(run) == ("COMPLETED", 3, 4, 1, 3)
    assert ingested(services, 0, 1, 100) == [100]
    a, b, c = letters(services)
    assert (a.origin, b.origin, c.origin) == (
        "Flow crm, a.json",
        "Flow crm, b.json",
        "Flow crm, c.jsonl, line 1",
    )
    for letter, name in ((a, "a.json"), (b, "b.json")):
        assert letter.reason.endswith(
            f"The file {folder / name} is larger than {LIMIT} bytes, the most a flow reads as "
            f"one JSON document, and is not JSON lines (all of it is one line, {len(document)} "
            "bytes long). Nothing of it was ingested; export it as JSON lines (one record per "
            f"line), or in parts of at most {LIMIT} bytes."
        )
    assert f"Line 1 of the file {folder / 'c.jsonl'} is {len(document)} bytes long" in c.reason
    # Checkpointed as failed items: an incremental run asked for reads them again, and only
    # them (c.jsonl was read, its long line dead-lettered).
    run = run_flow(services, domain_name=D, flow_name="crm", complete=False)
    assert counts(run) == ("COMPLETED", 2, 2, 0, 2)
