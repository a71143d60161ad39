"""`serve --host NAME` listens on every address NAME resolves to, as asyncio's create_server did.

A review: `bind` took only the first address getaddrinfo returned, so where /etc/hosts lists
`::1 localhost` first, `serve --host localhost` said "listening on http://localhost:…" and
refused a client that reached localhost as 127.0.0.1. The OS resolver is not ours: a name that
resolves to both loopback addresses is made here by answering getaddrinfo for it (this
machine's `localhost` may resolve to one address only)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from tests.support.ports import free_port

from openprofiles import serving
from openprofiles.cli import main
from openprofiles.settings import Settings

pytestmark = pytest.mark.usefixtures("logging_as_it_was")

BOTH = "both-loopbacks.test"
LOOPBACKS = ("::1", "127.0.0.1")  # IPv6 first, as /etc/hosts lists it on some systems
MIXED = "loopback-and-lan.test"


@pytest.fixture(autouse=True)
def names_resolved(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """BOTH resolves to ::1 and 127.0.0.1; MIXED to 127.0.0.1 and a LAN address; every other
    name as the system resolves it."""
    system = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host == BOTH:
            names = LOOPBACKS
        elif host == MIXED:
            names = ("127.0.0.1", "192.0.2.10")
        else:
            return system(host, port, *args, **kwargs)
        return [entry for name in names for entry in system(name, port, *args, **kwargs)]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield


def _answers(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=5):
            return True
    except ConnectionRefusedError:
        return False


def test_serve_listens_on_both_addresses_of_a_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    answered: dict[str, bool] = {}

    def run(settings: Settings, listeners: object) -> None:
        # Where the server would start serving: the kernel takes connections on what listens.
        answered.update({address: _answers(address, port) for address in LOOPBACKS})

    monkeypatch.setattr(serving, "run", run)
    arguments = ["serve", "--host", BOTH, "--port", str(port), "--data-dir", str(tmp_path / "d")]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    assert f"OpenProfiles listening on http://{BOTH}:{port}" in result.stdout
    assert answered == {"::1": True, "127.0.0.1": True}


def test_a_port_in_use_on_one_address_stops_it_with_no_socket_left_open(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(data_dir=tmp_path / "data", host=BOTH, port=port)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        # The second address (127.0.0.1) is taken: ::1 is bound first, then must be let go.
        taken.bind(("127.0.0.1", port))
        taken.listen()
        with pytest.raises(serving.AddressUnusable) as raised:
            serving.bind(settings)
    assert str(raised.value) == f"Cannot listen on {BOTH}:{port}: Address already in use."
    # Without SO_REUSEADDR, a socket still bound to [::1]:port would refuse this one.
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
        probe.bind(("::1", port))


def test_ipv6_sockets_take_ipv6_only() -> None:
    settings = Settings(data_dir=Path("unused"), host="::", port=free_port())
    with serving.bind(settings) as listeners:
        (listener,) = listeners.sockets
        assert listener.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        # So 0.0.0.0 on the same port is free for another server.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
            other.bind(("0.0.0.0", settings.port))


def test_a_name_is_loopback_only_when_all_its_addresses_are() -> None:
    assert serving.is_loopback(BOTH) is True
    assert serving.is_loopback(MIXED) is False
