"""Hot operations run on the server's event loop (openprofiles.blocking) without ever stalling
it: a write that finds the SQLite writer lock taken waits off the loop, and the other
connections are served meanwhile. Real server, real boto3, a real second process."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.server import LiveServer, run_server

from openprofiles.settings import Settings

_HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
os.pwrite(fd, b"l", 0)
print("held", flush=True)
sys.stdin.readline()
fcntl.flock(fd, fcntl.LOCK_UN)
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("loop") / "data", matching_schedule_check_seconds=0
    )
    with run_server(settings) as server:
        yield server


@pytest.fixture
def domain(live: LiveServer) -> str:
    name = f"d-{uuid.uuid4().hex[:10]}"
    live.client().create_domain(DomainName=name, DefaultExpirationDays=30)
    return name


def _until(condition: Callable[[], bool], what: str) -> None:
    """Wait, bounded, for a condition the server reaches on its own threads."""
    deadline = time.monotonic() + 20
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.005)


def _create_in_background(
    live: LiveServer, domain: str, name: str
) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def create() -> None:
        try:
            outcome.append(
                live.client().create_profile(DomainName=domain, FirstName=name)["ProfileId"]
            )
        except Exception as error:  # reported by the test
            outcome.append(error)

    thread = threading.Thread(target=create)
    thread.start()
    return thread, outcome


def _profiles_named(live: LiveServer, domain: str, name: str) -> list[dict[str, Any]]:
    return live.client().search_profiles(DomainName=domain, KeyName="_fullName", Values=[name])[
        "Items"
    ]


def test_a_write_waits_for_a_writer_in_this_process_while_others_are_served(
    live: LiveServer, domain: str
) -> None:
    lock = live.services.database._writer_lock
    name = f"Held{uuid.uuid4().hex[:8]}"
    with live.services.write():  # this thread holds the writer, like a rule pass would
        thread, outcome = _create_in_background(live, domain, name)
        _until(lambda: len(lock._waiters) == 1, "the request awaits the writer lock")
        # The loop is free: a search and a read answer while that write waits.
        assert _profiles_named(live, domain, name) == []
        assert live.client().get_domain(DomainName=domain)["DomainName"] == domain
        assert outcome == []
    thread.join(timeout=30)
    assert len(outcome) == 1 and isinstance(outcome[0], str), outcome
    # Applied exactly once, though its first try on the loop was abandoned.
    assert [p["ProfileId"] for p in _profiles_named(live, domain, name)] == outcome


def test_a_write_waits_off_the_loop_for_another_process_s_long_write(
    live: LiveServer, domain: str
) -> None:
    lock = live.services.database._writer_lock
    path = Path(str(live.settings.effective_database_url).removeprefix("sqlite:///"))
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path.with_name(path.name + "-writer.lock"))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    name = f"Other{uuid.uuid4().hex[:8]}"
    try:
        assert holder.stdout.readline().strip() == "held"
        thread, outcome = _create_in_background(live, domain, name)
        # The request keeps this process's turn while a worker thread waits in the kernel.
        _until(lock._thread_lock.locked, "a worker thread waits for the other process")
        assert _profiles_named(live, domain, name) == []
        assert outcome == []
    finally:
        holder.stdin.write("go\n")
        holder.stdin.close()
        holder.wait(timeout=30)
    thread.join(timeout=30)
    assert len(outcome) == 1 and isinstance(outcome[0], str), outcome
    assert [p["ProfileId"] for p in _profiles_named(live, domain, name)] == outcome
