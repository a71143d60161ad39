"""The `instances` and `ingest contact-records` commands on an SQLite data dir."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from openprofiles.app import build_services
from openprofiles.cli import main
from openprofiles.integrations.service import associate_instance
from openprofiles.object_types.service import delete_object_type
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
    assert (summary["Accepted"], summary["Rejected"]) == (5, 1)


def test_instances_list_shows_an_instance_disabled_by_a_deleted_type(tmp_path: Path) -> None:
    data = tmp_path / "data"
    services = build_services(Settings(data_dir=data))
    make_domain(services, "d")
    with services.write() as tx:
        associate_instance(tx, domain_name="d", instance_arn=INSTANCE, move=False)
    runner = CliRunner()
    base = ["--data-dir", str(data)]
    listed = runner.invoke(main, ["instances", "list", *base, "--json"])
    assert json.loads(listed.output)[0]["DisabledReason"] is None
    assert "disabled" not in runner.invoke(main, ["instances", "list", *base]).output

    with services.write() as tx:
        delete_object_type(tx, domain_name="d", name="CTR")
    services.database.dispose()
    listed = runner.invoke(main, ["instances", "list", *base, "--json"])
    assert listed.exit_code == 0, listed.output
    reason = json.loads(listed.output)[0]["DisabledReason"]
    assert "its object type CTR was deleted" in reason
    text = runner.invoke(main, ["instances", "list", *base])
    assert text.exit_code == 0, text.output
    assert f"{INSTANCE}  d  CTR  disabled: {reason}" in text.output
