"""Sign-in throttling (users.throttle through users.sign_in): per username, per client address,
growing locks, the same answer for unknown names, nothing in clear. On SQLite and PostgreSQL."""

from __future__ import annotations

import socket
import threading
from datetime import datetime, timedelta
from typing import Any

import pytest
from argon2 import PasswordHasher
from tests.support.concurrency import race

from openprofiles.context import Services
from openprofiles.errors import Throttling
from openprofiles.store.schema import signin_throttle
from openprofiles.users import service as users
from openprofiles.users import throttle
from openprofiles.users.models import NewSession

PASSWORD = "long enough"
WRONG = "not the password"
OFFICE = "198.51.100.7"


def attempt(
    services: Services,
    username: str,
    password: str,
    *,
    address: str | None = OFFICE,
    at: datetime | None = None,
) -> NewSession | None:
    with services.write() as tx:
        if at is not None:
            tx.now = at
        return users.sign_in(tx, username=username, password=password, address=address)


def refusal(services: Services, username: str, password: str, **kwargs: object) -> str:
    with pytest.raises(Throttling) as refused:
        attempt(services, username, password, **kwargs)  # type: ignore[arg-type]
    return refused.value.message


def now(services: Services) -> datetime:
    with services.read() as tx:
        return tx.now


@pytest.fixture
def ana(services: Services) -> Services:
    with services.write() as tx:
        users.create_user(tx, username="ana", password=PASSWORD, role="agent")
    return services


def test_a_username_is_locked_after_five_failures_even_for_its_password(ana: Services) -> None:
    for _ in range(throttle.USER_LIMIT):
        assert attempt(ana, "ana", WRONG) is None
    message = refusal(ana, "ana", PASSWORD)
    assert message == (
        "Too many sign-ins with this username or from this computer have failed. "
        "Wait 1 minute and try again."
    )
    # Another user from the same address is not affected (the address is below its limit).
    with ana.write() as tx:
        users.create_user(tx, username="bo", password=PASSWORD, role="agent")
    assert attempt(ana, "bo", PASSWORD) is not None


def test_an_unknown_name_gets_the_same_answers(ana: Services) -> None:
    """Counted and refused alike, so the answer never tells whether the user exists."""
    for _ in range(throttle.USER_LIMIT):
        assert attempt(ana, "nobody", WRONG) is None
    unknown = refusal(ana, "nobody", WRONG)
    for _ in range(throttle.USER_LIMIT):
        attempt(ana, "ana", WRONG)
    assert refusal(ana, "ana", WRONG) == unknown


def test_the_lock_ends_then_grows_and_a_success_forgets_the_failures(ana: Services) -> None:
    start = now(ana)
    # No address: only the username is counted (the address would reach its own limit here).
    for _ in range(throttle.USER_LIMIT):
        attempt(ana, "ana", WRONG, address=None, at=start)
    refusal(ana, "ana", PASSWORD, address=None, at=start + timedelta(seconds=59))
    assert attempt(ana, "ana", PASSWORD, address=None, at=start + timedelta(seconds=61)) is not None
    # The success forgot the failures: four more do not lock.
    later = start + timedelta(minutes=2)
    for _ in range(throttle.USER_LIMIT - 1):
        attempt(ana, "ana", WRONG, address=None, at=later)
    assert attempt(ana, "ana", PASSWORD, address=None, at=later) is not None
    # Locked again with no success between: each lock lasts twice the one before.
    for lock in (1, 2, 4):
        for _ in range(throttle.USER_LIMIT):
            attempt(ana, "ana", WRONG, address=None, at=later)
        assert f"Wait {lock} minute" in refusal(ana, "ana", PASSWORD, address=None, at=later)
        later += timedelta(minutes=lock, seconds=1)
    assert throttle.lock_length(30) == throttle.LONGEST_LOCK


def test_failures_outside_the_window_start_a_new_count(ana: Services) -> None:
    start = now(ana)
    for _ in range(throttle.USER_LIMIT - 1):
        attempt(ana, "ana", WRONG, at=start)
    after = start + throttle.WINDOW + timedelta(seconds=1)
    attempt(ana, "ana", WRONG, at=after)
    assert attempt(ana, "ana", PASSWORD, at=after) is not None


def test_one_address_is_locked_after_its_limit_across_usernames(ana: Services) -> None:
    for n in range(throttle.ADDRESS_LIMIT):
        assert attempt(ana, f"guess-{n}", WRONG) is None
    assert "Wait 1 minute" in refusal(ana, "ana", PASSWORD)
    # From another address, ana signs in.
    assert attempt(ana, "ana", PASSWORD, address="203.0.113.9") is not None


