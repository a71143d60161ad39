"""Where `serve --workers N` has its workers count (openprofiles.metrics.endpoint
`multiprocess_dir`): a new directory per server, those of killed servers removed, and a
directory the operator named emptied of earlier processes' counts."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from openprofiles.metrics.endpoint import DIR_PREFIX, MULTIPROCESS_ENV, multiprocess_dir


def _dead_pid() -> int:
    """The id of a process that has ended (and been waited for)."""
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(ended.stdout)


def test_each_server_counts_in_a_new_directory_removed_at_its_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(MULTIPROCESS_ENV, raising=False)
    with multiprocess_dir(2):
        path = Path(os.environ[MULTIPROCESS_ENV])
        assert path.is_dir() and not any(path.iterdir())
        assert path.name.startswith(f"{DIR_PREFIX}{os.getpid()}-")
    assert MULTIPROCESS_ENV not in os.environ
    assert not path.exists()


def test_one_process_counts_in_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROCESS_ENV, raising=False)
    with multiprocess_dir(1):
        assert MULTIPROCESS_ENV not in os.environ


def test_the_directories_of_killed_servers_are_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROCESS_ENV, raising=False)
    killed = Path(tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{_dead_pid()}-"))
    (killed / "counter_1.db").write_bytes(b"")
    running = Path(tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getppid()}-"))
    try:
        with multiprocess_dir(2):
            assert not killed.exists()
            assert running.exists(), "a live server's counts are left alone"
    finally:
        for path in (killed, running):
            if path.exists():
                for f in path.iterdir():
                    f.unlink()
                path.rmdir()


def test_a_directory_the_operator_named_loses_only_ended_processes_counts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """prometheus_client asks for the directory to be emptied between runs; only its own files
    of processes that have ended go (another server or command sharing it keeps its counts)."""
    dead, live = _dead_pid(), os.getppid()
    names = [
        f"counter_{dead}.db",
        f"histogram_{dead}.db",
        f"gauge_livesum_{dead}.db",
        f"counter_{live}.db",
        "other.db",
        "notes.txt",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    monkeypatch.setenv(MULTIPROCESS_ENV, str(tmp_path))
    with multiprocess_dir(2):
        assert os.environ[MULTIPROCESS_ENV] == str(tmp_path)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            [f"counter_{live}.db", "other.db", "notes.txt"]
        )
    assert tmp_path.exists() and os.environ[MULTIPROCESS_ENV] == str(tmp_path)
