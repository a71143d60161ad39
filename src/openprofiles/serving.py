"""Running the server: one process, or several sharing its listening sockets.

Python executes one request's code at a time per process, so on a machine with several cores a
busy server runs several processes (`openprofiles serve --workers N`). This process binds a
socket to each address the host names and listens on them (`bind`, `prepare`) before it says it
listens; uvicorn's supervisor starts the workers, hands them the sockets, and restarts one that
dies. Each worker builds its own application (`worker_app`): its own connection pool, caches and
background tasks, which are written for several processes at once (the matching scheduler claims
each slot, the dead-letter resend claims each record, the expiry purge is idempotent). On SQLite
the workers' writes queue on the writer lock (store.writer_lock); on PostgreSQL on the database's
own locks.

The schema is brought up to date once, by the supervising process, before any worker starts.

"OpenProfiles listening on ..." is true when it is printed: the sockets listen from then on, and
a connection made before a worker accepts it (one process builds the application first; with
several, they are new Python processes, seconds away) waits in the kernel's queue rather than
being refused. uvicorn, left to bind, listened only in each worker, once it had started: a
deploy script or health check that trusted the line found the port refusing connections.

Every process appends its audit lines to the audit log (OPENPROFILES_AUDIT_LOG), besides
printing them on stderr: `prepare` opens it first, so one that cannot be opened stops the server.

SIGTERM (what systemd, Kubernetes and docker send to stop a service) stops the server as Ctrl-C
does, with either number of processes: uvicorn's graceful shutdown (no new connection taken, the
requests in flight answered), then the application's (background work stopped, the database
closed: `worker_app`), then exit status 0 (`_sigterm_stops`). A single process used to end as
killed by the signal (status -15, 143 in a shell), which a service manager or container runtime
reports as a failure.

Each worker answers only the Host names that are the server's (`served_hosts`): bound to
127.0.0.1, the loopback names and those OPENPROFILES_ALLOWED_HOSTS lists, so that a web page
whose DNS name is re-bound to 127.0.0.1 cannot use a browser on this machine to call it
(wire.allowed_hosts).

A worker stops when its supervisor is gone (`stop_when_orphaned`): killed alone (`kill -9` of
the parent outside a service manager, which would have ended the whole group), it left its
workers serving the port with no one to restart them, and a new server could not bind it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.types import ASGIApp

from openprofiles.first_run import ADMIN_PASSWORD_FILE, CREDENTIALS_FILE
from openprofiles.settings import Settings
from openprofiles.signals import sigterm_handled_by

if TYPE_CHECKING:
    import uvicorn

    from openprofiles.context import Services
    from openprofiles.wire.allowed_hosts import HostPolicy

logger = logging.getLogger(__name__)


def prepare(
    settings: Settings, listeners: Listeners, *, first_run_admin: bool, storage: str = ""
) -> Iterator[str]:
    """Bring the schema up to date and, when asked, create the first admin credential; then
    listen on `listeners` (`bind`) and say so. Yields the lines to show the operator. A data dir,
    database or keyring that cannot be used stops it as it stops every other command
    (cli_support.open_services says which and why), before anything listens. `storage`: the
    storage options serve was given, which the commands the lines name repeat."""
    from openprofiles.cli_support import open_audit_file, open_services, shown_database
    from openprofiles.first_run import ensure_first_admin, nobody_can_sign_in

    services = open_services(settings, create=True)
    try:
        audit_log = settings.audit_log_file
        if audit_log is not None:
            # Opened (made, owner-only) here, once the data dir exists, so that a file that
            # cannot be opened stops the server with its reason and the setting to change
            # (cli_support.open_audit_file), before anything is served: a server whose requests
            # leave no trail is not one to start. Each process opens it again (run).
            open_audit_file(audit_log).close()
        endpoint = f"http://{url_host(settings.host)}:{settings.port}"
        if first_run_admin:
            yield from ensure_first_admin(services, endpoint, storage=storage)
        else:
            yield from nobody_can_sign_in(services, storage=storage)
        # Once, here, rather than in each worker; after the first run wrote its files.
        warn_about_deployment(settings)
        # From here on a connection is taken (the kernel completes it and queues it until a
        # worker accepts it), so the line after it is true, whenever the workers are ready.
        listeners.listen(BACKLOG)
        workers = f" with {settings.workers} worker processes" if settings.workers > 1 else ""
        yield f"OpenProfiles listening on {endpoint}{workers}"
        # Which data a server serves is not left to be guessed from the environment: a
        # misspelled variable or a wrong working directory used to go unnoticed (an empty
        # database answers like a full one).
        yield f"Data dir: {settings.data_dir.absolute()}"
        yield f"Database: {shown_database(settings)}"
        yield f"Audit log: {audit_log.absolute() if audit_log is not None else 'off'}"
    finally:
        services.database.dispose()


# The data dir's files that hold a secret, besides the keyring (crypto.keyring warns about its
# own mode whenever it reads it) and the SQLite file (store.database makes it owner-only): the
# first run's credential and password (first_run), and SQLite's log and shared-memory files,
# which hold the database's pages.
SECRET_FILES = (CREDENTIALS_FILE, ADMIN_PASSWORD_FILE)
SQLITE_SIDE_FILES = ("-wal", "-shm")


def loose_permissions(settings: Settings) -> list[str]:
    """A warning for the data dir, and for each file of it that holds a secret, that other
    users (its group, or everyone) may use: naming it, its mode, and the chmod that fixes it.
    The service creates all of them owner-only (0700, 0600), but not a data dir made beforehand
    nor a file copied in or restored from a backup."""
    files = [settings.data_dir / name for name in SECRET_FILES]
    database = settings.sqlite_file
    if database is not None:
        files += [Path(f"{database}{side}") for side in SQLITE_SIDE_FILES]
    secrets = "it holds secrets"
    checked = [("The data dir", settings.data_dir, 0o700, secrets)]
    checked += [("The file", path, 0o600, secrets) for path in files]
    if settings.audit_log_file is not None:
        # Made owner-only (logging_setup.AuditFileHandler), but one restored, or made by a
        # logrotate `create` with a looser mode, is not.
        checked.append(("The audit log", settings.audit_log_file, 0o600, _AUDIT_LOG_HOLDS))
    found = []
    for what, path, owner_only, holds in checked:
        try:
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            continue
        if mode & 0o077:
            shown = path.absolute()
            found.append(
                f"{what} {shown} is open to other users (mode {mode:o}), and {holds}. "
                f"Make it the owner's only: chmod {owner_only:o} {shown}"
            )
    return found


_AUDIT_LOG_HOLDS = "it says which access keys and users changed which domains and profiles"


def plain_http_to_the_network(settings: Settings) -> str | None:
    """A warning when the server listens beyond this machine (0.0.0.0, ::, a LAN address) with no
    proxy named in OPENPROFILES_FORWARDED_ALLOW_IPS: it speaks plain HTTP, so sign-in passwords
    and session cookies cross the network in the clear, and behind a TLS proxy it is not told
    so (each request looks like http: cookies are not marked Secure, and the sign-in throttle
    counts the proxy's address, not the client's). docs/operations.md says what to do."""
    if settings.forwarded_allow_ips is not None or is_loopback(settings.host):
        return None
    return (
        f"Listening on {url_host(settings.host)}, beyond this machine, the server speaks plain "
        "HTTP: passwords and session cookies cross the network unencrypted. Put a "
        "TLS-terminating reverse proxy in front of it and set OPENPROFILES_FORWARDED_ALLOW_IPS "
        "to the proxy's address, so that session cookies are marked Secure and the sign-in "
        "throttle sees the clients' addresses (docs/operations.md, 'In front of the server')."
    )


def warn_about_deployment(settings: Settings) -> None:
    """Log on stderr, one warning each, what is unsafe in how the server is set up: files open
    to other users (`loose_permissions`), plain HTTP beyond this machine
    (`plain_http_to_the_network`), /metrics open to the network (metrics.access
    `open_to_the_network`)."""
    from openprofiles.metrics.access import open_to_the_network

    found = [
        *loose_permissions(settings),
        plain_http_to_the_network(settings),
        open_to_the_network(settings, loopback=is_loopback(settings.host)),
    ]
    for warning in found:
        if warning is not None:
            logger.warning("%s", warning)


def is_loopback(host: str) -> bool:
    """Whether `host` names loopback addresses only (127.0.0.0/8, ::1, localhost), read as `bind`
    binds it: every address it resolves to. A name that resolves to a loopback and another
    address is served beyond this machine too."""
    from openprofiles.wire.allowed_hosts import is_loopback_address

    try:
        found = socket.getaddrinfo(host.strip("[]"), None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return bool(found) and all(is_loopback_address(str(entry[4][0])) for entry in found)


def url_host(host: str) -> str:
    """The host as it is written in a URL: an IPv6 address in brackets (http://[::1]:8000)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class AddressUnusable(Exception):
    """The server cannot listen where it was told to; the message says where and why."""

    message_has_no_personal_data = True


# Connections the kernel completes and holds until a worker accepts them: uvicorn's default,
# given to it too (it listens again, with its own backlog, when a worker starts).
BACKLOG = 2048


class Listeners:
    """The server's TCP sockets (`bind`), one per address its host resolves to; closed together
    (a `with` block)."""

    def __init__(self, sockets: list[socket.socket]) -> None:
        self.sockets = sockets

    def listen(self, backlog: int) -> None:
        for listener in self.sockets:
            listener.listen(backlog)

    def close(self) -> None:
        for listener in self.sockets:
            listener.close()

    def __enter__(self) -> Listeners:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def bind(settings: Settings) -> Listeners:
    """The server's TCP sockets, one bound to each address `host` resolves to (as asyncio's
    create_server binds a name: `localhost` is 127.0.0.1 and ::1 where /etc/hosts says both, and
    a client may try either), but not listening yet: connections are refused until `prepare` is
    done and listens on them, just before saying so, and `run` hands them to uvicorn.
    AddressUnusable when one cannot be bound, none left open, before anything says the server
    listens (a port in use used to show up only as uvicorn's error, after the line).

    SO_REUSEADDR as uvicorn sets it: a port whose last connections are closing is usable. An
    IPv6 socket takes IPv6 connections only (IPV6_V6ONLY), as asyncio binds them: `--host ::` and
    `--host 0.0.0.0` name one family each, whatever --workers is, and the IPv4 and IPv6 sockets
    of one name do not clash on the port. Inheritable, as uvicorn makes the sockets it shares
    with the worker processes it spawns."""
    host, port = settings.host, settings.port
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise _unusable(host, port, exc) from None
    bound: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, kind, proto, _, address in found:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            bound.append(_bind_one(family, kind, proto, address))
    except OSError as exc:
        for listener in bound:
            listener.close()
        raise _unusable(host, port, exc) from None
    return Listeners(bound)


def _bind_one(family: int, kind: int, proto: int, address: tuple[object, ...]) -> socket.socket:
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        listener.bind(address)
    except OSError:
        listener.close()
        raise
    listener.set_inheritable(True)
    return listener


def _unusable(host: str, port: int, exc: OSError) -> AddressUnusable:
    reason = exc.strerror or type(exc).__name__
    return AddressUnusable(f"Cannot listen on {url_host(host)}:{port}: {reason}.")


def worker_app() -> ASGIApp:
    """The application of one server process, with the settings `run` left in the environment;
    the schema must already be current (`prepare`). It answers only the Host names that
    `served_hosts` says, before anything else (wire.allowed_hosts: DNS rebinding)."""
    from openprofiles.app import create_app
    from openprofiles.wire.allowed_hosts import allowed_hosts

    settings = Settings.from_env()
    # `prepare` migrated the schema before this process started; N workers running Alembic
    # again at once would only repeat that check N times.
    app = create_app(settings, migrate=False)
    _close_database_at_shutdown(app, app.state.services)
    supervisor = multiprocessing.parent_process()
    if supervisor is not None and supervisor.pid is not None:
        # A worker of `serve --workers N` (uvicorn starts them with multiprocessing); a single
        # server process has no supervisor to outlive.
        stop_when_orphaned(supervisor.pid)
    # Everything built so far (botocore's model, SQLAlchemy, templates) lives as long as the
    # process: moving it out of the collector's reach keeps full collections, which would walk
    # all of it while a request waits, short.
    gc.collect()
    gc.freeze()
    return allowed_hosts(app, served_hosts(settings))


def served_hosts(settings: Settings) -> HostPolicy | None:
    """The Host names a server with these settings answers (wire.allowed_hosts.host_policy):
    bound to loopback, only loopback ones and those OPENPROFILES_ALLOWED_HOSTS lists; bound
    beyond this machine, any unless it lists some. None: any Host. Here, in the serving layer,
    as it depends on the address the server is bound to: an application built by a test
    (Starlette's TestClient says `Host: testserver`) or embedded elsewhere is left as it is."""
    from openprofiles.wire.allowed_hosts import host_policy

    return host_policy(
        settings.allowed_hosts,
        bound_to_loopback=is_loopback(settings.host),
        bind_host=settings.host,
        port=settings.port,
    )


def _close_database_at_shutdown(app: Starlette, services: Services) -> None:
    """Dispose of the server's database once the application's own shutdown is done (its
    background tasks stopped, the authenticator closed), as each command does when it ends
    (cli_support.services_open): its connections are closed, and on SQLite the checkpointer
    empties the write-ahead log an erasure asked to empty (Tx.erased) instead of dying with
    the process, a daemon thread, before it could. Here, in the server's processes only: an
    application built in a test's process shares its database with the test."""
    application_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(served: Any) -> AsyncIterator[Any]:
        try:
            async with application_lifespan(served) as state:
                yield state
        finally:
            await asyncio.to_thread(services.database.dispose)

    app.router.lifespan_context = lifespan


# How often a worker looks whether its supervisor is still there: a syscall a second.
ORPHAN_CHECK_SECONDS = 1.0


def stop_when_orphaned(supervisor_pid: int, every: float = ORPHAN_CHECK_SECONDS) -> None:
    """Send this process SIGTERM (uvicorn's graceful stop: requests in flight finish) once its
    parent is no longer `supervisor_pid`, i.e. the supervisor died and the process was
    re-parented. A thread polling getppid() rather than Linux's parent-death signal, which
    fires when the thread that started the process ends, not the process."""

    def watch() -> None:
        while os.getppid() == supervisor_pid:
            time.sleep(every)
        logger.warning(
            "The supervising server process %d is gone: this worker process stops.",
            supervisor_pid,
        )
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def run(settings: Settings, listeners: Listeners) -> None:
    """Serve on `listeners` (`bind`, listening since `prepare`) until stopped (Ctrl-C or
    SIGTERM)."""
    from openprofiles.metrics.endpoint import multiprocess_dir

    # Workers are new processes (uvicorn starts them with the spawn method) that import the
    # factory by name and read their settings from the environment: the command line's options
    # are put there first, and the rest of the environment is what this process read.
    os.environ.update(settings.command_line_environment())
    # Several workers add up their metrics' counts in a directory they share (metrics.endpoint);
    # with /metrics off (OPENPROFILES_METRICS) no one adds them up, so none is made.
    with multiprocess_dir(settings.workers if settings.metrics else 1):
        _serve(settings, listeners)


def _serve(settings: Settings, listeners: Listeners) -> None:
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    from openprofiles.logging_setup import serving_log_config
    from openprofiles.wire.framing import AutoProtocol

    config = uvicorn.Config(
        "openprofiles.serving:worker_app",
        factory=True,
        # uvicorn's own HTTP protocol, but a request whose framing it cannot read (a bad
        # Content-Length, a broken chunked body) gets the API's error format, not a bare text.
        http=AutoProtocol,
        # No host nor port: it serves the sockets it is given (`bind`).
        workers=settings.workers,
        log_level="info",
        # Time, level and logger name on every line, OpenProfiles' INFO records included
        # (uvicorn's own configuration prints only its loggers, without a time).
        # The audit lines are appended to the audit log too, by each process (`prepare`
        # checked that it opens).
        log_config=serving_log_config(settings.audit_log_file, level=settings.log_level),
        access_log=False,
        # uvicorn trusts X-Forwarded-For from 127.0.0.1 by default, and this server's clients
        # connect from there unless told otherwise: any of them could choose the address the
        # sign-in throttle counts. Trusted only from the proxies named (Settings).
        proxy_headers=settings.forwarded_allow_ips is not None,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        backlog=BACKLOG,
    )
    # What uvicorn.run does (uvicorn 0.54, main.run) once it has bound its sockets, given ours; no
    # Unix socket nor reloading here, so none of its clean-up for them. uvicorn logs no "Uvicorn
    # running on" line for sockets it is given: "OpenProfiles listening on" said it, truly.
    server = uvicorn.Server(config)
    try:
        if config.workers > 1:
            # The supervisor takes SIGTERM and SIGINT itself, stops its workers (each with
            # uvicorn's graceful shutdown) and returns: exit status 0.
            Multiprocess(config, sockets=listeners.sockets).run()
        else:
            with _sigterm_stops(server):
                server.run(sockets=listeners.sockets)
    except KeyboardInterrupt:
        # Ctrl-C: uvicorn raises it again once its graceful shutdown is done.
        pass
    if not server.started and config.workers == 1:
        # The application did not start (its lifespan failed): as uvicorn.run exits then.
        sys.exit(STARTUP_FAILURE)


@contextmanager
def _sigterm_stops(server: uvicorn.Server) -> Iterator[None]:
    """While the block runs, SIGTERM asks `server` to stop (uvicorn's own handler), so that the
    process then ends with status 0, as with --workers N (whose supervisor returns once its
    workers stopped).

    uvicorn takes SIGTERM while it serves and shuts down gracefully, but then puts the handler it
    found back and raises the signal again, "to trigger the expected behaviour": with none set,
    that killed the process after its clean stop (status -15). For a server, being stopped is how
    it ends, not a failure nor an interrupted task (cli_support.TERMINATED_STATUS, 143, is a
    loader's: "not all was loaded, load again"): a service manager told exit status 0 knows it
    stopped as asked, while a container runtime shows 143 as an error. The handler is uvicorn's
    own `handle_exit`, so a SIGTERM that comes before uvicorn takes the signal (its event loop
    being made) is not lost either: the server starts and stops at once (signals.
    sigterm_handled_by: where it may)."""
    with sigterm_handled_by(server.handle_exit):
        yield
