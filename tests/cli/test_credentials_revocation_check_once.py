"""The revocation check of a server's credential cache (auth.credentials.SecretCache) runs off
every request's path, one at a time, and fails closed.

The problems: every request that arrived while the once-a-second check was under way ran a check
of its own (20 requests at once after the interval: 20 reads); then, single-flight, the request
that found the check due ran it (a read) and the others waited for it, so on the event loop they
all moved to a worker thread, and a burst at that moment was not one turn's batch. Now the
request that finds it due starts it in a thread of its own; every request is answered from the
cache meanwhile, as long as a successful check (or its own lookup) vouched for the key recently
(`trusted_seconds`): when checks fail (the database does not answer), cached keys stop being used
and are looked up again. After an idle while, the burst that comes waits for one check rather
than looking the key up once a request.

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
from starlette.testclient import TestClient
from tests.cli.test_credentials_revoked_everywhere import _Clock, _list_domains, _openprofiles

from openprofiles.app import build_services, create_app
from openprofiles.auth import credentials
from openprofiles.auth.authenticator import Authenticator
from openprofiles.auth.credentials import (
    REVOCATION_CHECK_SECONDS,
    IssuedCredential,
    SecretCache,
    create_credential,
    trusted_seconds,
)
from openprofiles.blocking import on_the_loop
from openprofiles.context import Services
from openprofiles.errors import UnrecognizedClient
from openprofiles.settings import Settings

REQUESTS = 20


class DatabaseDown(Exception):
    """What the held check raises when the test says it fails."""


@dataclass
class _Checks:
    """The revocation checks' statements: counted, held until `release` is set, and failed
    when `fail`."""

    fail: bool = False
    release: threading.Event = field(default_factory=threading.Event)
    count: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, _conn: object, _cursor: object, statement: str, *_args: object) -> None:
        # The check reads ids only (stored_credentials); a lookup reads the sealed secret.
        if "credential" not in statement or "secret_sealed" in statement:
            return
        with self._lock:
            self.count += 1
        # Bounded: a cache that waited here for good would fail the test, not hang it.
        assert self.release.wait(timeout=60)
        if self.fail:
            raise DatabaseDown("the database does not answer")


@contextmanager
def _counting(services: Services, checks: _Checks) -> Iterator[_Checks]:
    event.listen(services.database.engine, "before_cursor_execute", checks)
    try:
        yield checks
    finally:
        checks.release.set()
        event.remove(services.database.engine, "before_cursor_execute", checks)


def _at_once(authenticate: Authenticator, issued: IssuedCredential, region: str) -> list[object]:
    """REQUESTS requests signed with `issued`, each in a thread of its own; what each ended
    with (a role or an exception), once all have ended."""
    outcomes: list[object] = []
    guard = threading.Lock()

    def request() -> None:
        try:
            outcome: object = _list_domains(authenticate, issued, region).role
        except Exception as error:  # what the request ended with, for the assertions
            outcome = error
        with guard:
            outcomes.append(outcome)

    threads = [threading.Thread(target=request) for _ in range(REQUESTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive()
    return outcomes


def _check_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    """The revocation checks' threads alive now that were not at `before` (another test's app
    that was not shut down may have one still ending)."""
    return [
        t
        for t in threading.enumerate()
        if t.name == "openprofiles-credential-check" and t not in before
    ]


def test_requests_after_the_interval_neither_run_nor_wait_for_the_check(
    settings: Settings,
) -> None:
    before = set(threading.enumerate())
    services = build_services(settings)
    clock = _Clock()
    cache = SecretCache(clock=clock)
    try:
        with services.write() as tx:
            issued = create_credential(tx, role="agent")
        authenticate = Authenticator(services, 900, cache)
        assert _list_domains(authenticate, issued, settings.region).role == "agent"
        clock.now += REVOCATION_CHECK_SECONDS

        with _counting(services, _Checks()) as checks:
            # On the event loop: the request that finds the check due starts it and goes on;
            # it neither reads (which would move it, and its turn's burst, off the loop) nor
            # waits. The check's read is held meanwhile.
            with on_the_loop():
                assert _list_domains(authenticate, issued, settings.region).role == "agent"
            # Every request meanwhile is answered from the cache, none waits for the held
            # check, and none starts another: single-flight.
            assert _at_once(authenticate, issued, settings.region) == ["agent"] * REQUESTS
            checks.release.set()
            cache.settle()
        assert checks.count == 1  # was one per request: 20
    finally:
        cache.close()
        services.database.dispose()
    assert _check_threads(before) == []


def test_cached_keys_stop_being_used_when_checks_keep_failing(settings: Settings) -> None:
    services = build_services(settings)
    clock = _Clock()
    cache = SecretCache(clock=clock)
    try:
        with services.write() as tx:
            revoked = create_credential(tx, role="agent")
            kept = create_credential(tx, role="agent")
        authenticate = Authenticator(services, 900, cache)
        for issued in (revoked, kept):
            assert _list_domains(authenticate, issued, settings.region).role == "agent"
        # Revoked by another process: this one's cache learns of it only by its check.
        _openprofiles(settings, "credentials", "delete", revoked.access_key_id)

        # The checks fail (the database does not answer their read; a lookup still works).
        with _counting(services, _Checks(fail=True)) as checks:
            checks.release.set()
            clock.now += REVOCATION_CHECK_SECONDS
            # Answered from the cache while the check is under way (it is recent enough)...
            assert _list_domains(authenticate, revoked, settings.region).role == "agent"
            cache.settle()
            assert checks.count == 1
            # ... not once the last successful check is `trusted_seconds()` old: a key is looked
            # up again (this one is still stored), and the check, due again, tried again.
            clock.now += trusted_seconds() - REVOCATION_CHECK_SECONDS
            assert _list_domains(authenticate, kept, settings.region).role == "agent"
            cache.settle()
            assert checks.count == 2
            # The revoked key is looked up too, and found gone: the cache did not keep
            # answering for ever.
            outcomes = _at_once(authenticate, revoked, settings.region)
            cache.settle()
        assert all(isinstance(o, UnrecognizedClient) for o in outcomes), outcomes
        # The failing check is tried once an interval, not once a request.
        assert checks.count == 2
    finally:
        cache.close()
        services.database.dispose()


def test_a_closed_cache_starts_no_check_and_leaves_no_thread(settings: Settings) -> None:
    before = set(threading.enumerate())
    services = build_services(settings)
    clock = _Clock()
    cache = SecretCache(clock=clock)
    try:
        with services.write() as tx:
            issued = create_credential(tx, role="admin")
        authenticate = Authenticator(services, 900, cache)
        assert _list_domains(authenticate, issued, settings.region).role == "admin"
        with _counting(services, _Checks()) as checks:
            clock.now += REVOCATION_CHECK_SECONDS
            assert _list_domains(authenticate, issued, settings.region).role == "admin"
            assert len(_check_threads(before)) == 1  # held
            checks.release.set()
            authenticate.close()  # waits for it
            assert _check_threads(before) == []
            clock.now += REVOCATION_CHECK_SECONDS
            assert _list_domains(authenticate, issued, settings.region).role == "admin"
            assert _check_threads(before) == []
        assert checks.count == 1
    finally:
        services.database.dispose()


def test_the_app_closes_its_cache_at_shutdown(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's shutdown (the app's lifespan) waits for a check under way and starts none."""
    before = set(threading.enumerate())
    monkeypatch.setattr(credentials, "REVOCATION_CHECK_SECONDS", 0.0)  # due at every request
    app = create_app(settings)
    services = app.state.services
    authenticate = app.state.api[1]
    try:
        with services.write() as tx:
            issued = create_credential(tx, role="admin")
        with _counting(services, _Checks()) as checks, TestClient(app):
            _list_domains(authenticate, issued, settings.region)
            _list_domains(authenticate, issued, settings.region)  # starts a check, held
            assert len(_check_threads(before)) == 1
            checks.release.set()
        assert _check_threads(before) == []
        _list_domains(authenticate, issued, settings.region)
        assert _check_threads(before) == []
    finally:
        services.database.dispose()


