"""The file loaders tell the operator where rejected records are and what Ctrl-C left behind.

An operator review: `openprofiles ingest contact-records FILE` said "2 accepted, 6 rejected"
without saying where the six were (a domain's dead-letter queue, kept for an instance that is
associated with no domain yet, kept without an instance); Ctrl-C during either loader printed
only "Aborted!", saying neither what was committed nor whether loading again was safe."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Table, func, select
from tests.support.contact_loader import D, loaded_data_dir
from tests.unit.ingest.test_bulk_cli import setup
from tests.unit.integrations.integ_helpers import OTHER_INSTANCE, ctr

from openprofiles.app import build_services
from openprofiles.cli import main
from openprofiles.context import Services
from openprofiles.settings import Settings
from openprofiles.store.schema import contact_record
from openprofiles.store.schema.objects import profile_object


@pytest.fixture
def loaded(settings: Settings) -> Iterator[tuple[Services, list[str]]]:
    with loaded_data_dir(settings) as made:
        yield made


def _mixed_file(tmp_path: Path) -> Path:
    """2 records applied; 3 dead-lettered in D (wrong-typed); 2 kept for an instance associated
    with no domain; 1 kept without an instance (none can be read)."""
    records: list[object] = [ctr(f"ok-{i}", address=f"+1206555010{i}") for i in range(2)]
    for i in range(3):
        bad = ctr(f"bad-{i}")
        bad["Channel"] = ["VOICE"]
        records.append(bad)
    records += [ctr(f"other-{i}", instance=OTHER_INSTANCE) for i in range(2)]
    records.append({"ContactId": "nowhere"})
    file = tmp_path / "ctr.jsonl"
    file.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return file


def test_contact_records_summary_says_where_the_rejected_are(
    loaded: tuple[Services, list[str]], tmp_path: Path
) -> None:
    _, options = loaded
    file = _mixed_file(tmp_path)

    result = CliRunner().invoke(main, ["ingest", "contact-records", *options, str(file)])

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].endswith(": 2 accepted, 6 rejected:")
    assert lines[1:] == [
        f"  3 in the dead-letter queue of domain {D}: see them with "
        f"`openprofiles dlq list --domain {D}`.",
        "  1 kept without an instance (no InstanceARN could be read, so no association can "
        "route them): count them with `openprofiles instances unrouted`, delete them with "
        "`openprofiles instances purge-unrouted --without-instance`.",
        f"  2 kept for instance {OTHER_INSTANCE}, which is associated with no domain yet: "
        f"`openprofiles instances associate --instance {OTHER_INSTANCE} --domain D` sends "
        f"them to domain D; count them with `openprofiles instances unrouted --instance "
        f"{OTHER_INSTANCE}`.",
    ]


def test_contact_records_json_summary_says_where_the_rejected_are(
    loaded: tuple[Services, list[str]], tmp_path: Path
) -> None:
    _, options = loaded
    file = _mixed_file(tmp_path)

    result = CliRunner().invoke(
        main, ["ingest", "contact-records", *options, str(file), "--json", "--batch-size", "3"]
    )

    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert (summary["Accepted"], summary["Rejected"]) == (2, 6)
    assert summary["RejectedTo"] == [
        {
            "KeptIn": "dead_letter_queue",
            "DomainName": D,
            "Count": 3,
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
            "Count": 2,
            "See": f"openprofiles instances unrouted --instance {OTHER_INSTANCE}",
        },
    ]


def _interrupted(command: list[str], settings: Settings, table: Table) -> tuple[str, int]:
    """Run `openprofiles COMMAND` in a process of its own, send it SIGINT (Ctrl-C) once it has
    committed rows of `table`; its stderr (exit status 130 checked), and the records it says it
    loaded, which are the rows it had committed (the batch committed as the signal came may be
    committed without being counted yet)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENPROFILES_")}
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "openprofiles"), *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    services = build_services(settings)
    try:
        deadline = time.monotonic() + 60
        while _rows(services, table) == 0 and process.poll() is None:
            assert time.monotonic() < deadline, "the load committed nothing in 60 s"
            time.sleep(0.05)  # polling the database for the first commit, not waiting for it
        assert process.poll() is None, "the load finished before it could be interrupted"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 130, stderr
        assert "Aborted!" not in stderr
        said = re.search(r"Interrupted: (\d+) of", stderr)
        assert said is not None, stderr
        loaded = int(said.group(1))
        assert 0 < loaded <= _rows(services, table) <= loaded + 100
        return stderr, loaded
    finally:
        if process.poll() is None:
            process.kill()
        services.database.dispose()


def _rows(services: Services, table: Table) -> int:
    with services.read() as tx:
        return int(tx.conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_ctrl_c_during_ingest_objects_says_what_was_loaded(tmp_path: Path) -> None:
    common = setup(tmp_path)
    file = tmp_path / "customers.jsonl"
    total = 50_000
    file.write_text("".join(json.dumps({"id": str(i)}) + "\n" for i in range(total)))
    command = ["ingest", "objects", str(file), *common, "--object-type", "Crm"]

    stderr, committed = _interrupted(
        [*command, "--batch-size", "100"], Settings(data_dir=tmp_path / "data"), profile_object
    )

    message = " ".join(stderr.split())
    assert f"Interrupted: {committed} of {total} records of {file} were loaded" in message
    assert committed % 100 == 0 and committed < total
    assert f"Loading {file} again is safe" in message


def test_ctrl_c_during_ingest_contact_records_says_what_was_loaded(
    loaded: tuple[Services, list[str]], settings: Settings, tmp_path: Path
) -> None:
    _, options = loaded
    file = tmp_path / "ctr.jsonl"
    total = 30_000
    file.write_text("".join(json.dumps(ctr(f"c-{i}")) + "\n" for i in range(total)))

    stderr, committed = _interrupted(
        ["ingest", "contact-records", *options, str(file), "--batch-size", "100"],
        settings,
        contact_record,
    )

    message = " ".join(stderr.split())
    assert (
        f"Interrupted: {committed} of {total} contact records of {file} were loaded "
        f"({committed} accepted, 0 rejected)" in message
    )
    assert f"Loading {file} again is safe" in message


def test_ctrl_c_inside_a_database_call_still_says_what_was_loaded(
    loaded: tuple[Services, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C during the pool's ping of a PostgreSQL connection made psycopg refuse the
    half-used connection (a ProgrammingError caused by the KeyboardInterrupt): the loader
    printed a traceback and exited 1 instead of saying what it had loaded (seen in CI). The
    second batch here fails that way."""
    from openprofiles.contacts import http

    _, options = loaded
    file = tmp_path / "ctr.jsonl"
    file.write_text("".join(json.dumps(ctr(f"i-{i}")) + "\n" for i in range(4)))
    real = http.process_batch
    calls = 0

    def interrupted_in_the_driver(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 1:
            return real(*args, **kwargs)  # type: ignore[arg-type]
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as cause:
            raise RuntimeError("the connection is in a transaction") from cause

    monkeypatch.setattr(http, "process_batch", interrupted_in_the_driver)
    result = CliRunner().invoke(
        main, ["ingest", "contact-records", *options, str(file), "--batch-size", "2"]
    )
    assert result.exit_code == 130, result.output
    assert "Interrupted: 2 of 4 contact records" in result.output
    assert "Traceback" not in result.output
