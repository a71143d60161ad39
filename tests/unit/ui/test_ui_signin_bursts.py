"""Bursts of sign-ins cost no more Argon2 than the throttle allows and the process can run: each
attempt is counted before its password is checked (users.reserve_attempt), so parallel guesses
from one address get no more verifications than the address's remaining allowance (100 parallel
made-up names used to run 100), a right password gives its reservation back, and the pages run
at most password_checks.verify_slots() verifications at once, on threads of their own, refusing
the rest at once with 503. The verifications are counted where Argon2 runs, in argon2-cffi's
PasswordHasher.verify."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
from argon2 import PasswordHasher
from starlette.testclient import TestClient
from tests.unit.ui.test_ui_sessions import csrf_of

from openprofiles.app import create_app
from openprofiles.context import Services
from openprofiles.errors import Throttling
from openprofiles.settings import Settings
from openprofiles.store.schema import signin_throttle
from openprofiles.ui import password_checks
from openprofiles.users import service as users
from openprofiles.users import throttle

PASSWORD = "long enough"
WRONG = "not the password"
OFFICE = "198.51.100.7"
# The longest a test waits for something that should happen at once.
PATIENCE = 60


class Verifications:
    """Argon2 verifications as they run (PasswordHasher.verify), each held until `release()`
    once `held` says so."""

    def __init__(self, held: Callable[[int], bool] = lambda _n: False) -> None:
        self.started = 0
        self.threads: list[str] = []
        self.others = 0  # what else the test waits for (refused attempts)
        self._held = held
        self._released = False
        self.changed = threading.Condition()
        self._real = PasswordHasher.verify

    def verify(self, hasher: PasswordHasher, stored: str, password: str) -> bool:
        with self.changed:
            self.started += 1
            self.threads.append(threading.current_thread().name)
            self.changed.notify_all()
            if self._held(self.started):
                self.changed.wait_for(lambda: self._released, timeout=PATIENCE)
        return self._real(hasher, stored, password)

    def note_other(self) -> None:
        with self.changed:
            self.others += 1
            self.changed.notify_all()

    def wait_for(self, condition: Callable[[], bool]) -> bool:
        with self.changed:
            return self.changed.wait_for(condition, timeout=PATIENCE)

    def release(self) -> None:
        with self.changed:
            self._released = True
            self.changed.notify_all()


def counting(monkeypatch: pytest.MonkeyPatch, verifications: Verifications) -> Verifications:
    def verify(self: PasswordHasher, stored: str, password: str) -> bool:
        return verifications.verify(self, stored, password)

    monkeypatch.setattr(PasswordHasher, "verify", verify)
    return verifications


@pytest.fixture
def ana(services: Services) -> Services:
    with services.write() as tx:
        users.create_user(tx, username="ana", password=PASSWORD, role="agent")
    return services


def attempt(services: Services, username: str, password: str) -> Any:
    """A sign-in as the pages make it: checked before, settled in a transaction of its own."""
    checked = users.verify_before_writing(
        services, username=username, password=password, address=OFFICE
    )
    with services.write() as tx:
        return users.sign_in(
            tx, username=username, password=password, address=OFFICE, checked=checked
        )


def refused(services: Services, username: str, password: str = WRONG) -> bool:
    try:
        attempt(services, username, password)
    except Throttling:
        return True
    return False


def test_a_burst_from_one_address_verifies_no_more_than_its_allowance(
    ana: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every verification is held until each attempt has either started one or been refused:
    all of them are in flight together, as in a burst, and none is counted by its outcome."""
    burst = throttle.ADDRESS_LIMIT + 10
    verifications = counting(monkeypatch, Verifications(held=lambda _n: True))

    def guess(n: int) -> str:
        try:
            users.verify_before_writing(ana, username=f"guess-{n}", password=WRONG, address=OFFICE)
        except Throttling:
            verifications.note_other()
            return "refused"
        return "verified"

    with ThreadPoolExecutor(max_workers=burst) as pool:
        outcomes = [pool.submit(guess, n) for n in range(burst)]
        try:
            assert verifications.wait_for(
                lambda: verifications.started + verifications.others == burst
            )
        finally:
            verifications.release()
        results = [outcome.result(timeout=PATIENCE) for outcome in outcomes]

    assert verifications.started == results.count("verified") == throttle.ADDRESS_LIMIT
    assert results.count("refused") == burst - throttle.ADDRESS_LIMIT
    # The burst's failures stand (it was counted before it was checked): ana is refused from
    # there without a verification.
    assert refused(ana, "ana", PASSWORD)
    assert verifications.started == throttle.ADDRESS_LIMIT


def failures(services: Services, username: str, count: int) -> None:
    """`count` failed attempts as `username` from OFFICE: attempts counted whose check never
    came (reserve_attempt), which stay failures, without the Argon2 each would cost."""
    for _ in range(count):
        with services.write() as tx:
            users.reserve_attempt(tx, username=username, address=OFFICE)