def test_a_burst_after_a_pause_shares_one_check_instead_of_a_lookup_each(
    settings: Settings,
) -> None:
    # After an idle while no check vouches for a cached key any more. The first requests used
    # to look it up one each (a burst of 50: 50 reads of the secret) beside the background
    # check; now they wait for one check, which vouches for it again.
    services = build_services(settings)
    clock = _Clock()
    cache = SecretCache(clock=clock)
    lookups: list[str] = []

    def count_lookups(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "credential" in statement and "secret_sealed" in statement:
            lookups.append(statement)

    try:
        with services.write() as tx:
            issued = create_credential(tx, role="agent")
        authenticate = Authenticator(services, 900, cache)
        assert _list_domains(authenticate, issued, settings.region).role == "agent"
        clock.now += 10 * trusted_seconds()
        event.listen(services.database.engine, "before_cursor_execute", count_lookups)
        with _counting(services, _Checks()) as checks:
            checks.release.set()
            assert _at_once(authenticate, issued, settings.region) == ["agent"] * REQUESTS
            cache.settle()
        assert (checks.count, lookups) == (1, [])
    finally:
        event.remove(services.database.engine, "before_cursor_execute", count_lookups)
        cache.close()
        services.database.dispose()


def test_a_check_vouches_only_for_the_keys_it_asked_about() -> None:
    # A key whose slow lookup read it before a check started, and which was cached after the
    # check had listed the keys, was vouched for by that check (a cache-wide "checked at"): a
    # revoked key worked up to a lookup's time longer than the bound.
    clock = _Clock()
    cache = SecretCache(clock=clock)
    stored_keys = {"FIRST", "LATE"}
    asked: list[list[str]] = []

    def stored(ids: object) -> set[str]:
        listed = sorted(ids)  # type: ignore[call-overload]
        asked.append(listed)
        return stored_keys & set(listed)

    reading, read = threading.Event(), threading.Event()

    def slow_lookup() -> tuple[str, str]:
        reading.set()
        assert read.wait(timeout=60)
        return "secret", "agent"

    start = clock.now
    try:
        assert cache.get("FIRST", lambda: ("secret", "admin"), stored) == ("secret", "admin")
        # LATE is read at start + 0.5 (its lookup vouches for it until start + 0.5 + trusted)...
        clock.now = start + 0.5
        late = threading.Thread(target=cache.get, args=("LATE", slow_lookup, stored))
        late.start()
        assert reading.wait(timeout=60)
        # ... and cached only after a check that started later, and did not ask about it.
        clock.now = start + REVOCATION_CHECK_SECONDS + 0.9
        assert cache.get("FIRST", lambda: None, stored) == ("secret", "admin")  # starts it
        cache.settle()
        assert asked == [["FIRST"]]
        read.set()
        late.join(timeout=60)
        # LATE is revoked. Past its lookup's trust, before the next check falls due (none runs
        # in the background), it is not answered from the cache.
        stored_keys.discard("LATE")
        clock.now = start + 0.5 + trusted_seconds() + 0.1
        assert clock.now < start + 2 * REVOCATION_CHECK_SECONDS + 0.9
        assert cache.get("LATE", lambda: None, stored) is None
    finally:
        read.set()
        cache.close()
