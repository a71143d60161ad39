"""Where `serve --workers N` has its workers count (openprofiles.metrics.endpoint
`multiprocess_dir`): a new directory per server, those of killed servers removed, and a
directory the operator named emptied of earlier processes' counts.

A killed server was told by its process id: not alive, its directory went. Across pid namespaces
(containers sharing /tmp) a live server's id may not exist here, or be another process's: its
directory was removed under it, or a dead one's kept. Now a directory is an orphan when the lock
its server holds for its life can be taken."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from openprofiles.metrics.endpoint import DIR_PREFIX, LOCK_FILE, MULTIPROCESS_ENV, multiprocess_dir


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
        assert path.is_dir() and [p.name for p in path.iterdir()] == [LOCK_FILE]
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


@contextmanager
def _held_by_another_process(lock: Path) -> Iterator[None]:
    """`lock` flocked by a process of its own (a server in another container) while in the
    block."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys\n"
            f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


def _remove(path: Path) -> None:
    if path.exists():
        for f in path.iterdir():
            f.unlink()
        path.rmdir()


def test_liveness_is_the_lock_not_the_process_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROCESS_ENV, raising=False)
    # A server in another pid namespace: its id is no process here, but it holds its lock.
    elsewhere = Path(tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{_dead_pid()}-"))
    (elsewhere / "counter_7.db").write_bytes(b"")
    # A killed server whose id is now another live process's (here: the test's parent).
    reused = Path(tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getppid()}-"))
    (reused / LOCK_FILE).write_bytes(b"")
    try:
        with _held_by_another_process(elsewhere / LOCK_FILE), multiprocess_dir(2):
            assert (elsewhere / "counter_7.db").exists(), "a live server's counts were removed"
            assert not reused.exists()
            # This server's own directory is locked while it runs.
            own = Path(os.environ[MULTIPROCESS_ENV])
            fd = os.open(own / LOCK_FILE, os.O_RDWR)
            try:
                with pytest.raises(BlockingIOError):
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            finally:
                os.close(fd)
        # Its server gone, it is an orphan: the next server removes it.
        with multiprocess_dir(2):
            assert not elsewhere.exists()
    finally:
        _remove(elsewhere)
        _remove(reused)


def test_a_server_starting_meanwhile_never_takes_a_new_directory_for_an_orphan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Another server's orphan check, run between the lock file's creation and its lock, took
    # the free lock, removed the new directory, and this server's start failed on the rename.
    from openprofiles.metrics import endpoint

    monkeypatch.delenv(MULTIPROCESS_ENV, raising=False)
    real_flock = fcntl.flock
    checked: list[bool] = []

    def flock_after_another_check(fd: int, operation: int) -> None:
        if not checked:
            checked.append(True)
            endpoint._remove_orphaned_dirs()  # the other server's start, in the window
        real_flock(fd, operation)

    monkeypatch.setattr(endpoint.fcntl, "flock", flock_after_another_check)
    with multiprocess_dir(2):
        path = Path(os.environ[MULTIPROCESS_ENV])
        assert checked and path.is_dir() and (path / LOCK_FILE).exists()
    assert not path.exists()


# Where `multiprocess_dir` makes a directory before it takes its final name.
NEW_PREFIX = f"{DIR_PREFIX}new-"


@contextmanager
def _directory_held_by_another_process(directory: Path) -> Iterator[None]:
    """`directory` itself flocked by a process of its own (a server making it) in the block."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys\n"
            f"fd = os.open({str(directory)!r}, os.O_RDONLY | os.O_DIRECTORY)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


def test_directories_of_servers_killed_while_making_them_are_removed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A server killed between the new directory's creation and its rename left it for ever:
    its name holds no process id, and it had no lock file, or one never locked. Now the
    directory is locked itself while it is made, and one whose lock is free is an orphan; one
    being made (its lock held) is left alone."""
    monkeypatch.delenv(MULTIPROCESS_ENV, raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # no other server's directories
    empty = Path(tempfile.mkdtemp(prefix=NEW_PREFIX))
    claiming = Path(tempfile.mkdtemp(prefix=NEW_PREFIX))
    (claiming / f"{LOCK_FILE}.new").write_bytes(b"")
    claimed = Path(tempfile.mkdtemp(prefix=NEW_PREFIX))
    (claimed / LOCK_FILE).write_bytes(b"")
    being_made = Path(tempfile.mkdtemp(prefix=NEW_PREFIX))
    (tmp_path / f"{NEW_PREFIX}not-a-directory").write_bytes(b"")
    with _directory_held_by_another_process(being_made), multiprocess_dir(2):
        own = Path(os.environ[MULTIPROCESS_ENV])
        assert not empty.exists() and not claiming.exists() and not claimed.exists()
        assert being_made.is_dir(), "a directory another server is making was removed"
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            [own.name, being_made.name, f"{NEW_PREFIX}not-a-directory"]
        )
    # Its maker gone before it was done, it is an orphan too.
    with multiprocess_dir(2):
        assert not being_made.exists()


def test_a_new_directory_another_server_is_removing_is_given_up_for_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another server's orphan check took the new directory's lock in the moment before this
    server's flock (to remove it): this server makes another."""
    from openprofiles.metrics import endpoint

    monkeypatch.delenv(MULTIPROCESS_ENV, raising=False)
    real_flock = fcntl.flock
    given_up: list[Path] = []

    def flock_while_another_check_holds_it(fd: int, operation: int) -> None:
        if given_up:
            real_flock(fd, operation)
            return
        made = Path(os.readlink(f"/proc/self/fd/{fd}"))
        given_up.append(made)
        checker = os.open(made, os.O_RDONLY | os.O_DIRECTORY)
        real_flock(checker, fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            real_flock(fd, operation)
        finally:
            made.rmdir()  # as the check does, while it holds the lock
            os.close(checker)

    monkeypatch.setattr(endpoint.fcntl, "flock", flock_while_another_check_holds_it)
    with multiprocess_dir(2):
        path = Path(os.environ[MULTIPROCESS_ENV])
        assert given_up and given_up[0].name.startswith(NEW_PREFIX)
        assert path.is_dir() and (path / LOCK_FILE).exists()
        assert not given_up[0].exists()
    assert not path.exists()


def test_a_new_directory_removed_before_it_is_opened_is_given_up_for_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another server's orphan check removed the new directory between its making and its
    opening, before any lock (seen in CI: two test servers starting at once): the start failed
    with FileNotFoundError; it makes another."""
    from openprofiles.metrics import endpoint

    monkeypatch.delenv(MULTIPROCESS_ENV, raising=False)
    real_mkdtemp = tempfile.mkdtemp
    removed: list[Path] = []

    def mkdtemp_then_another_check_removes_it(**kwargs: str) -> str:
        made = real_mkdtemp(**kwargs)
        if not removed:
            os.rmdir(made)  # as another server's orphan check does, the lock being free
            removed.append(Path(made))
        return made

    monkeypatch.setattr(endpoint.tempfile, "mkdtemp", mkdtemp_then_another_check_removes_it)
    with multiprocess_dir(2):
        path = Path(os.environ[MULTIPROCESS_ENV])
        assert removed and removed[0].name.startswith(NEW_PREFIX)
        assert path.is_dir() and (path / LOCK_FILE).exists()
    assert not path.exists()
