"""The revocation check of a server's credential cache (auth.credentials.SecretCache) is run by
one request at a time: the requests that need it while it runs wait for its result.

The problem: every request that arrived while the once-a-second check was under way ran a check
of its own, so under load the check was one read per waiting request rather than one a second
(20 requests at once after the interval: 20 reads; on the event loop each moved to a worker
thread first). Fail-closed still: no request is answered from a cache whose check is overdue, so
when the check fails the requests that waited for it do not use the cache; the next check runs.

With real threads, the real Authenticator and database on SQLite and PostgreSQL: the check's
statement is held (a statement listener waiting on an event the test sets) until every request
has entered the cache, and the statements that reach the database are counted.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from sqlalchemy import event
from tests.cli.test_credentials_revoked_everywhere import _list_domains, _openprofiles

from openprofiles.app import build_services
from openprofiles.auth.authenticator import Authenticator
from openprofiles.auth.credentials import (
    REVOCATION_CHECK_SECONDS,
    IssuedCredential,
    SecretCache,
    create_credential,
)
from openprofiles.blocking import WouldBlock, on_the_loop
from openprofiles.context import Services
from openprofiles.errors import UnrecognizedClient
from openprofiles.settings import Settings

REQUESTS = 20


class _Clock:
    """Monotonic seconds that move only when the test says so; counts its readings, which
    `SecretCache.get` takes once as it starts."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._read = 0
        self._changed = threading.Condition()

    def __call__(self) -> float:
        with self._changed:
            self._read += 1
            self._changed.notify_all()
        return self.now

    def readings(self) -> int:
        with self._changed:
            return self._read

    def wait_for(self, readings: int) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self._read >= readings, timeout=60)


class DatabaseDown(Exception):
    """What the held check raises when the test says it fails."""


@dataclass
class _Checks:
    """The revocation checks' statements: counted, held until `release` is set, and the first
    failed when `fail_first`."""

    fail_first: bool = False
    release: threading.Event = field(default_factory=threading.Event)
    count: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, _conn: object, _cursor: object, statement: str, *_args: object) -> None:
        # The check reads ids only (stored_credentials); a lookup reads the sealed secret.
        if "credential" not in statement or "secret_sealed" in statement:
            return
        with self._lock:
            self.count += 1
            first = self.count == 1
        # Bounded: a cache that waited here for good would fail the test, not hang it.
        assert self.release.wait(timeout=60)
        if first and self.fail_first:
            raise DatabaseDown("the database does not answer")


@contextmanager
def _counting(services: Services, checks: _Checks) -> Iterator[_Checks]:
    event.listen(services.database.engine, "before_cursor_execute", checks)
    try:
        yield checks
    finally:
        checks.release.set()
        event.remove(services.database.engine, "before_cursor_execute", checks)


def _at_once(
    authenticate: Authenticator, issued: IssuedCredential, region: str, clock: _Clock
) -> tuple[list[threading.Thread], list[object]]:
    """REQUESTS requests signed with `issued`, each in a thread of its own, started; returns
    once each has entered the cache. What each ends with (a role or an exception) is appended
    to the list as it ends."""
    outcomes: list[object] = []
    guard = threading.Lock()

    def request() -> None:
        try:
            outcome: object = _list_domains(authenticate, issued, region).role
        except Exception as error:  # what the request ended with, for the assertions
            outcome = error
        with guard:
            outcomes.append(outcome)

    before = clock.readings()
    threads = [threading.Thread(target=request) for _ in range(REQUESTS)]
    for thread in threads:
        thread.start()
    # Every request has read the clock, so it has seen the check due: none can come too late
    # to need it.
    clock.wait_for(before + REQUESTS)
    return threads, outcomes


def _joined(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive()


def test_requests_at_once_after_the_interval_make_one_check(settings: Settings) -> None:
    services = build_services(settings)
    try:
        with services.write() as tx:
            issued = create_credential(tx, role="agent")
        clock = _Clock()
        authenticate = Authenticator(services, 900, SecretCache(clock=clock))
        assert _list_domains(authenticate, issued, settings.region).role == "agent"
        clock.now += REVOCATION_CHECK_SECONDS

        with _counting(services, _Checks()) as checks:
            threads, outcomes = _at_once(authenticate, issued, settings.region, clock)
            # A request on the event loop that meets the check under way does not wait there
            # (that would stall the loop): it moves to a worker thread, as a read does.
            with on_the_loop(), pytest.raises(WouldBlock):
                _list_domains(authenticate, issued, settings.region)
            checks.release.set()
            _joined(threads)

        assert outcomes == ["agent"] * REQUESTS
        assert checks.count == 1  # was one per request: 20
    finally:
        services.database.dispose()


def test_a_failed_check_answers_no_waiting_request_from_the_cache(settings: Settings) -> None:
    services = build_services(settings)
    try:
        with services.write() as tx:
            revoked = create_credential(tx, role="agent")
        clock = _Clock()
        authenticate = Authenticator(services, 900, SecretCache(clock=clock))
        assert _list_domains(authenticate, revoked, settings.region).role == "agent"
        # Revoked by another process: this one's cache learns of it only by its check.
        _openprofiles(settings, "credentials", "delete", revoked.access_key_id)
        clock.now += REVOCATION_CHECK_SECONDS

        with _counting(services, _Checks(fail_first=True)) as checks:
            threads, outcomes = _at_once(authenticate, revoked, settings.region, clock)
            checks.release.set()
            _joined(threads)

        # The request that ran the failed check ends with its error; the check stayed due, so
        # the waiting ones were not answered from the cache: one of them ran it again, and all
        # are refused as the key is gone.
        failed = [o for o in outcomes if isinstance(o, DatabaseDown)]
        refused = [o for o in outcomes if isinstance(o, UnrecognizedClient)]
        assert (len(failed), len(refused)) == (1, REQUESTS - 1), outcomes
        assert checks.count == 2  # the failed one, and one more: was one per request
    finally:
        services.database.dispose()
