"""An SQS endpoint that stops answering, for the dead-letter tests: a TCP relay in front of moto
that either passes each connection through to it or, as a black hole, accepts the connection and
never answers a byte (a firewall dropping packets, a partitioned network) — which moto itself
never does. It counts the connections it accepted, so a test sees whether a send was tried.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from urllib.parse import urlsplit

HOST = "127.0.0.1"


class Relay:
    """Listens on a free port of 127.0.0.1; `black_hole` says what a new connection gets."""

    def __init__(self, target_url: str, *, black_hole: bool = True) -> None:
        target = urlsplit(target_url)
        self._target = (target.hostname or HOST, target.port or 80)
        self.black_hole = black_hole
        self._lock = threading.Lock()
        self._accepted = 0
        self._sockets: list[socket.socket] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind((HOST, 0))
        self._listener.listen(64)
        self.url = f"http://{HOST}:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def accepted(self) -> int:
        """Connections accepted so far (whatever became of them)."""
        with self._lock:
            return self._accepted

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                self._accepted += 1
                self._sockets.append(client)
            if not self.black_hole:
                threading.Thread(target=self._pass_through, args=(client,), daemon=True).start()
            # Black hole: held open, never read from, never answered (closed by `close`).

    def _pass_through(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self._target)
        except OSError:
            client.close()
            return
        with self._lock:
            self._sockets.append(upstream)
        threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
        _pipe(client, upstream)

    def close(self) -> None:
        # shutdown wakes the accept() blocked in the thread; close alone may not (Linux).
        for sock in (self._listener, *self._sockets):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._thread.join(timeout=10)

    def __enter__(self) -> Relay:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes one way until the source ends; then end the other side's writing too."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
