"""`openprofiles ingest` stopped by a batch given up on (store.conflicts: it kept meeting
concurrent writes) says how many records the batches before it committed, as an interrupted
load does: they are loaded, and the operator needs to know it to judge a re-run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from openprofiles.cli import main
from openprofiles.errors import InternalServer
from openprofiles.ingest import bulk

from .test_bulk_cli import setup


def test_a_load_given_up_on_says_what_was_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    common = setup(tmp_path)
    path = tmp_path / "customers.jsonl"
    path.write_text("".join(json.dumps({"id": str(i)}) + "\n" for i in range(3)))
    real = bulk._run_batch

    def second_gives_up(*args: Any) -> tuple[int, int, int]:
        # The batch of the second record (a batch may be run again: store.conflicts).
        if '"1"' in args[-1][0].text:
            raise InternalServer(
                "The request conflicted with concurrent changes to the same data and was not "
                "completed; send it again."
            )
        return real(*args)

    monkeypatch.setattr(bulk, "_run_batch", second_gives_up)
    result = CliRunner().invoke(
        main, ["ingest", str(path), *common, "--object-type", "Crm", "--batch-size", "1"]
    )
    assert result.exit_code == 1
    assert "was not completed; send it again." in result.output
    assert f"1 of 3 records of {path} were loaded" in result.output
    assert "Loading" in result.output and "again is safe" in result.output
