"""`openprofiles ingest` on a real data dir with click's CliRunner (JSON lines and JSON arrays,
re-runs, dead letters, the default `objects` subcommand) and `openprofiles dlq`."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from openprofiles.app import build_services
from openprofiles.cli import main
from openprofiles.settings import Settings

from .conftest import DOMAIN, crm_type, make_domain, put_type


def setup(tmp_path: Path) -> list[str]:
    services = build_services(Settings(data_dir=tmp_path / "data"))
    try:
        make_domain(services)
        put_type(services, "Crm", crm_type())
        put_type(services, "Closed", crm_type(AllowProfileCreation=False))
    finally:
        services.database.dispose()
    return ["--data-dir", str(tmp_path / "data"), "--domain", DOMAIN]


def test_ingest_json_lines_twice_is_idempotent(tmp_path: Path) -> None:
    common = setup(tmp_path)
    path = tmp_path / "customers.jsonl"
    lines = [json.dumps({"id": str(i), "email": f"c{i % 3}@x.com"}) for i in range(10)]
    path.write_text("\n".join([*lines, "", "not json"]) + "\n")
    runner = CliRunner()
    first = runner.invoke(
        main, ["ingest", str(path), *common, "--object-type", "Crm", "--json", "--batch-size", "4"]
    )
    assert first.exit_code == 0, first.output
    summary = json.loads(first.output)
    assert summary["Read"] == 11
    assert summary["Ingested"] == 10
    assert summary["CreatedProfiles"] == 3
    assert summary["DeadLettered"] == 1
    again = runner.invoke(
        main, ["ingest", "objects", str(path), *common, "--object-type", "Crm", "--json"]
    )
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["CreatedProfiles"] == 0
    listed = runner.invoke(main, ["dlq", "list", *common, "--json"])
    assert listed.exit_code == 0, listed.output
    # The line rejected twice has one letter, with two attempts.
    assert [(x["Category"], x["Attempts"]) for x in json.loads(listed.output)] == [
        ("invalid_value", 2)
    ]


def test_ingest_json_array_with_text_summary_and_dlq_commands(tmp_path: Path) -> None:
    common = setup(tmp_path)
    path = tmp_path / "closed.json"
    path.write_text(json.dumps([{"id": "1", "email": "a@x.com"}, {"id": "2", "email": "b@x.com"}]))
    runner = CliRunner()
    result = runner.invoke(main, ["ingest", str(path), *common, "--object-type", "Closed"])
    assert result.exit_code == 0, result.output
    assert "0 ingested" in result.output and "2 dead-lettered" in result.output
    letters = json.loads(runner.invoke(main, ["dlq", "list", *common, "--json"]).output)
    assert [x["Category"] for x in letters] == ["no_profile", "no_profile"]
    shown = runner.invoke(main, ["dlq", "show", letters[0]["MessageId"], *common, "--json"])
    assert json.loads(json.loads(shown.output)["Object"]) == {"id": "1", "email": "a@x.com"}
    retried = runner.invoke(main, ["dlq", "retry", *common, "--json"])
    assert json.loads(retried.output) == {
        "Succeeded": [],
        "Failed": [x["MessageId"] for x in letters],
        "Superseded": [],
        "NotRetried": {},
    }
    refused = runner.invoke(main, ["dlq", "purge", *common])
    assert refused.exit_code != 0
    purged = runner.invoke(main, ["dlq", "purge", letters[0]["MessageId"], *common, "--json"])
    assert json.loads(purged.output) == {"Purged": 1, "NotFound": []}
    purged = runner.invoke(main, ["dlq", "purge", "--all", "--yes", *common, "--json"])
    assert json.loads(purged.output) == {"Purged": 1, "NotFound": []}


def test_unknown_object_type_is_an_error(tmp_path: Path) -> None:
    common = setup(tmp_path)
    path = tmp_path / "x.jsonl"
    path.write_text('{"id": "1"}\n')
    result = CliRunner().invoke(main, ["ingest", str(path), *common, "--object-type", "Nope"])
    assert result.exit_code != 0
    assert "Nope" in result.output


def test_json_array_elements_are_kept_as_written(tmp_path: Path) -> None:
    # An array's element is the sender's text, as a line of JSON lines is: parsing it and
    # writing it again would change 1.10 into 1.1 and an escape into its character.
    common = setup(tmp_path)
    elements = [
        '{"id": "1", "email": "a@x.com", "score": 1.10}',
        '{\n  "id": "2",\n  "name": "Ren\\u00e9"\n}',
    ]
    path = tmp_path / "closed.json"
    path.write_text("[\n  " + ",\n  ".join(elements) + "\n]\n")
    runner = CliRunner()
    result = runner.invoke(main, ["ingest", str(path), *common, "--object-type", "Closed"])
    assert result.exit_code == 0, result.output
    letters = json.loads(runner.invoke(main, ["dlq", "list", *common, "--json"]).output)
    kept = []
    for letter in letters:
        shown = runner.invoke(main, ["dlq", "show", letter["MessageId"], *common, "--json"])
        kept.append(json.loads(shown.output)["Object"])
    assert sorted(kept) == sorted(elements)
