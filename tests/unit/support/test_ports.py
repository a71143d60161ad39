"""The test servers' ports: none can be handed to another connection before its server binds it.

CI once failed a wire test's set-up with "address already in use": the port had been chosen by
binding port 0 and closing it, and some outgoing connection was given it before uvicorn bound it.
"""

from __future__ import annotations

import socket

import pytest
from tests.support import ports


def test_a_free_port_is_below_the_ephemeral_range_so_no_client_connection_gets_it() -> None:
    port = ports.free_port()
    assert ports.LOWEST_PORT <= port < ports._ephemeral_range_start()
    with socket.socket() as sock:
        sock.bind((ports.LOOPBACK, port))  # and nobody holds it


def test_each_test_worker_draws_from_its_own_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "3")
    slices = []
    for worker in ("gw0", "gw1", "gw2"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        low, high = ports._worker_slice()
        assert low < high
        slices.append(range(low, high))
        assert ports.free_port() in slices[-1]
    assert all(a.stop <= b.start for a, b in zip(slices, slices[1:], strict=False))
    assert slices[-1].stop <= ports._ephemeral_range_start()


def test_a_port_held_by_someone_else_is_passed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "1")
    first = ports.free_port()
    with socket.socket() as held:
        held.bind((ports.LOOPBACK, first))
        held.listen()
        for _ in range(50):
            assert ports.free_port() != first


def test_an_in_process_server_gets_a_socket_already_listening() -> None:
    with ports.bound_loopback_socket() as listening:
        host, port = listening.getsockname()
        assert host == ports.LOOPBACK
        with socket.create_connection((host, port), timeout=5):
            pass  # accepted into the backlog: the port was never free for anyone else
