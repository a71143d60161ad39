"""How many sign-ins may fail before the web pages stop trying: per username from one client
address, and per client address, kept in the database (table `signin_throttle`) so every server
process on it counts the same failures.

After USER_LIMIT failures for one username from one address within WINDOW (ADDRESS_LIMIT from
one address, whatever the names; USER_GLOBAL_LIMIT for one username from all addresses
together), further attempts are refused, without checking the password, for FIRST_LOCK; each
lock that follows lasts twice the one before, up to LONGEST_LOCK, until a day passes with no
failure (or, for a username from one address, until a sign-in from there succeeds; or an
administrator sets a new password, or runs `openprofiles users unlock`). The username is
counted per address first so that a few guesses from elsewhere cannot lock its owner out:
anyone who knew an administrator's name could otherwise keep them out with five guesses an
hour. Its count over all addresses, ten times higher, still bounds guessing spread over many
addresses.

A username is counted whether or not it is a user's, under the digest sign-in computes anyway:
the answer never says whether a user exists. Neither the name nor the address is stored in
clear: both are blind-index digests under the system cipher (an unkeyed hash of an IPv4 address
is reversed by trying all 2^32), and a pair's digest is a hash of the two.

An attempt first takes its subjects' locks (`hold`: advisory locks on PostgreSQL; SQLite's one
writer already serialises sign-ins), so concurrent attempts are counted one after another: each
sees the failures before it, and no burst of parallel guesses passes the limit.

The web pages check a password outside any write transaction (Argon2 would hold SQLite's one
writer), so they count the attempt before checking it (`reserve`): counted as a failure, locking
what it takes to the limit, so that a burst of parallel attempts gets no more Argon2 runs than
its subjects' remaining allowance (100 parallel guesses from one address used to run 100, all
read before any was counted). A password that turns out right gives the reservation back
(`release`): the username's failures from that address are forgotten, as after any success, and
the address's and the username's own counts lose the one the reservation added (and the lock it
set, if it set one). An attempt the pages then find no Argon2 slot for is given back whole
(`hand_back`): no password was checked. An attempt whose check never ends (the process stopped)
stays a failure.

A shared address (a proxy, an office's NAT) counts its users' failures together, hence its
higher limit. An IPv6 client counts as its /64 (`client_key`): one client holds a whole /64.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, insert, or_, select, update

from openprofiles.context import Tx
from openprofiles.store.advisory import take_locks
from openprofiles.store.schema import signin_throttle

USER_LIMIT = 5
# A username's failures from every address together: guessing spread over many addresses.
USER_GLOBAL_LIMIT = 50
ADDRESS_LIMIT = 20
WINDOW = timedelta(minutes=15)
FIRST_LOCK = timedelta(minutes=1)
LONGEST_LOCK = timedelta(hours=1)
# A subject with no failure for this long starts afresh (its row is deleted).
FORGET_AFTER = timedelta(days=1)

USER = "user"
# A username from one client address.
PAIR = "pair"
ADDRESS = "address"
ADDRESS_KEY_NAME = "@signInAddress"
# An IPv6 client is counted by its network of this many bits (client_key).
IPV6_PREFIX = 64


def address_digest(tx: Tx, address: str) -> bytes:
    """The digest an attempt from the client `address` is counted under (client_key)."""
    return tx.services.keys.system_cipher().digest(ADDRESS_KEY_NAME, client_key(address))


def client_key(address: str) -> str:
    """What the throttle counts a client address as: an IPv4 address on its own, an IPv6 one by
    its /64. A /64 is what one IPv6 client gets (a home or office line, a cloud VM; SLAAC and
    privacy addresses pick the last 64 bits at will), so per address one client had 2^64
    budgets of guesses; per /64 it has one, as an IPv4 client has. An IPv4 address carried in
    IPv6 (::ffff:192.0.2.1, from a dual-stack socket) is that IPv4 address. Text that is no IP
    address (a test client's name, a Unix socket's path) is counted as it is."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        # By its integer: the text's zone ("%eth0"), if any, is no part of the network.
        return str(ipaddress.IPv6Network((int(ip), IPV6_PREFIX), strict=False))
    return str(ip)


