"""`serve --workers 2`: /metrics adds up both workers' counts (prometheus_client's multiprocess
mode, openprofiles.metrics.endpoint), whichever worker answers the scrape; a count that cannot be
kept never fails the request it counts; and the start removes the count directories that servers
killed while making theirs left behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.support.ports import free_port
from tests.support.serve import (
    api_client,
    first_run_key,
    parent_of,
    serve_first_run,
    wait_for_workers,
)

# Requests sent until both workers have answered some (the kernel hands each new connection
# to either): a bound, not a wait.
MOST_REQUESTS = 400


def _created_profiles(port: int) -> float:
    """CreateProfile successes as one scrape shows them (a new connection: either worker)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "openprofiles_api_requests_total"
        and sample.labels == {"operation": "CreateProfile", "status": "200", "error": ""}
    )


def _metrics_dir(supervisor: int) -> Path:
    """The directory the supervisor named to its workers (PROMETHEUS_MULTIPROC_DIR)."""
    workers = [
        int(pid)
        for pid in os.listdir("/proc")
        if pid.isdigit() and parent_of(int(pid)) == supervisor
    ]
    for pid in workers:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        for entry in environ:
            if entry.startswith(b"PROMETHEUS_MULTIPROC_DIR="):
                return Path(entry.split(b"=", 1)[1].decode())
    raise AssertionError("no worker was told where to count")


def test_metrics_add_up_every_workers_counts(tmp_path) -> None:
    port = free_port()
    data_dir = tmp_path / "data"
    process = serve_first_run(data_dir, port, "--workers", "2")
    try:
        wait_for_workers(process, 2)
        key = first_run_key(data_dir)
        api_client(port, key).create_domain(DomainName="counted", DefaultExpirationDays=30)
        counted_in = _metrics_dir(process.pid)
        made = 0
        # Until both workers have counted a CreateProfile (each worker's counter file appears
        # with its first count), so the sum below needs both workers' files.
        while len(list(counted_in.glob("counter_*.db"))) < 2 or made < 4:
            assert made < MOST_REQUESTS, "the kernel gave every connection to one worker"
            api_client(port, key).create_profile(DomainName="counted", FirstName=f"N{made}")
            made += 1
        # Each scrape, whichever worker answers it, shows every request of both.
        assert [_created_profiles(port) for _ in range(6)] == [made] * 6
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert not counted_in.exists()


def test_requests_are_answered_when_their_counts_cannot_be_kept(tmp_path, monkeypatch) -> None:
    """Counting comes after a request's work is done: a count that fails (here the directory
    the operator named for the counts is gone before the workers' first count) is lost, and
    the request answered as it would be, not 500 after its writes committed."""
    counts = tmp_path / "counts"
    counts.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(counts))
    port = free_port()
    data_dir = tmp_path / "data"
    process = serve_first_run(data_dir, port, "--workers", "2")
    try:
        wait_for_workers(process, 2)
        shutil.rmtree(counts)
        client = api_client(port, first_run_key(data_dir))
        for n in range(4):
            client.create_domain(DomainName=f"uncounted-{n}", DefaultExpirationDays=30)
            with pytest.raises(client.exceptions.ResourceNotFoundException):
                client.get_domain(DomainName="never-made")
        assert len(client.list_domains()["Items"]) == 4
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_serve_removes_the_directories_of_servers_killed_while_making_theirs(
    tmp_path, monkeypatch
) -> None:
    """A server killed between its count directory's creation and its rename left an
    `openprofiles-metrics-new-*` directory no start removed; one another server is making (it
    holds the directory's flock) stays. In a temporary directory of the test's own (TMPDIR), so
    no other server's directories are in play."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(temporary))
    orphans = [
        temporary / "openprofiles-metrics-new-killed",
        temporary / "openprofiles-metrics-new-x",
    ]
    for orphan in orphans:
        orphan.mkdir()
    (orphans[1] / "supervisor.lock.new").write_bytes(b"")
    being_made = temporary / "openprofiles-metrics-new-being-made"
    being_made.mkdir()
    # Held by a process of its own: flock locks of one process's two opens conflict too, but
    # a server making its directory is another process.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys\n"
            f"fd = os.open({str(being_made)!r}, os.O_RDONLY | os.O_DIRECTORY)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    port = free_port()
    process = serve_first_run(tmp_path / "data", port, "--workers", "2")
    try:
        wait_for_workers(process, 2)
        counted_in = _metrics_dir(process.pid)
        assert counted_in.parent == temporary
        assert sorted(p.name for p in temporary.iterdir()) == sorted(
            [counted_in.name, being_made.name]
        ), "a killed server's new directory was left, or one being made removed"
    finally:
        process.terminate()
        process.wait(timeout=30)
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    assert sorted(p.name for p in temporary.iterdir()) == [being_made.name]
