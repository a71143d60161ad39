"""`openprofiles ingest contact-records` says which rejected records wait for the contact they
continue (contacts.links) rather than calling them kept for an instance with no domain."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.support.contact_loader import loaded_data_dir
from tests.unit.integrations.integ_helpers import ctr

from openprofiles.cli import main
from openprofiles.context import Services
from openprofiles.settings import Settings


@pytest.fixture
def loaded(settings: Settings) -> Iterator[tuple[Services, list[str]]]:
    with loaded_data_dir(settings) as made:
        yield made


def test_the_summary_says_a_leg_waits_for_its_initial_contact(
    loaded: tuple[Services, list[str]], tmp_path: Path
) -> None:
    _, options = loaded
    leg = ctr("leg", channel="TASK", address=None, PreviousContactId="call-9")
    file = tmp_path / "ctr.jsonl"
    file.write_text(json.dumps(leg) + "\n")

    result = CliRunner().invoke(main, ["ingest", "contact-records", *options, str(file), "--json"])

    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert (summary["Accepted"], summary["Rejected"]) == (0, 1)
    assert summary["RejectedTo"] == [
        {"KeptIn": "waiting", "Count": 1, "See": "openprofiles instances unrouted"}
    ]