def _pair_digest(user_digest: bytes, address: bytes) -> bytes:
    # Both parts are keyed digests already: a plain hash of them reveals neither.
    return hashlib.sha256(b"signin-pair\x00" + user_digest + address).digest()[:16]


def _subjects(user_digest: bytes, address: bytes | None) -> list[tuple[str, bytes]]:
    """(kind, subject digest) of what an attempt is counted against."""
    subjects = [(PAIR, _pair_digest(user_digest, address or b"")), (USER, user_digest)]
    if address is not None:
        subjects.append((ADDRESS, address))
    return subjects


def _limit(kind: str) -> int:
    return {PAIR: USER_LIMIT, USER: USER_GLOBAL_LIMIT, ADDRESS: ADDRESS_LIMIT}[kind]


def hold(tx: Tx, *, user_digest: bytes, address: bytes | None) -> None:
    """Take the attempt's subjects' locks until the transaction ends, before `wait_needed`."""
    take_locks(tx, [("signin", kind, digest) for kind, digest in _subjects(user_digest, address)])


def wait_needed(tx: Tx, *, user_digest: bytes, address: bytes | None) -> timedelta | None:
    """How long the username (from this address) or the address must wait before it may try
    again; None when it may try now."""
    keys = _subjects(user_digest, address)
    ends = tx.conn.execute(
        select(signin_throttle.c.locked_until).where(
            or_(
                *(
                    and_(signin_throttle.c.kind == k, signin_throttle.c.subject_digest == d)
                    for k, d in keys
                )
            ),
            signin_throttle.c.locked_until > tx.now,
        )
    ).scalars()
    latest = max(ends, default=None)
    return latest - tx.now if latest is not None else None


def record_failure(tx: Tx, *, user_digest: bytes, address: bytes | None) -> None:
    """Count a failed sign-in against the username and the address, locking either that
    reached its limit."""
    _record(tx, user_digest=user_digest, address=address)


@dataclass(frozen=True)
class _Before:
    """A subject's count as it was before an attempt's reservation locked it."""

    kind: str
    digest: bytes
    failures: int
    window_start: datetime
    lockouts: int
    locked_until: datetime | None
    # The lock the reservation set: given back only while it is still that one.
    set_until: datetime


@dataclass(frozen=True)
class Reservation:
    """An attempt counted as a failure before its password is checked (`reserve`), to give back
    if the password is right (`release`)."""

    user_digest: bytes
    address: bytes | None
    at: datetime
    locked: tuple[_Before, ...]


def reserve(tx: Tx, *, user_digest: bytes, address: bytes | None) -> Reservation:
    """Count an attempt whose password is about to be checked as a failure (record_failure),
    under the locks `hold` took and once `wait_needed` let it through (the module docstring
    says why)."""
    locked = _record(tx, user_digest=user_digest, address=address)
    return Reservation(user_digest, address, tx.now, tuple(locked))


def release(tx: Tx, reservation: Reservation) -> None:
    """Give back `reservation`, whose password was right, under the locks `hold` took: the
    username's failures from the address are forgotten (forget_user), and the username's and
    the address's counts lose the failure the reservation added, or the lock it set."""
    forget_user(tx, user_digest=reservation.user_digest, address=reservation.address)
    _give_back(tx, reservation, (USER, ADDRESS))


def hand_back(tx: Tx, reservation: Reservation) -> None:
    """Give back `reservation`, whose password was never checked (the pages had no Argon2
    slot free for it), under the locks `hold` took: every count it added to loses that failure,
    or the lock it set, the username's from the address too (a right password forgets those,
    release; an unchecked one says nothing of them)."""
    _give_back(tx, reservation, (PAIR, USER, ADDRESS))


