"""The audit log's file (OPENPROFILES_AUDIT_LOG, default DATA_DIR/audit.log): the real
`openprofiles` command and a real `openprofiles serve` (two worker processes) append their audit
lines to it — UTC time, process id, audit text; no personal value — created owner-only; `off`
writes none, a path of one's own is used, and one that cannot be opened stops the command or
the server, before it does anything, with the reason and the setting.

An operator review: a command prints only warnings on stderr, so the audit lines of `dlq purge`,
`users delete` or `dlq show` (cli_support.audit_commands) reached no handler: an audit trail no
one could read. Both backends where a command or the server works on the database."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from configparser import ConfigParser
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from tests.support.backends import database_url_for
from tests.support.installation import install
from tests.support.ports import free_port

from openprofiles.settings import Settings

OPENPROFILES = str(Path(sys.executable).parent / "openprofiles")
UID = os.getuid()
USERNAME = "ada.lovelace@example.com"
PASSWORD = "a long secret password"
EMAIL = "grace.hopper@example.com"
PHONE = "+14155550123"
# A line of the file: the UTC time (ISO 8601, microseconds), the writing process, the audit text.
LINE = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) pid=(\d+) (.+)")
SETTING = "OPENPROFILES_AUDIT_LOG"


@dataclass
class Installation:
    data_dir: Path
    database_url: str | None

    @property
    def storage(self) -> list[str]:
        options = ["--data-dir", str(self.data_dir)]
        return options + (["--database-url", self.database_url] if self.database_url else [])

    @property
    def audit_log(self) -> Path:
        return self.data_dir / "audit.log"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def installation(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Installation]:
    with database_url_for(request.param, tmp_path) as url:
        data_dir = tmp_path / "data"
        install(Settings(data_dir=data_dir, database_url=url))
        yield Installation(data_dir, url)


@pytest.fixture
def sqlite_installation(tmp_path: Path) -> Installation:
    install(Settings(data_dir=tmp_path / "data"))
    return Installation(tmp_path / "data", None)


@pytest.fixture(autouse=True)
def umask_022() -> Iterator[None]:
    """The usual umask, which lets files be created readable by everyone (the commands and the
    server started here inherit it)."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _environment(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENPROFILES_")}
    return {**env, **settings}


@dataclass
class Ran:
    pid: int
    returncode: int
    stdout: str
    stderr: str


