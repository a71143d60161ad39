"""A live OpenProfiles server in a background thread, for wire and browser tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import uvicorn
from botocore.config import Config
from tests.support.ports import bound_loopback_socket

from openprofiles.app import create_app
from openprofiles.auth.credentials import create_credential
from openprofiles.settings import Settings


@dataclass
class LiveServer:
    url: str
    app: Any
    settings: Settings
    admin_key: tuple[str, str]
    agent_key: tuple[str, str]

    @property
    def services(self) -> Any:
        return self.app.state.services

    def client(self, role: str = "admin", **config: Any) -> Any:
        key = self.admin_key if role == "admin" else self.agent_key
        return boto3.client(
            "customer-profiles",
            endpoint_url=self.url,
            region_name=self.settings.region,
            aws_access_key_id=key[0],
            aws_secret_access_key=key[1],
            config=Config(retries={"max_attempts": 1}, **config),
        )

    def create_web_user(self, username: str, password: str, role: str) -> None:
        """A user who signs in to the web pages (for browser tests)."""
        from openprofiles.users.service import create_user

        with self.services.write() as tx:
            create_user(tx, username=username, password=password, role=role)


@contextmanager
def run_server(settings: Settings) -> Iterator[LiveServer]:
    """Start the app on a free loopback port; stop it when the block ends."""
    # uvicorn serves the socket bound here, so no other connection can take the port first.
    with bound_loopback_socket() as sock:
        yield from _serve_on(sock, settings)


def _serve_on(sock: socket.socket, settings: Settings) -> Iterator[LiveServer]:
    port = int(sock.getsockname()[1])
    settings = settings.with_overrides(port=port)
    app = create_app(settings)
    with app.state.services.write() as tx:
        admin = create_credential(tx, role="admin")
        agent = create_credential(tx, role="agent")
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    # Wait on the server's own readiness flag, bounded, rather than a fixed sleep.
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield LiveServer(
            url=f"http://127.0.0.1:{port}",
            app=app,
            settings=settings,
            admin_key=(admin.access_key_id, admin.secret_access_key),
            agent_key=(agent.access_key_id, agent.secret_access_key),
        )
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        app.state.services.database.dispose()
