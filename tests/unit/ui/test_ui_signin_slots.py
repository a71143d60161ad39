"""A sign-in takes one of the pages' Argon2 slots (ui.password_checks) only once the throttle let
it through: a client locked out is refused 429 without a slot, even while every slot is busy or
the throttle is held by another transaction, so its flood cannot keep real users' sign-ins out
with 503s (a locked-out address's attempts used to hold the slots while they queued on the
throttle's write). An attempt that then finds no slot is given back to the throttle whole
(throttle.hand_back). On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
from starlette.testclient import TestClient
from tests.unit.ui.test_ui_sessions import csrf_of
from tests.unit.ui.test_ui_signin_bursts import PATIENCE, Verifications, counting

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
LOCKED_OUT = "203.0.113.66"
HOME = "198.51.100.1"
ELSEWHERE = "192.0.2.9"


@pytest.fixture
def app(settings: Settings) -> Iterator[Any]:
    app = create_app(settings)
    with app.state.services.write() as tx:
        users.create_user(tx, username="ana", password=PASSWORD, role="agent")
    yield app
    app.state.services.database.dispose()


def lock_out(services: Services, address: str) -> None:
    """The address's failures up to its limit: every further attempt from it is refused."""
    for n in range(throttle.ADDRESS_LIMIT):
        with services.write() as tx:
            users.reserve_attempt(tx, username=f"victim-{n}", address=address)
    with pytest.raises(Throttling), services.write() as tx:
        users.reserve_attempt(tx, username="victim", address=address)


class Browser:
    """A browser at `address` with the sign-in page open (its CSRF cookie and token)."""

    def __init__(self, app: Any, address: str) -> None:
        self.client = TestClient(app, follow_redirects=False, client=(address, 50000))
        self.token = csrf_of(self.client.get("/ui/sign-in").text)

    def sign_in(self, username: str, password: str) -> Any:
        form = {"username": username, "password": password, "csrf_token": self.token}
        return self.client.post("/ui/sign-in", data=form)


def address_failures(services: Services, address: str) -> int:
    with services.read() as tx:
        digest = throttle.address_digest(tx, address)
        found = tx.conn.execute(
            signin_throttle.select().where(
                signin_throttle.c.kind == throttle.ADDRESS,
                signin_throttle.c.subject_digest == digest,
            )
        ).first()
    return found.failures if found is not None else 0


def test_a_locked_out_address_is_refused_429_while_every_slot_is_busy(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every slot holds a verification; the locked-out address is refused 429 (not 503: it
    asked for no slot), and a real user is told the server is busy, the attempt not counted."""
    services = app.state.services
    lock_out(services, LOCKED_OUT)
    slots = password_checks.verify_slots()
    verifications = counting(monkeypatch, Verifications(held=lambda n: n <= slots))
    attacker, ana = Browser(app, LOCKED_OUT), Browser(app, HOME)
    guessers = [Browser(app, ELSEWHERE) for _ in range(slots)]
    with ThreadPoolExecutor(max_workers=slots) as pool:
        held: list[Future[Any]] = [
            pool.submit(b.sign_in, f"guess-{n}", WRONG) for n, b in enumerate(guessers)
        ]
        try:
            assert verifications.wait_for(lambda: verifications.started == slots)
            refused = attacker.sign_in("ana", WRONG)
            busy = ana.sign_in("ana", PASSWORD)
        finally:
            verifications.release()
        assert [h.result(timeout=PATIENCE).status_code for h in held] == [401] * slots

    assert refused.status_code == 429, refused.status_code
    assert "Too many sign-ins" in refused.text
    assert busy.status_code == 503
    assert busy.headers["retry-after"] == str(password_checks.RETRY_AFTER_SECONDS)
    # Ana's refused attempt was given back: nothing counted from her address ...
    assert address_failures(services, HOME) == 0
    # ... and with the slots free she signs in.
    assert ana.sign_in("ana", PASSWORD).status_code == 303
    assert verifications.started == slots + 1


def test_a_locked_out_address_does_not_queue_on_the_held_throttle(app: Any) -> None:
    """While another transaction holds the throttle (the locked-out address's lock on
    PostgreSQL, the one writer on SQLite), the address's attempts, more than there are slots,
    are all refused 429 at once: none waits for the throttle, holding a slot meanwhile. Then
    a real user signs in."""
    services = app.state.services
    lock_out(services, LOCKED_OUT)
    attempts = password_checks.verify_slots() + 2
    attackers = [Browser(app, LOCKED_OUT) for _ in range(attempts)]
    ana = Browser(app, HOME)
    with ThreadPoolExecutor(max_workers=attempts) as pool:
        with services.write() as tx:
            throttle.hold(
                tx,
                user_digest=b"held by the test",
                address=throttle.address_digest(tx, LOCKED_OUT),
            )
            answers = [pool.submit(b.sign_in, "ana", WRONG) for b in attackers]
            # Answered with the throttle still held (a timeout ends the block, letting go).
            statuses = [a.result(timeout=PATIENCE).status_code for a in answers]
        assert statuses == [429] * attempts
    assert ana.sign_in("ana", PASSWORD).status_code == 303


def test_an_attempt_handed_back_leaves_every_count_as_it_was(services: Services) -> None:
    """Unlike a right password's release, which forgets the name's failures from the address,
    a hand-back only takes back its own failure, and the lock it set."""
    with services.write() as tx:
        users.create_user(tx, username="ana", password=PASSWORD, role="agent")
    for _ in range(throttle.USER_LIMIT - 1):
        with services.write() as tx:
            users.reserve_attempt(tx, username="ana", address=HOME)
    # The last try before her lock: it locks her name from there ...
    with services.write() as tx:
        reserved = users.reserve_attempt(tx, username="ana", address=HOME)
    with pytest.raises(Throttling), services.write() as tx:
        users.reserve_attempt(tx, username="ana", address=HOME)
    # ... until it is handed back, unchecked: then one more try is allowed, and locks.
    with services.write() as tx:
        users.hand_back_attempt(tx, reserved)
    assert address_failures(services, HOME) == throttle.USER_LIMIT - 1
    with services.write() as tx:
        users.reserve_attempt(tx, username="ana", address=HOME)
    with pytest.raises(Throttling), services.write() as tx:
        users.reserve_attempt(tx, username="ana", address=HOME)
