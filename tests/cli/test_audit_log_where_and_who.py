"""Which file the audit lines land in, and whom a command's line names, whatever the directory
and the account a process was started from.

* A relative OPENPROFILES_AUDIT_LOG is taken in the data dir (Settings.audit_log_file): read
  from each process's current directory, `serve` started in one directory and a command run in
  another appended to two files, each a partial trail. A real `openprofiles serve` and a real
  command, started in two other directories, both append to DATA_DIR/<the path>; the server's
  line is that of a request no one signed (unauthenticated requests are logged too:
  docs/operations.md, "Rotating it").
* Under sudo a command's line said only uid=0: it names the user who ran sudo too (SUDO_UID,
  read by Settings), and only when the variable has a uid's form, as anyone may set it to any
  text (a line break would forge a line).

Both backends: the commands and the server open the real database."""

from __future__ import annotations

import os
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from tests.cli.test_audit_log_file import (
    OPENPROFILES,
    PASSWORD,
    SETTING,
    UID,
    USERNAME,
    Installation,
    _environment,
    _lines,
    _mode,
)
from tests.support.backends import database_url_for
from tests.support.installation import install
from tests.support.ports import free_port

from openprofiles.settings import Settings

RELATIVE = "trail/openprofiles-audit.log"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def installation(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Installation]:
    with database_url_for(request.param, tmp_path) as url:
        data_dir = tmp_path / "data"
        install(Settings(data_dir=data_dir, database_url=url))
        yield Installation(data_dir, url)


@pytest.fixture(autouse=True)
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _environment_without_sudo(**settings: str) -> dict[str, str]:
    """The environment a command gets here, without the sudo variables the test run may have
    (each test sets its own)."""
    env = _environment(**settings)
    return {k: v for k, v in env.items() if not k.startswith("SUDO_") or k in settings}


def _create_user(installation: Installation, cwd: Path, **settings: str) -> None:
    """`users create` run in `cwd`, its data dir given as an absolute path; it succeeds."""
    process = subprocess.run(
        [OPENPROFILES, "users", "create", "--username", USERNAME, "--role", "agent"]
        + ["--password-stdin", *installation.storage],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_environment_without_sudo(**settings),
        timeout=120,
    )
    assert process.returncode == 0, process.stderr


@contextmanager
def _server(installation: Installation, cwd: Path, output: list[str]) -> Iterator[int]:
    """`openprofiles serve`, started in `cwd` with the audit log's relative path, until the
    block ends; yields its port once it has started. Its output is put in `output`."""
    port = free_port()
    process = subprocess.Popen(
        [OPENPROFILES, "serve", "--port", str(port), *installation.storage],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
        env=_environment_without_sudo(**{SETTING: RELATIVE}),
    )
    assert process.stdout is not None
    reader: threading.Thread | None = None
    try:
        for line in process.stdout:
            output.append(line.rstrip("\n"))
            # It says it listens once it does (connections wait until the server accepts them).
            if "OpenProfiles listening on" in line:
                break
        else:
            raise AssertionError("the server did not start:\n" + "\n".join(output))
        stream = process.stdout
        reader = threading.Thread(
            target=lambda: output.extend(line.rstrip("\n") for line in stream), daemon=True
        )
        reader.start()
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)
        if reader is not None:
            reader.join(timeout=10)


def _unsigned_create_domain(port: int, name: str) -> int:
    """CreateDomain sent without a signature, as anyone who reaches the port may: its status."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/domains/{name}",
        data=b'{"DefaultExpirationDays": 30}',
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as refused:
        return refused.code


def test_a_relative_path_is_taken_in_the_data_dir_not_the_current_directory(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    from_env = Settings.from_env({"OPENPROFILES_DATA_DIR": str(data_dir), SETTING: RELATIVE})
    assert from_env.audit_log_file == data_dir / RELATIVE
    # The data dir of the command line (--data-dir) is the one it is taken in.
    other = tmp_path / "other-data"
    assert from_env.with_overrides(data_dir=other).audit_log_file == other / RELATIVE
    # An absolute path is taken as it is; the default and `off` are unchanged.
    elsewhere = tmp_path / "logs" / "audit.log"
    assert Settings(data_dir=data_dir, audit_log=str(elsewhere)).audit_log_file == elsewhere
    assert Settings(data_dir=data_dir).audit_log_file == data_dir / "audit.log"
    assert Settings(data_dir=data_dir, audit_log="off").audit_log_file is None


def test_serve_and_a_command_started_in_other_directories_append_to_one_file(
    installation: Installation, tmp_path: Path
) -> None:
    (installation.data_dir / "trail").mkdir()
    server_directory, command_directory = tmp_path / "server-cwd", tmp_path / "command-cwd"
    for directory in (server_directory, command_directory):
        (directory / "trail").mkdir(parents=True)
    trail = installation.data_dir / RELATIVE
    output: list[str] = []
    with _server(installation, server_directory, output) as port:
        assert _unsigned_create_domain(port, "unsigned") == 403
        _create_user(installation, command_directory, **{SETTING: RELATIVE})
    assert f"Audit log: {trail}" in output, "\n".join(output)

    texts = [text for _, _, text in _lines(trail)]
    assert texts[0].startswith("api CreateDomain domain=unsigned caller=- status=403 error=")
    assert texts[1:] == [f"cli users create uid={UID} domain=- result=ok"]
    assert _mode(trail) == 0o600
    for directory in (server_directory, command_directory):
        assert list((directory / "trail").iterdir()) == []


def test_a_command_under_sudo_names_the_user_who_ran_sudo(
    installation: Installation, tmp_path: Path
) -> None:
    trail = installation.audit_log
    # sudo sets SUDO_UID (and SUDO_USER, a name: the line keeps to numbers, as for the uid).
    _create_user(installation, tmp_path, SUDO_UID="4321")
    delete = subprocess.run(
        [OPENPROFILES, "users", "delete", USERNAME, "--yes", *installation.storage],
        capture_output=True,
        text=True,
        # Not a uid: anyone may set the variable, to a line break and a forged line too.
        env=_environment_without_sudo(SUDO_UID="1000 result=ok\nforged=1", SUDO_USER="ada"),
        timeout=120,
    )
    assert delete.returncode == 0, delete.stderr
    # Without sudo, no such field.
    _create_user(installation, tmp_path)
    assert [text for _, _, text in _lines(trail)] == [
        f"cli users create uid={UID} sudo_uid=4321 domain=- result=ok",
        f"cli users delete uid={UID} sudo_uid=(not valid) domain=- result=ok",
        f"cli users create uid={UID} domain=- result=ok",
    ]
    assert "ada" not in trail.read_text()