def _openprofiles(*args: str, stdin: str | None = None, **settings: str) -> Ran:
    """The real command, in a process of its own, as an operator runs it on a terminal."""
    process = subprocess.Popen(
        [OPENPROFILES, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_environment(**settings),
    )
    try:
        stdout, stderr = process.communicate(stdin, timeout=120)
    finally:
        # A command that did not end in time (a server that started after all) is not left
        # running.
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    return Ran(process.pid, process.returncode, stdout, stderr)


def _create_user(installation: Installation, **settings: str) -> Ran:
    return _openprofiles(
        "users",
        "create",
        "--username",
        USERNAME,
        "--role",
        "agent",
        "--password-stdin",
        *installation.storage,
        stdin=PASSWORD + "\n",
        **settings,
    )


def _lines(path: Path) -> list[tuple[str, int, str]]:
    """(time, pid, audit text) of each line of the audit log; every line has the form."""
    found = []
    for line in path.read_text().splitlines():
        match = LINE.fullmatch(line)
        assert match, f"not an audit log line: {line!r}"
        found.append((match[1], int(match[2]), match[3]))
    return found


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _assert_no_personal_value(text: str, *more: str) -> None:
    for value in (USERNAME, PASSWORD, EMAIL, PHONE, "ada.lovelace", "grace.hopper", *more):
        assert value not in text


def test_a_command_appends_its_line_to_the_data_dir_s_audit_log_and_not_the_terminal(
    installation: Installation,
) -> None:
    created = _create_user(installation)
    assert created.returncode == 0, created.stderr
    [(when, pid, text)] = _lines(installation.audit_log)
    assert (pid, text) == (created.pid, f"cli users create uid={UID} domain=- result=ok")
    assert when.endswith("Z")
    # Owner-only, whatever the umask.
    assert _mode(installation.audit_log) == 0o600
    # On the terminal: the command's own output, no audit line.
    for shown in (created.stdout, created.stderr):
        assert "users create uid=" not in shown and "openprofiles.audit" not in shown

    deleted = _openprofiles("users", "delete", USERNAME, "--yes", *installation.storage)
    assert deleted.returncode == 0, deleted.stderr
    assert [(pid, text) for _, pid, text in _lines(installation.audit_log)] == [
        (created.pid, f"cli users create uid={UID} domain=- result=ok"),
        (deleted.pid, f"cli users delete uid={UID} domain=- result=ok"),
    ]
    assert "users delete uid=" not in deleted.stderr
    _assert_no_personal_value(
        installation.audit_log.read_text(),
        str(installation.data_dir),
        *([installation.database_url] if installation.database_url else []),
    )


def test_off_writes_no_file(installation: Installation) -> None:
    created = _create_user(installation, **{SETTING: "off"})
    assert created.returncode == 0, created.stderr
    assert not installation.audit_log.exists()
    assert "users create uid=" not in created.stderr


def test_a_path_of_one_s_own_is_used(sqlite_installation: Installation, tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    trail = tmp_path / "logs" / "openprofiles-audit.log"
    created = _create_user(sqlite_installation, **{SETTING: str(trail)})
    assert created.returncode == 0, created.stderr
    assert [(pid, text) for _, pid, text in _lines(trail)] == [
        (created.pid, f"cli users create uid={UID} domain=- result=ok")
    ]
    assert _mode(trail) == 0o600
    assert not sqlite_installation.audit_log.exists()


def test_a_command_whose_audit_log_cannot_be_opened_is_refused_before_it_runs(
    installation: Installation, tmp_path: Path
) -> None:
    """Refused, not run with a warning: an audited command's run must leave its line, and a
    warning scrolls past (cli_support._audit_file); `off` is the operator's way to do without."""
    unusable = tmp_path / "no-such-folder" / "audit.log"
    refused = _create_user(installation, **{SETTING: str(unusable)})
    assert refused.returncode == 1
    assert refused.stderr == (
        f"Error: Cannot append to the audit log {unusable}: No such file or directory. Set "
        f"{SETTING} to a file this user may create or append to (in a directory that exists), "
        "or to off to keep no audit log file.\n"
    )
    assert refused.stdout == ""
    assert not unusable.parent.exists()
    # It did nothing: the user it was to create can be created now (not "already exists").
    created = _create_user(installation)
    assert created.returncode == 0, created.stderr
    assert [text for _, _, text in _lines(installation.audit_log)] == [
        f"cli users create uid={UID} domain=- result=ok"
    ]


def test_serve_refuses_to_start_when_its_audit_log_cannot_be_opened(tmp_path: Path) -> None:
    # A directory where the file should be: opening it fails whoever runs the test (root too).
    unusable = tmp_path / "a-folder"
    unusable.mkdir()
    where = ["--port", str(free_port()), "--data-dir", str(tmp_path / "data")]
    refused = _openprofiles("serve", *where, **{SETTING: str(unusable)})
    assert refused.returncode == 1
    assert (
        f"Error: Cannot append to the audit log {unusable}: Is a directory. Set {SETTING} to "
    ) in refused.stderr
    assert "Traceback" not in refused.stderr
    assert "listening" not in refused.stdout


@contextmanager
def _server(installation: Installation, port: int, output: list[str]) -> Iterator[int]:
    """`openprofiles serve --workers 2 --first-run-admin`, until the block ends; yields the
    supervising process's id once both workers have started. Its stdout and stderr are put in
    `output`, whole once the block has ended."""
    process = subprocess.Popen(
        [OPENPROFILES, "serve", "--port", str(port), "--workers", "2", "--first-run-admin"]
        + installation.storage,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_environment(),
    )
    assert process.stdout is not None
    reader: threading.Thread | None = None
    try:
        started = 0
        for line in process.stdout:
            output.append(line.rstrip("\n"))
            started += line.rstrip("\n").endswith("Application startup complete.")
            if started == 2:
                break
        else:
            raise AssertionError("the server did not start:\n" + "\n".join(output))
        stream = process.stdout
        reader = threading.Thread(
            target=lambda: output.extend(line.rstrip("\n") for line in stream), daemon=True
        )
        reader.start()
        yield process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)
        if reader is not None:
            reader.join(timeout=10)


def test_a_live_server_s_workers_append_their_request_lines_beside_the_commands(
    installation: Installation,
) -> None:
    port = free_port()
    output: list[str] = []
    with _server(installation, port, output) as supervisor:
        credentials = ConfigParser()
        credentials.read(installation.data_dir / "credentials")
        [section] = credentials.sections()
        key = credentials[section]["aws_access_key_id"]
        client = boto3.client(
            "customer-profiles",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="us-east-1",
            aws_access_key_id=key,
            aws_secret_access_key=credentials[section]["aws_secret_access_key"],
            config=Config(retries={"max_attempts": 1}),
        )
        client.create_domain(DomainName="audited", DefaultExpirationDays=30)
        profile = client.create_profile(
            DomainName="audited", EmailAddress=EMAIL, PhoneNumber=PHONE
        )["ProfileId"]
        # A command beside the server appends to the same file.
        command = _create_user(installation)
        assert command.returncode == 0, command.stderr
    server_output = "\n".join(output)
    assert f"Audit log: {installation.audit_log}" in output

    lines = _lines(installation.audit_log)
    # The first run's admin key and web user, by the supervising process before it served.
    made = [(pid, text) for _, pid, text in lines if text.startswith("first-run-admin ")]
    assert [text for _, text in made][0] == (
        f"first-run-admin created credential={key} role=admin uid={UID}"
    )
    assert re.fullmatch(
        rf"first-run-admin created web-user=user-[0-9a-f]{{12}} role=admin uid={UID}", made[1][1]
    )
    assert {pid for pid, _ in made} == {supervisor}
    lines = [line for line in lines if not line[2].startswith("first-run-admin ")]
    assert sorted(text for _, _, text in lines) == sorted(
        [
            f"api CreateDomain domain=audited caller={key} status=200 profile=-",
            f"api CreateProfile domain=audited caller={key} status=200 profile={profile}",
            f"cli users create uid={UID} domain=- result=ok",
        ]
    )
    # The requests' lines were written by a worker, not by the supervising process.
    pids = {text.split()[1]: pid for _, pid, text in lines}
    assert pids["CreateDomain"] not in (supervisor, command.pid)
    assert pids["CreateProfile"] not in (supervisor, command.pid)
    assert _mode(installation.audit_log) == 0o600
    _assert_no_personal_value(installation.audit_log.read_text())
    # The server's stderr shows its audit lines as before; only its own.
    assert re.search(
        r"^\S+ \S+ INFO openprofiles\.audit: api CreateProfile domain=audited ",
        server_output,
        re.M,
    ), server_output
    assert "cli users create" not in server_output
