"""Loopback ports for test servers that no other test can take before the server binds them.

Asking the kernel for port 0 and closing the socket again (the usual trick) leaves a window
before the server binds: any outgoing connection in the meantime (a PostgreSQL client, boto3,
another xdist worker) may be handed that very port, and the server then fails with "address
already in use". CI saw exactly that. Two ways out, one for each kind of server:

* a server in this process takes an already bound socket (``bound_loopback_socket``), so there
  is no window at all;
* a server in a child process gets a port below the kernel's ephemeral range (``free_port``),
  which the kernel never hands out on its own, from a slice of that range that belongs to this
  xdist worker alone, checked to be bindable. Only another program that listens on fixed ports
  could still take it.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
from pathlib import Path

LOOPBACK = "127.0.0.1"
# How far below the ephemeral range test ports are taken from; far enough for many workers.
RESERVED_SPAN = 12_000
LOWEST_PORT = 1024


def bound_loopback_socket() -> socket.socket:
    """A listening TCP socket on a loopback port the kernel chose; the caller closes it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((LOOPBACK, 0))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def free_port() -> int:
    """A loopback port nobody listens on, which the kernel will not hand to anyone else."""
    for port in _candidates():
        if _bindable(port):
            return port
    raise RuntimeError("no free loopback port below the ephemeral range for this test worker")


def _candidates() -> list[int]:
    low, high = _worker_slice()
    ports = list(range(low, high))
    # Start at a random place so two test runs on one machine rarely try the same port first.
    start = random.randrange(len(ports))  # noqa: S311 - spreading, not secrecy
    return list(itertools.islice(itertools.cycle(ports), start, start + len(ports)))


def _worker_slice() -> tuple[int, int]:
    ephemeral_low = _ephemeral_range_start()
    pool_low = max(LOWEST_PORT, ephemeral_low - RESERVED_SPAN)
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    index = int(worker) % workers if worker.isdigit() else 0
    size = (ephemeral_low - pool_low) // workers
    if size < 1:
        raise RuntimeError(f"the ephemeral port range starts too low ({ephemeral_low}) for tests")
    return pool_low + index * size, pool_low + (index + 1) * size


def _ephemeral_range_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default, and what other kernels' ranges begin above


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True
