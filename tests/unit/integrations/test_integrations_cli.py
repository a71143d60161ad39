"""The `instances` and `ingest contact-records` commands on an SQLite data dir."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from openprofiles.app import build_services
from openprofiles.cli import main
from openprofiles.settings import Settings

from .integ_helpers import INSTANCE, ctr, make_domain


def test_associate_move_and_ingest_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    services = build_services(Settings(data_dir=data))
    make_domain(services, "old")
    make_domain(services, "new")
    services.database.dispose()
    runner = CliRunner()
    base = ["--data-dir", str(data)]
    done = runner.invoke(
        main, ["instances", "associate", *base, "--instance", INSTANCE, "--domain", "old"]
    )
    assert done.exit_code == 0, done.output
    refused = runner.invoke(
        main, ["instances", "associate", *base, "--instance", INSTANCE, "--domain", "new"]
    )
    assert refused.exit_code != 0 and "already associated with domain old" in refused.output
    moved = runner.invoke(
        main,
        ["instances", "associate", *base, "--instance", INSTANCE, "--domain", "new", "--move"],
    )
    assert moved.exit_code == 0
    assert "existing profiles and contact history stay in old" in moved.output
    listed = runner.invoke(main, ["instances", "list", *base, "--json"])
    assert json.loads(listed.output)[0]["DomainName"] == "new"
    file = tmp_path / "ctr.jsonl"
    file.write_text("\n".join(json.dumps(ctr(f"c{i}")) for i in range(5)) + "\n{bad\n")
    loaded = runner.invoke(main, ["ingest", "contact-records", *base, str(file), "--json"])
    assert loaded.exit_code == 0, loaded.output
    summary = json.loads(loaded.output.strip().splitlines()[-1])
    assert (summary["accepted"], summary["rejected"]) == (5, 1)
