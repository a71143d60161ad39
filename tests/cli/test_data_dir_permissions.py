"""`serve` warns, once and on stderr's log, about a data dir or a secret file in it that other
users may read, naming it, its mode and the chmod that fixes it; and what the service creates
itself is owner-only, whatever the umask.

An operator review: a data dir made beforehand with mode 755 and a credentials file restored
with mode 644 (the first admin's secret) were served without a word."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.ports import free_port

from openprofiles import serving
from openprofiles.settings import Settings

pytestmark = pytest.mark.usefixtures("logging_as_it_was")


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, which lets files be created readable by everyone."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _serve_start(
    settings: Settings, caplog: pytest.LogCaptureFixture, *, first_run_admin: bool = True
) -> list[str]:
    """What `serve` logs before it serves, as warnings of its own."""
    caplog.set_level(logging.WARNING)
    with serving.bind(settings) as listeners:
        list(serving.prepare(settings, listeners, first_run_admin=first_run_admin))
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == serving.logger.name and r.levelno == logging.WARNING
    ]


@pytest.mark.usefixtures("umask_022")
def test_what_the_service_creates_is_owner_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    settings = Settings(data_dir=data_dir, port=free_port())
    assert _serve_start(settings, caplog) == []
    assert _mode(data_dir) == 0o700
    created = sorted(p.name for p in data_dir.iterdir())
    for name in ("openprofiles.sqlite3", "keyring.json", "credentials", "admin-password"):
        assert name in created
    for path in data_dir.iterdir():
        assert _mode(path) == 0o600, f"{path.name} is {_mode(path):o}"


def test_a_data_dir_and_secrets_others_may_read_are_warned_about_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    data_dir.chmod(0o755)
    restored = data_dir / "credentials"
    restored.write_text("[openprofiles]\n")
    restored.chmod(0o640)
    settings = Settings(data_dir=data_dir, port=free_port())
    # Restored from a backup, served without --first-run-admin (which would write it anew).
    warnings = _serve_start(settings, caplog, first_run_admin=False)
    assert warnings == [
        f"The data dir {data_dir} is open to other users (mode 755), and it holds secrets. "
        f"Make it the owner's only: chmod 700 {data_dir}",
        f"The file {restored} is open to other users (mode 640), and it holds secrets. "
        f"Make it the owner's only: chmod 600 {restored}",
    ]
    # Warned about, not changed: the operator chooses (a shared group may be on purpose).
    assert _mode(data_dir) == 0o755 and _mode(restored) == 0o640
    # The SQLite files are owner-only all the same (store.database), and not warned about.
    assert _mode(data_dir / "openprofiles.sqlite3") == 0o600


def test_the_first_run_makes_a_secret_file_it_writes_again_owner_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A credentials file left with a loose mode (O_CREAT's mode applies only to a file it
    creates) is tightened when the first run writes the new credential into it."""
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    for name in ("credentials", "admin-password"):
        (data_dir / name).write_text("old\n")
        (data_dir / name).chmod(0o644)
    settings = Settings(data_dir=data_dir, port=free_port())
    assert _serve_start(settings, caplog) == []
    for name in ("credentials", "admin-password"):
        assert _mode(data_dir / name) == 0o600
        assert (data_dir / name).read_text() != "old\n"
