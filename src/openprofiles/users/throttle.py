"""How many sign-ins may fail before the web pages stop trying: per username and per client
address, kept in the database (table `signin_throttle`) so every server process on it counts the
same failures.

After USER_LIMIT failures for one username within WINDOW (ADDRESS_LIMIT from one client
address), further attempts for it are refused, without checking the password, for FIRST_LOCK;
each lock that follows lasts twice the one before, up to LONGEST_LOCK, until a day passes with
no failure (or, for a username, until a sign-in succeeds). A username is counted whether or not
it is a user's, under the digest sign-in computes anyway: the answer never says whether a user
exists. Neither the name nor the address is stored in clear: both are blind-index digests under
the system cipher (an unkeyed hash of an IPv4 address is reversed by trying all 2^32).

A shared address (a proxy, an office's NAT) counts its users' failures together, hence its
higher limit.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import and_, delete, insert, or_, select, update

from openprofiles.context import Tx
from openprofiles.store.schema import signin_throttle

USER_LIMIT = 5
ADDRESS_LIMIT = 20
WINDOW = timedelta(minutes=15)
FIRST_LOCK = timedelta(minutes=1)
LONGEST_LOCK = timedelta(hours=1)
# A subject with no failure for this long starts afresh (its row is deleted).
FORGET_AFTER = timedelta(days=1)

USER = "user"
ADDRESS = "address"
ADDRESS_KEY_NAME = "@signInAddress"


def address_digest(tx: Tx, address: str) -> bytes:
    return tx.services.keys.system_cipher().digest(ADDRESS_KEY_NAME, address)


def _subjects(user_digest: bytes, address: bytes | None) -> list[tuple[str, bytes]]:
    subjects = [(USER, user_digest)]
    if address is not None:
        subjects.append((ADDRESS, address))
    return subjects


def wait_needed(tx: Tx, *, user_digest: bytes, address: bytes | None) -> timedelta | None:
    """How long the username (or the address) must wait before it may try again; None when it
    may try now."""
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
    tx.conn.execute(
        delete(signin_throttle).where(
            signin_throttle.c.updated_at <= tx.now - FORGET_AFTER,
            or_(signin_throttle.c.locked_until.is_(None), signin_throttle.c.locked_until <= tx.now),
        )
    )
    for kind, digest in _subjects(user_digest, address):
        _count(tx, kind, digest, USER_LIMIT if kind == USER else ADDRESS_LIMIT)


def forget_user(tx: Tx, *, user_digest: bytes) -> None:
    """A sign-in succeeded: the username's failures are forgotten (the address's are not, or
    one account of an attacker's own would let them guess others' passwords unhindered)."""
    tx.conn.execute(
        delete(signin_throttle).where(
            signin_throttle.c.kind == USER, signin_throttle.c.subject_digest == user_digest
        )
    )


def _count(tx: Tx, kind: str, digest: bytes, limit: int) -> None:
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
                failures=1,
                window_start=tx.now,
                lockouts=0,
                locked_until=None,
                updated_at=tx.now,
            )
        )
        return
    failures, window_start = row.failures + 1, row.window_start
    if window_start <= tx.now - WINDOW:
        failures, window_start = 1, tx.now
    values: dict[str, object] = {"failures": failures, "window_start": window_start}
    if failures >= limit:
        values.update(
            failures=0,
            window_start=tx.now,
            lockouts=row.lockouts + 1,
            locked_until=tx.now + lock_length(row.lockouts),
        )
    tx.conn.execute(update(signin_throttle).where(*where).values(updated_at=tx.now, **values))


def lock_length(earlier_lockouts: int) -> timedelta:
    """How long a subject locked `earlier_lockouts` times before is locked now."""
    return min(FIRST_LOCK * 2 ** min(earlier_lockouts, 16), LONGEST_LOCK)
