"""A credential revoked in one process stops working in every other process of the database
within about a second (auth.credentials.REVOCATION_CHECK_SECONDS, plus the check's read), not
only in the process that revoked it.

Servers cache the credentials they found; a revocation reached only the caches of the process
that made it, so `openprofiles credentials delete`, or the admin page of one `serve --workers 2`
worker, left the key working on the other workers and servers for up to 30 s (the cache's time):
too long for a key revoked because it leaked, on a service holding customers' personal data.

The revocations here are made by a separate `openprofiles credentials delete` process: one made
in the test's own process would reach its caches directly (`SecretCache.forget`), which is the
case this is not about.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from click.testing import CliRunner
from sqlalchemy import event
from tests.support.ports import free_port
from tests.support.serve import api_client, wait_for_workers

from openprofiles.app import build_services
from openprofiles.auth.authenticator import Authenticator
from openprofiles.auth.credentials import (
    REVOCATION_CHECK_SECONDS,
    IssuedCredential,
    SecretCache,
    create_credential,
)
from openprofiles.cli import main
from openprofiles.context import Principal
from openprofiles.errors import UnrecognizedClient
from openprofiles.settings import Settings

OPENPROFILES = str(Path(sys.executable).parent / "openprofiles")


def _environment() -> dict[str, str]:
    # The settings are the command line's alone (as the server's tests do).
    return {k: v for k, v in os.environ.items() if not k.startswith("OPENPROFILES_")}


def _storage(settings: Settings) -> list[str]:
    options = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        options += ["--database-url", settings.database_url]
    return options


def _openprofiles(settings: Settings, *args: str) -> str:
    """An `openprofiles` command in a process of its own; its output."""
    result = subprocess.run(
        [OPENPROFILES, *args, *_storage(settings)],
        capture_output=True,
        text=True,
        env=_environment(),
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _command(settings: Settings, *args: str) -> str:
    """An `openprofiles` command run in the test's process; its output."""
    result = CliRunner().invoke(main, [*args, *_storage(settings)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


class _Clock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _list_domains(authenticate: Authenticator, issued: IssuedCredential, region: str) -> Principal:
    """Authenticate a ListDomains request signed with `issued`, as a server does."""
    request = AWSRequest(method="GET", url="http://localhost/domains")
    credentials = Credentials(issued.access_key_id, issued.secret_access_key)
    SigV4Auth(credentials, "profile", region).add_auth(request)
    # The host botocore signed (from the URL), as the client sends it.
    headers = {"host": "localhost"} | {n.lower(): v for n, v in request.headers.items()}
    return authenticate("GET", "/domains", "", headers, b"")


def test_a_key_revoked_by_another_process_is_refused_once_the_cache_checks(
    settings: Settings,
) -> None:
    services = build_services(settings)
    try:
        with services.write() as tx:
            issued = create_credential(tx, role="agent")
            other = create_credential(tx, role="agent")
        clock = _Clock()
        cache = SecretCache(clock=clock)
        authenticate = Authenticator(services, 900, cache)
        assert _list_domains(authenticate, issued, settings.region).role == "agent"
        assert _list_domains(authenticate, other, settings.region).role == "agent"

        _openprofiles(settings, "credentials", "delete", issued.access_key_id)

        # Within the interval the cache answers without a read: the cost the check keeps low.
        assert _list_domains(authenticate, issued, settings.region).role == "agent"
        clock.now += REVOCATION_CHECK_SECONDS
        # The request that finds the check due starts it, in the background, and is answered
        # from the cache (its last check is recent); once the check has read, the key is gone.
        _list_domains(authenticate, other, settings.region)
        cache.settle()
        with pytest.raises(UnrecognizedClient):
            _list_domains(authenticate, issued, settings.region)
        # The keys still stored stay cached and keep working.
        assert _list_domains(authenticate, other, settings.region).role == "agent"
    finally:
        services.database.dispose()


def test_the_check_is_one_read_an_interval_not_one_a_request(settings: Settings) -> None:
    """The check keeps the cache's point: requests within the interval read nothing."""
    services = build_services(settings)
    reads: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "credential" in statement:
            reads.append(statement)

    try:
        with services.write() as tx:
            issued = create_credential(tx, role="admin")
        event.listen(services.database.engine, "before_cursor_execute", record)
        clock = _Clock()
        cache = SecretCache(clock=clock)
        authenticate = Authenticator(services, 900, cache)
        for _ in range(5):
            _list_domains(authenticate, issued, settings.region)
        assert len(reads) == 1  # the lookup that filled the cache
        clock.now += REVOCATION_CHECK_SECONDS
        for _ in range(5):
            _list_domains(authenticate, issued, settings.region)
        cache.settle()
        assert len(reads) == 2  # one check for the interval
    finally:
        if event.contains(services.database.engine, "before_cursor_execute", record):
            event.remove(services.database.engine, "before_cursor_execute", record)
        services.database.dispose()


@contextmanager
def _serving_two_workers(settings: Settings) -> Iterator[int]:
    """`openprofiles serve --workers 2` on the settings' database; its port once both workers
    have started."""
    port = free_port()
    process = subprocess.Popen(
        [OPENPROFILES, "serve", "--port", str(port), "--workers", "2", *_storage(settings)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_environment(),
    )
    try:
        wait_for_workers(process, 2)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


def _client(port: int, key: dict[str, str]) -> object:
    # A new client each call: a new connection, which either worker may accept.
    return api_client(port, (key["AccessKeyId"], key["SecretAccessKey"]))


def _refused_with(port: int, key: dict[str, str]) -> str | None:
    """The error code of a ListDomains call signed with `key`; None when it succeeds."""
    try:
        _client(port, key).list_domains()  # type: ignore[attr-defined]
    except ClientError as error:
        return str(error.response["Error"]["Code"])
    return None


def test_serve_with_two_workers_refuses_a_key_revoked_elsewhere_within_seconds(
    settings: Settings,
) -> None:
    with _serving_two_workers(settings) as port:
        # The commands run in the test's process here: the servers are processes of their own.
        revoked = json.loads(
            _command(settings, "credentials", "create", "--role", "agent", "--json")
        )
        kept = json.loads(_command(settings, "credentials", "create", "--role", "agent", "--json"))
        # Many connections, so that both workers have the key in their caches.
        for _ in range(20):
            assert _refused_with(port, revoked) is None

        _command(settings, "credentials", "delete", revoked["AccessKeyId"])

        # Propagation is asynchronous (each worker checks about every second): requests are
        # retried, bounded, until several in a row, on new connections, are refused as AWS
        # refuses an unknown key. The old cache let them through for 30 s.
        deadline = time.monotonic() + 5
        refused_in_a_row = 0
        while refused_in_a_row < 10 and time.monotonic() < deadline:
            code = _refused_with(port, revoked)
            refused_in_a_row = refused_in_a_row + 1 if code is not None else 0
            if code is not None:
                assert code == "UnrecognizedClientException"
        assert refused_in_a_row == 10, "a worker still accepts the revoked key"
        assert _refused_with(port, kept) is None
