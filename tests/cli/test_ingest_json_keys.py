"""`openprofiles ingest FILE --json` and `openprofiles ingest contact-records FILE --json` print
their keys in PascalCase, as every other command's JSON (and AWS's) does: they printed
snake_case (`created_profiles`, `rejected_to`...), so a script reading several commands' output
had to know two conventions."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from tests.support.contact_loader import D, loaded_data_dir
from tests.unit.ingest.test_bulk_cli import setup
from tests.unit.integrations.integ_helpers import OTHER_INSTANCE, ctr

from openprofiles.cli import main
from openprofiles.context import Services
from openprofiles.settings import Settings

PASCAL = re.compile(r"[A-Z][A-Za-z]*\Z")


@pytest.fixture
def loaded(settings: Settings) -> Iterator[tuple[Services, list[str]]]:
    with loaded_data_dir(settings) as made:
        yield made


def _keys(value: Any) -> set[str]:
    """Every key of every object in a JSON value, however deep."""
    if isinstance(value, dict):
        return set(value).union(*(_keys(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_keys(v) for v in value))
    return set()


def _json(args: list[str]) -> dict[str, Any]:
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    out: dict[str, Any] = json.loads(result.output)
    assert all(PASCAL.match(k) for k in _keys(out)), out
    return out


def test_ingest_objects_json_has_pascal_case_keys(tmp_path: Path) -> None:
    common = setup(tmp_path)
    path = tmp_path / "customers.jsonl"
    path.write_text(json.dumps({"id": "1", "email": "a@x.com"}) + "\nnot json\n")

    out = _json(["ingest", "objects", str(path), *common, "--object-type", "Crm"])

    assert set(out) == {
        "Read",
        "Ingested",
        "CreatedProfiles",
        "DeadLettered",
        "Seconds",
        "RecordsPerSecond",
    }
    counts = (out["Read"], out["Ingested"], out["CreatedProfiles"], out["DeadLettered"])
    assert counts == (2, 1, 1, 1)
    assert isinstance(out["Seconds"], float) and isinstance(out["RecordsPerSecond"], float)


def test_ingest_contact_records_json_has_pascal_case_keys(
    loaded: tuple[Services, list[str]], tmp_path: Path
) -> None:
    _, options = loaded
    bad = ctr("bad")
    bad["Channel"] = ["VOICE"]
    records: list[object] = [
        ctr("ok", address="+12065550100"),
        bad,  # dead-lettered in D
        ctr("other", instance=OTHER_INSTANCE),  # kept for an instance with no domain
        {"ContactId": "nowhere"},  # kept without an instance
        ctr("leg", channel="TASK", address=None, PreviousContactId="call-9"),  # waits
    ]
    first = tmp_path / "first.jsonl"
    first.write_text("\n".join(json.dumps(r) for r in records) + "\n")

    out = _json(["ingest", "contact-records", *options, str(first)])

    assert set(out) == {
        "Read",
        "Accepted",
        "Rejected",
        "RejectedTo",
        "WaitingSentOn",
        "Seconds",
        "RecordsPerSecond",
    }
    assert (out["Read"], out["Accepted"], out["Rejected"]) == (5, 1, 4)
    assert out["RejectedTo"] == [
        {
            "KeptIn": "dead_letter_queue",
            "DomainName": D,
            "Count": 1,
            "See": f"openprofiles dlq list --domain {D}",
        },
        {
            "KeptIn": "unrouted",
            "InstanceArn": None,
            "Count": 1,
            "See": "openprofiles instances unrouted",
        },
        {
            "KeptIn": "unrouted",
            "InstanceArn": OTHER_INSTANCE,
            "Count": 1,
            "See": f"openprofiles instances unrouted --instance {OTHER_INSTANCE}",
        },
        {"KeptIn": "waiting", "Count": 1, "See": "openprofiles instances unrouted"},
    ]
    assert out["WaitingSentOn"] == {"Count": 0, "Accepted": 0, "Rejected": 0}

    # The contact the leg continues comes: the leg is sent on, and said to be.
    second = tmp_path / "second.jsonl"
    second.write_text(json.dumps(ctr("call-9")) + "\n")
    out = _json(["ingest", "contact-records", *options, str(second)])
    assert (out["Read"], out["Accepted"], out["Rejected"], out["RejectedTo"]) == (1, 1, 0, [])
    assert out["WaitingSentOn"] == {"Count": 1, "Accepted": 1, "Rejected": 0}