def _give_back(tx: Tx, reservation: Reservation, kinds: tuple[str, ...]) -> None:
    """The reservation's failure taken back from its subjects of `kinds`."""
    locked = {(b.kind, b.digest): b for b in reservation.locked}
    for kind, digest in _subjects(reservation.user_digest, reservation.address):
        if kind not in kinds:
            continue
        where = [signin_throttle.c.kind == kind, signin_throttle.c.subject_digest == digest]
        before = locked.get((kind, digest))
        if before is not None:
            tx.conn.execute(
                update(signin_throttle)
                .where(*where, signin_throttle.c.locked_until == before.set_until)
                .values(
                    failures=before.failures,
                    window_start=before.window_start,
                    lockouts=before.lockouts,
                    locked_until=before.locked_until,
                )
            )
            continue
        # Not when the count started again since (a new window, a lock): the reservation's
        # failure is no longer in it.
        tx.conn.execute(
            update(signin_throttle)
            .where(
                *where,
                signin_throttle.c.failures > 0,
                signin_throttle.c.window_start <= reservation.at,
            )
            .values(failures=signin_throttle.c.failures - 1)
        )


def _record(tx: Tx, *, user_digest: bytes, address: bytes | None) -> list[_Before]:
    """record_failure; the subjects it locked, as they were before."""
    tx.conn.execute(
        delete(signin_throttle).where(
            signin_throttle.c.updated_at <= tx.now - FORGET_AFTER,
            or_(signin_throttle.c.locked_until.is_(None), signin_throttle.c.locked_until <= tx.now),
        )
    )
    locked = []
    for kind, digest in _subjects(user_digest, address):
        before = _count(tx, kind, digest, _limit(kind), None if kind == ADDRESS else user_digest)
        if before is not None:
            locked.append(before)
    return locked


def forget_all(tx: Tx) -> int:
    """Forget every count and lock (`openprofiles users unlock --all`); how many were kept."""
    return int(tx.conn.execute(delete(signin_throttle)).rowcount)


def forget_user(tx: Tx, *, user_digest: bytes, address: bytes | None = None) -> None:
    """Forget the username's failures: from `address` when a sign-in from there succeeded
    (the address's own are not forgotten, or one account of an attacker's own would let them
    guess others' passwords unhindered); from everywhere when `address` is None (an
    administrator set a new password)."""
    if address is not None:
        # The username's count over all addresses stays: a sign-in of its owner does not end a
        # guessing spread over many addresses.
        condition = and_(
            signin_throttle.c.kind == PAIR,
            signin_throttle.c.subject_digest == _pair_digest(user_digest, address),
        )
    else:
        condition = signin_throttle.c.user_digest == user_digest
    tx.conn.execute(delete(signin_throttle).where(condition))


def _count(
    tx: Tx, kind: str, digest: bytes, limit: int, user_digest: bytes | None
) -> _Before | None:
    """Count a failure of the subject; how it was before when this failure locked it."""
    where = (signin_throttle.c.kind == kind, signin_throttle.c.subject_digest == digest)
    # FOR UPDATE (PostgreSQL): concurrent failures are counted one after another, none lost. Two
    # first failures both inserting: one loses on the primary key and runs again
    # (store.conflicts), then finds the other's row.
    row = tx.conn.execute(select(signin_throttle).where(*where).with_for_update()).first()
    if row is None:
        tx.conn.execute(
            insert(signin_throttle).values(
                kind=kind,
                subject_digest=digest,
                user_digest=user_digest,
                failures=1,
                window_start=tx.now,
                lockouts=0,
                locked_until=None,
                updated_at=tx.now,
            )
        )
        return None
    failures, window_start = row.failures + 1, row.window_start
    if window_start <= tx.now - WINDOW:
        failures, window_start = 1, tx.now
    values: dict[str, object] = {"failures": failures, "window_start": window_start}
    before = None
    if failures >= limit:
        locked_until = tx.now + lock_length(row.lockouts)
        values.update(
            failures=0,
            window_start=tx.now,
            lockouts=row.lockouts + 1,
            locked_until=locked_until,
        )
        before = _Before(
            kind,
            digest,
            failures - 1,
            window_start,
            row.lockouts,
            row.locked_until,
            locked_until,
        )
    tx.conn.execute(update(signin_throttle).where(*where).values(updated_at=tx.now, **values))
    return before


def lock_length(earlier_lockouts: int) -> timedelta:
    """How long a subject locked `earlier_lockouts` times before is locked now."""
    return min(FIRST_LOCK * 2 ** min(earlier_lockouts, 16), LONGEST_LOCK)
