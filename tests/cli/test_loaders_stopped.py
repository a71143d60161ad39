"""The file loaders and the Kinesis connector stopped by something other than Ctrl-C.

A resilience review: on a full disk (SQLite) `openprofiles ingest contact-records` and
`ingest objects` ended in a traceback whose message the logs withhold (OperationalError), saying
neither what had been loaded nor whether loading again was safe; and SIGTERM — what systemd and
Kubernetes send to stop a process — killed a loader or the connector at once, with no summary
and no audit line, where Ctrl-C gives both.

Each runs the real command in a process of its own. The database that cannot be written is
real: on SQLite the loader's file size limit (RLIMIT_FSIZE), which fails its writes as a full
disk does; on PostgreSQL sessions that are read-only (default_transaction_read_only), which the
server refuses writes in."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import boto3
import pytest
from sqlalchemy import Table, func, select
from tests.support.contact_loader import loaded_data_dir
from tests.unit.ingest.conftest import DOMAIN, crm_type, make_domain, put_type
from tests.unit.integrations.integ_helpers import ctr

from openprofiles.app import build_services
from openprofiles.settings import Settings
from openprofiles.store.schema import contact_record
from openprofiles.store.schema.objects import profile_object

OPENPROFILES = str(Path(sys.executable).parent / "openprofiles")


def _env(**more: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("OPENPROFILES_")} | more


def _rows(settings: Settings, table: Table) -> int:
    services = build_services(settings)
    try:
        with services.read() as tx:
            return int(tx.conn.execute(select(func.count()).select_from(table)).scalar_one())
    finally:
        services.database.dispose()


def _storage(settings: Settings) -> list[str]:
    options = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        options += ["--database-url", settings.database_url]
    return options


# A loader's command for a file of `total` records: (the command, the file).
Make = Callable[[int], tuple[list[str], Path]]


@pytest.fixture
def contacts(settings: Settings, tmp_path: Path) -> Make:
    """`ingest contact-records` of a file of records (each its own contact and customer) into a
    data dir with a domain for their instance."""
    with loaded_data_dir(settings) as (_, options):
        pass

    def make(total: int) -> tuple[list[str], Path]:
        file = tmp_path / "ctr.jsonl"
        file.write_text(
            "".join(
                json.dumps(ctr(f"c-{i}", address=f"+1206{5_000_000 + i:07d}")) + "\n"
                for i in range(total)
            )
        )
        return ["ingest", "contact-records", *options, str(file), "--batch-size", "100"], file

    return make


@pytest.fixture
def objects(settings: Settings, tmp_path: Path) -> Make:
    """`ingest objects` of a file of records of a CRM object type."""
    services = build_services(settings)
    try:
        make_domain(services)
        put_type(services, "Crm", crm_type())
    finally:
        services.database.dispose()

    def make(total: int) -> tuple[list[str], Path]:
        file = tmp_path / "customers.jsonl"
        file.write_text("".join(json.dumps({"id": str(i)}) + "\n" for i in range(total)))
        command = ["ingest", "objects", str(file), *_storage(settings), "--domain", DOMAIN]
        return [*command, "--object-type", "Crm", "--batch-size", "100"], file

    return make


# Each loader's table of what it stores, and how its summary names the file's records.
LOADERS = {
    "contacts": (contact_record, "contact records of"),
    "objects": (profile_object, "records of"),
}


def _loader(
    request: pytest.FixtureRequest, which: str, total: int
) -> tuple[list[str], Path, Table, str]:
    command, file = request.getfixturevalue(which)(total)
    table, said = LOADERS[which]
    return command, file, table, said


# ------------------------------------------------------ a database that cannot be written


def _unwritable(
    settings: Settings, command: list[str]
) -> tuple[list[str], Callable[[], None] | None]:
    """The command run against a database it cannot write, and what the loader's process runs
    before it starts (SQLite: a file size limit that lets the database grow 2 MiB, then fails
    its writes with EFBIG, as a full disk fails them with ENOSPC)."""
    if settings.database_url is None:
        files = [path.stat().st_size for path in settings.data_dir.iterdir()]
        limit = max(files) + 2 * 1024 * 1024

        def limited() -> None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

        return command, limited
    url = settings.database_url
    assert "options=" in url  # tests.support.backends: the test's schema on its search path
    read_only = url.replace("options=", "options=" + quote("-cdefault_transaction_read_only=on "))
    return [read_only if part == url else part for part in command], None


@pytest.mark.parametrize("which", ["contacts", "objects"])
def test_a_database_that_cannot_be_written_stops_a_loader_saying_what_was_loaded(
    settings: Settings, request: pytest.FixtureRequest, which: str
) -> None:
    total = 3_000  # a 2 MiB limit stops a load of about 500
    command, file, table, said = _loader(request, which, total)
    unwritable, before = _unwritable(settings, command)

    stopped = subprocess.run(
        [OPENPROFILES, *unwritable],
        capture_output=True,
        text=True,
        env=_env(),
        preexec_fn=before,
        timeout=600,
    )

    assert stopped.returncode == 1, stopped.stderr
    assert "Traceback" not in stopped.stderr
    message = " ".join(stopped.stderr.split())
    # Why: store.database.storage_failure's reason (EFBIG is SQLite's I/O error).
    reason = "the database is read-only" if settings.database_url else "disk I/O error"
    assert f"Error: Stopped: the database could not be written: {reason}" in message, message
    # What had been loaded: the batches committed before the failure, the one under way not.
    loaded = re.search(rf"(\d+) of {total} {said} {re.escape(str(file))} were loaded", message)
    assert loaded is not None, message
    committed = _rows(settings, table)
    assert int(loaded.group(1)) == committed < total
    if settings.database_url is None:
        assert committed > 0  # 2 MiB took some batches
    assert f"Once it can be written again, loading {file} again is safe" in message

    # And it is: run again with room, the file is loaded once, whole.
    again = subprocess.run(
        [OPENPROFILES, *command], capture_output=True, text=True, env=_env(), timeout=600
    )
    assert again.returncode == 0, again.stderr
    assert _rows(settings, table) == total


# ------------------------------------------------------------------------------------- SIGTERM


def _signalled_after_progress(command: list[str], total: int) -> subprocess.Popen[str]:
    """The command running in a process of its own, sent SIGTERM once its progress bar (on
    stderr, drawn as on a terminal: rich's TTY_COMPATIBLE and TTY_INTERACTIVE) shows a batch
    committed; returned once it has ended, its stdout and stderr unread after that point."""
    process = subprocess.Popen(
        [OPENPROFILES, *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(TTY_COMPATIBLE="1", TTY_INTERACTIVE="1", NO_COLOR="1", COLUMNS="120"),
    )
    assert process.stderr is not None
    shown = b""
    progress = re.compile(rb"\b[1-9]\d*/%d\b" % total)
    while not progress.search(shown):
        chunk = os.read(process.stderr.fileno(), 65536)
        assert chunk, f"the load ended before it showed progress: {shown[-500:]!r}"
        shown += chunk
    assert process.poll() is None, "the load finished before it could be stopped"
    process.send_signal(signal.SIGTERM)
    return process


@pytest.mark.parametrize("which", ["contacts", "objects"])
def test_sigterm_stops_a_loader_as_ctrl_c_does(
    settings: Settings, request: pytest.FixtureRequest, which: str
) -> None:
    total = 30_000  # a load of some seconds, stopped after its first batches
    command, file, table, said = _loader(request, which, total)

    process = _signalled_after_progress(command, total)
    _, stderr_bytes = process.communicate(timeout=120)

    stderr = stderr_bytes.decode()
    # 128 + SIGTERM, as a shell reports it (Ctrl-C: 130); not killed by the signal (-15).
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr and "Aborted!" not in stderr
    message = " ".join(stderr.split())
    loaded = re.search(rf"Interrupted: (\d+) of {total} {said} {re.escape(str(file))}", message)
    assert loaded is not None, message
    # A batch committed as the signal came may not be counted yet.
    assert 0 < int(loaded.group(1)) <= _rows(settings, table) <= int(loaded.group(1)) + 100
    assert f"Loading {file} again is safe" in message
    audit = (settings.data_dir / "audit.log").read_text().splitlines()
    line = rf"cli ingest {command[1]} uid={os.getuid()}( domain=\S+)? result=interrupted"
    assert re.search(line + "$", audit[-1]), audit


@pytest.fixture
def _aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")


@pytest.mark.usefixtures("_aws_credentials")
def test_sigterm_stops_the_kinesis_connector_as_ctrl_c_does(
    settings: Settings, moto_url: str
) -> None:
    with loaded_data_dir(settings) as (_, options):
        pass
    kinesis = boto3.client("kinesis", endpoint_url=moto_url, region_name="us-east-1")
    stream = f"ctr-{os.urandom(6).hex()}"
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    process = subprocess.Popen(
        [OPENPROFILES, "connectors", "kinesis", *options, "--stream", stream]
        + ["--endpoint-url", moto_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing"),
    )
    assert process.stdout is not None
    try:
        # Printed by the command once it runs (the handler is in place before it starts).
        assert process.stdout.readline().startswith(f"Reading contact records from {stream}")
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)

    # As after Ctrl-C: a clean stop (status 0: systemd's unit is not "failed"), saying so.
    # (A signal that lands inside the PostgreSQL driver's call still has the poll's error
    # logged with its traceback by KinesisContactRecords.run; the command stops all the same.)
    assert process.returncode == 0, stderr
    assert "Error:" not in stderr
    assert stdout.startswith("Stopped. Every batch applied from"), stdout
    audit = (settings.data_dir / "audit.log").read_text().splitlines()
    assert audit[-1].endswith(f"cli connectors kinesis uid={os.getuid()} domain=- result=ok"), audit
