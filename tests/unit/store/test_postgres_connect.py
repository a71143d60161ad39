"""PostgreSQL connections give up on a server that does not answer: libpq's connect timeout, TCP
keepalives and TCP user timeout are set on every connection
(store.database.POSTGRES_CONNECT_DEFAULTS), and the URL's own query parameters win over them."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from openprofiles.store.database import Database

# This suite's ports for listeners of its own.
PORTS = range(18400, 18450)


class _Captured(Exception):
    pass


def _connect_params(url: str) -> dict[str, Any]:
    """The keyword arguments the driver (psycopg, then libpq) is called with for `url`."""
    database = Database(url)
    seen: dict[str, Any] = {}

    @event.listens_for(database.engine, "do_connect")
    def _capture(_dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
        seen.update(cparams)
        raise _Captured

    try:
        with pytest.raises(_Captured), database.engine.connect():
            pass
    finally:
        database.dispose()
    return seen


def test_every_connection_has_a_connect_timeout_and_keepalives() -> None:
    params = _connect_params("postgresql://app@db.example:5432/profiles")
    assert {k: params.get(k) for k in ("host", "dbname", "user")} == {
        "host": "db.example",
        "dbname": "profiles",
        "user": "app",
    }
    assert int(params["connect_timeout"]) == 10
    assert int(params["keepalives"]) == 1
    # A silent peer is dropped after idle + interval * count seconds: about a minute.
    idle, interval, count = (
        int(params[k]) for k in ("keepalives_idle", "keepalives_interval", "keepalives_count")
    )
    assert idle + interval * count <= 60
    # Data sent and never acknowledged (a write when the peer went) is given up on after the
    # same bound, in milliseconds: keepalives never probe a connection that is not idle.
    assert int(params["tcp_user_timeout"]) == (idle + interval * count) * 1000


def test_the_urls_own_settings_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    params = _connect_params(
        "postgres://app@db.example/profiles?connect_timeout=3&keepalives_idle=5&sslmode=require"
        "&tcp_user_timeout=5000"
    )
    assert params["connect_timeout"] == "3"
    assert params["keepalives_idle"] == "5"
    assert params["sslmode"] == "require"
    assert int(params["keepalives_count"]) == 3  # not given: the default
    assert params["tcp_user_timeout"] == "5000"
    # libpq's own variable for the timeout is honoured too.
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "4")
    assert "connect_timeout" not in _connect_params("postgresql://app@db.example/profiles")


@contextlib.contextmanager
def _silent_server() -> Iterator[tuple[int, list[socket.socket]]]:
    """A TCP listener on one of this suite's ports that accepts connections and never sends a
    byte (a server behind a partition, a hung proxy)."""
    listener = socket.socket()
    for port in PORTS:
        try:
            listener.bind(("127.0.0.1", port))
            break
        except OSError:
            continue
    else:
        pytest.skip("no free port in this suite's range")
    listener.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield port, accepted
    finally:
        stop.set()
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() above
        listener.close()
        for conn in accepted:
            conn.close()  # lets a connection attempt still waiting on it end
        thread.join(timeout=30)


def test_a_server_that_accepts_and_never_answers_fails_the_connection() -> None:
    """Before, the attempt waited for the server's first byte for as long as TCP kept the
    connection: forever, on a listener that holds it open."""
    with _silent_server() as (port, accepted):
        database = Database(f"postgresql://app@127.0.0.1:{port}/profiles")
        outcome: list[BaseException | None] = []

        def connect() -> None:
            try:
                with database.engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
            except BaseException as error:  # noqa: BLE001 — examined below
                outcome.append(error)
            else:
                outcome.append(None)

        attempt = threading.Thread(target=connect, daemon=True)
        attempt.start()
        # Generous: the default timeout is 10 s.
        attempt.join(timeout=90)
        finished = not attempt.is_alive()
        try:
            assert finished, "the connection attempt was still waiting for the silent server"
            assert accepted, "the attempt never reached the listener"
            (error,) = outcome
            assert isinstance(error, OperationalError)
            assert "timeout" in str(error.orig).lower()
        finally:
            database.dispose()


@pytest.mark.postgres
def test_libpq_gets_the_keepalives() -> None:
    from tests.support.backends import postgres_base_url

    database = Database(postgres_base_url())
    try:
        with database.engine.connect() as conn:
            driver = conn.connection.driver_connection
            assert driver is not None
            dsn = dict(part.split("=", 1) for part in driver.info.dsn.split())
    finally:
        database.dispose()
    assert dsn["keepalives"] == "1" and dsn["keepalives_count"] == "3"
    assert dsn["connect_timeout"] == "10"
    assert dsn["tcp_user_timeout"] == "60000"


@pytest.mark.postgres
def test_the_servers_socket_has_the_tcp_user_timeout() -> None:
    """libpq accepts the setting and applies it to the connection's TCP socket (the test
    server is reached over TCP, at 127.0.0.1)."""
    from tests.support.backends import postgres_base_url

    database = Database(postgres_base_url())
    try:
        with database.engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
            driver = conn.connection.driver_connection
            assert driver is not None
            with socket.socket(fileno=os.dup(driver.fileno())) as sock:
                assert sock.family in (socket.AF_INET, socket.AF_INET6)
                applied = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)
    finally:
        database.dispose()
    assert applied == 60000