def counts(services: Services) -> dict[str, list[int]]:
    """The throttle's failure counts by kind."""
    with services.read() as tx:
        rows = tx.conn.execute(signin_throttle.select()).all()
    found: dict[str, list[int]] = {}
    for row in rows:
        found.setdefault(row.kind, []).append(row.failures)
    return found


def test_a_right_password_gives_its_reservation_back(ana: Services) -> None:
    failures(ana, "ana", throttle.USER_LIMIT - 1)
    # Ana's last try before her lock, while it is being checked: counted, so a parallel one is
    # refused (the lock its reservation set) ...
    checked = users.verify_before_writing(ana, username="ana", password=PASSWORD, address=OFFICE)
    assert refused(ana, "ana")
    # ... and it still signs her in, the lock its own.
    with ana.write() as tx:
        session = users.sign_in(
            tx, username="ana", password=PASSWORD, address=OFFICE, checked=checked
        )
    assert session is not None
    # Her failures from there are forgotten, as after any success; her name's and the
    # address's counts keep the failures before, not the reservation.
    assert counts(ana) == {
        throttle.USER: [throttle.USER_LIMIT - 1],
        throttle.ADDRESS: [throttle.USER_LIMIT - 1],
    }
    assert attempt(ana, "ana", WRONG) is None


def test_a_right_password_lifts_the_address_lock_its_reservation_set(ana: Services) -> None:
    for n in range(throttle.ADDRESS_LIMIT - 1):
        failures(ana, f"guess-{n}", 1)
    checked = users.verify_before_writing(ana, username="ana", password=PASSWORD, address=OFFICE)
    assert refused(ana, "bo")  # the address locked by ana's attempt in flight
    with ana.write() as tx:
        assert users.sign_in(tx, username="ana", password=PASSWORD, address=OFFICE, checked=checked)
    # Back as it was: one more failure from the address is allowed, and locks it.
    assert not refused(ana, "bo")
    assert refused(ana, "bo-again")


@pytest.fixture
def app_client(sqlite_settings: Settings) -> Iterator[Any]:
    app = create_app(sqlite_settings)
    with app.state.services.write() as tx:
        users.create_user(tx, username="ana", password=PASSWORD, role="agent")
    yield app
    app.state.services.database.dispose()


def sign_in(app: Any, username: str, password: str) -> Any:
    """A browser's sign-in, with a client of its own (no cookies shared between threads). Not
    started as a context: each client would run the app's background tasks."""
    client = TestClient(app, follow_redirects=False)
    page = client.get("/ui/sign-in")
    form = {"username": username, "password": password, "csrf_token": csrf_of(page.text)}
    return client.post("/ui/sign-in", data=form)


def test_the_pages_verify_at_most_so_many_passwords_at_once(
    app_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While every slot holds a verification, another sign-in is refused at once with 503 and
    Retry-After, with no verification and nothing counted; then the held ones end as they
    should, ana's right password signing her in."""
    slots = password_checks.verify_slots()
    verifications = counting(monkeypatch, Verifications(held=lambda n: n <= slots))
    with ThreadPoolExecutor(max_workers=slots + 2) as pool:
        held: list[Future[Any]] = [pool.submit(sign_in, app_client, "ana", PASSWORD)]
        held += [pool.submit(sign_in, app_client, f"guess-{n}", WRONG) for n in range(slots - 1)]
        try:
            assert verifications.wait_for(lambda: verifications.started == slots)
            busy = [pool.submit(sign_in, app_client, f"late-{n}", WRONG) for n in range(2)]
            # Answered while the held ones still run: not queued behind them.
            answers = [answer.result(timeout=PATIENCE) for answer in busy]
        finally:
            verifications.release()
        done = [answer.result(timeout=PATIENCE) for answer in held]

    for answer in answers:
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == str(password_checks.RETRY_AFTER_SECONDS)
        assert password_checks.BUSY_MESSAGE in answer.text
    assert verifications.started == slots
    assert done[0].status_code == 303 and done[0].headers["location"] == "/agent/"
    assert [answer.status_code for answer in done[1:]] == [401] * (slots - 1)
    # On Argon2's own threads, not the threadpool the API's requests run on.
    assert all(name.startswith("argon2") for name in verifications.threads)
    # The refused ones were not counted: the address has the held guesses' failures only.
    with app_client.state.services.read() as tx:
        rows = tx.conn.execute(
            signin_throttle.select().where(signin_throttle.c.kind == throttle.ADDRESS)
        ).all()
    assert [row.failures for row in rows] == [slots - 1]
    # With the slots free again, a sign-in goes through.
    assert sign_in(app_client, "ana", PASSWORD).status_code == 303