def test_a_refused_attempt_does_not_check_the_password(
    ana: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(throttle.USER_LIMIT):
        attempt(ana, "ana", WRONG)
    verified: list[str] = []
    real_verify = PasswordHasher.verify

    def counting(self: PasswordHasher, stored: str, password: str) -> bool:
        verified.append(password)
        return real_verify(self, stored, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)
    refusal(ana, "ana", PASSWORD)
    assert verified == []
    # Nor before the sign-in's transaction, where the pages verify it (verify_before_writing).
    with pytest.raises(Throttling):
        users.verify_before_writing(ana, username="ana", password=PASSWORD, address=OFFICE)
    assert verified == []
    # An unknown name, not locked, costs an Argon2 verification as a user's wrong password does.
    assert attempt(ana, "nobody-here", WRONG) is None
    assert verified == [WRONG]


def test_neither_names_nor_addresses_are_stored_in_clear(ana: Services) -> None:
    attempt(ana, "zoe.hart@example.org", WRONG, address="192.0.2.44")
    with ana.read() as tx:
        rows = tx.conn.execute(signin_throttle.select()).all()
    assert sorted(r.kind for r in rows) == ["address", "pair", "user"]
    dump = repr(rows).encode()
    for clear in (b"zoe.hart", b"192.0.2.44"):
        assert clear not in dump
    packed = socket.inet_aton("192.0.2.44")
    assert all(packed not in bytes(r.subject_digest) for r in rows)


def test_an_admin_setting_a_new_password_lifts_the_lock(ana: Services) -> None:
    for _ in range(throttle.USER_LIMIT):
        attempt(ana, "ana", WRONG)
    with ana.write() as tx:
        users.set_password(tx, username="ana", password="a fresh password")
    assert attempt(ana, "ana", "a fresh password") is not None


def test_a_wrong_current_password_counts_as_a_failed_sign_in(ana: Services) -> None:
    token = attempt(ana, "ana", PASSWORD)
    assert token is not None
    for _ in range(throttle.USER_LIMIT):
        with ana.write() as tx:
            assert not users.change_own_password(
                tx,
                username="ana",
                current=WRONG,
                new="a fresh password",
                session=token.token,
                address=OFFICE,
            )
    refusal(ana, "ana", PASSWORD)


def test_rows_untouched_for_a_day_are_forgotten(ana: Services) -> None:
    start = now(ana)
    attempt(ana, "ana", WRONG, at=start)
    attempt(ana, "bo", WRONG, at=start + throttle.FORGET_AFTER + timedelta(seconds=1))
    with ana.read() as tx:
        rows = tx.conn.execute(signin_throttle.select()).all()
    # Only bo's attempt's rows (its name from the address, its name, the address): ana's were
    # forgotten; the address's row is bo's attempt's.
    assert len(rows) == 3
    assert all(r.updated_at > start + throttle.FORGET_AFTER for r in rows)


def test_guesses_from_elsewhere_do_not_lock_the_user_out(ana: Services) -> None:
    """A username is counted per address: anyone who knew an administrator's name could
    otherwise keep them out for good, five guesses an hour."""
    attacker = "203.0.113.66"
    for _ in range(throttle.USER_LIMIT):
        assert attempt(ana, "ana", WRONG, address=attacker) is None
    refusal(ana, "ana", PASSWORD, address=attacker)
    assert attempt(ana, "ana", PASSWORD, address=OFFICE) is not None
    # Her success from the office does not lift the lock of the guesses from elsewhere.
    refusal(ana, "ana", PASSWORD, address=attacker)


# PostgreSQL only: SQLite's one writer runs sign-ins one after another anyway.
@pytest.mark.postgres
@pytest.mark.parametrize("settings", ["postgres"], indirect=True)
def test_parallel_guesses_are_counted_one_after_another(ana: Services) -> None:
    """The lock was read before the password was checked and counted after: parallel guesses
    all passed the check before any was counted (16 of 16 checked, against a limit of 5)."""
    guesses = 3 * throttle.USER_LIMIT

    def guess() -> list[Any]:
        try:
            return [attempt(ana, "ana", WRONG)]
        except Throttling:
            return ["refused"]

    outcomes = race([guess] * guesses)
    assert outcomes.count(None) == throttle.USER_LIMIT
    assert outcomes.count("refused") == guesses - throttle.USER_LIMIT


def test_guessing_spread_over_many_addresses_locks_the_name(ana: Services) -> None:
    for n in range(throttle.USER_GLOBAL_LIMIT):
        assert attempt(ana, "ana", WRONG, address=f"198.51.100.{n}") is None
    refusal(ana, "ana", PASSWORD, address="203.0.113.200")
    # An administrator's new password lifts it.
    with ana.write() as tx:
        users.set_password(tx, username="ana", password="a fresh password")
    assert attempt(ana, "ana", "a fresh password", address="203.0.113.200") is not None


def test_the_password_is_verified_with_no_write_transaction_open(
    ana: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Argon2 in the sign-in's write transaction held SQLite's one writer lock: a flood of
    sign-ins stalled every API write. The attempt is counted in a short transaction of its own,
    Argon2 runs after it, and the sign-in's transaction settles the outcome."""
    real_verify = PasswordHasher.verify
    written: list[bool] = []

    def verify_beside_a_write(self: PasswordHasher, stored: str, password: str) -> bool:
        # Another thread writes while Argon2 runs: it would wait behind an open write.
        def write() -> None:
            with ana.write() as tx:
                tx.conn.execute(signin_throttle.select()).all()
            written.append(True)

        other = threading.Thread(target=write)
        other.start()
        other.join(30)
        return real_verify(self, stored, password)

    monkeypatch.setattr(PasswordHasher, "verify", verify_beside_a_write)
    checked = users.verify_before_writing(ana, username="ana", password=PASSWORD, address=OFFICE)
    wrong = users.verify_before_writing(ana, username="ana", password=WRONG, address=OFFICE)
    assert written == [True, True]
    monkeypatch.undo()
    assert checked.matches and not wrong.matches
    with ana.write() as tx:
        assert (
            users.sign_in(tx, username="ana", password=WRONG, address=OFFICE, checked=wrong) is None
        )
    with ana.write() as tx:
        assert (
            users.sign_in(tx, username="ana", password=PASSWORD, address=OFFICE, checked=checked)
            is not None
        )
    # A check made before the password changed does not sign in with the old one.
    stale = users.verify_before_writing(ana, username="ana", password=PASSWORD, address=OFFICE)
    with ana.write() as tx:
        users.set_password(tx, username="ana", password="a fresh password")
    with ana.write() as tx:
        assert (
            users.sign_in(tx, username="ana", password=PASSWORD, address=OFFICE, checked=stale)
            is None
        )
