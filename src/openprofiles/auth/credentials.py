"""API credentials: access key ids with a sealed secret and a role.

The secret must be available in clear to verify SigV4 signatures, so it is sealed under the
server's system key rather than hashed; a copy of the database alone does not reveal it.

Servers keep the credentials they found in memory (`SecretCache`). A credential row is only ever
inserted or deleted, never changed, so a cached one is stale only once its row is gone: each
cache asks which of its keys are still stored at most every `REVOCATION_CHECK_SECONDS`, and a
key revoked anywhere (another worker, another server, the CLI) stops working everywhere within
about that time. One request at a time runs that check; the others that need it meanwhile wait
for its result (`SecretCache.get`).
"""

from __future__ import annotations

import secrets
import string
import threading
import time
import weakref
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select

from openprofiles.blocking import avoid_blocking
from openprofiles.context import Tx
from openprofiles.crypto.domain_keys import KeyManager
from openprofiles.crypto.errors import DecryptionError
from openprofiles.errors import BadRequest, NotFound
from openprofiles.store.in_lists import in_chunks
from openprofiles.store.schema import credential

ROLES = ("admin", "agent")
_TABLE = "credential"
_ID_ALPHABET = string.ascii_uppercase + string.digits


@dataclass(frozen=True)
class IssuedCredential:
    access_key_id: str
    secret_access_key: str
    role: str


@dataclass(frozen=True)
class CredentialInfo:
    access_key_id: str
    role: str
    created_at: datetime


def create_credential(tx: Tx, *, role: str) -> IssuedCredential:
    if role not in ROLES:
        raise BadRequest(f"Role must be one of {', '.join(ROLES)}.")
    # "OP" marks OpenProfiles keys the way "AKIA" marks AWS ones; 20 characters like AWS's.
    access_key_id = "OP" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(18))
    secret = secrets.token_urlsafe(30)
    sealed = tx.services.keys.system_cipher().seal_record(_TABLE, access_key_id, {"secret": secret})
    tx.conn.execute(
        insert(credential).values(
            access_key_id=access_key_id, secret_sealed=sealed, role=role, created_at=tx.now
        )
    )
    return IssuedCredential(access_key_id, secret, role)


def secret_opens(keys: KeyManager, *, access_key_id: str, secret_sealed: bytes) -> bool:
    """Whether the server's system cipher opens a stored secret: False when the keyring is not
    the one the secret was sealed under (replaced, made anew, or another installation's)."""
    try:
        keys.system_cipher().open_record(_TABLE, access_key_id, secret_sealed)
    except DecryptionError:
        return False
    return True


def find_secret(tx: Tx, *, access_key_id: str) -> tuple[str, str] | None:
    """(secret, role) of an access key, or None when the key is unknown."""
    row = tx.conn.execute(
        select(credential.c.secret_sealed, credential.c.role).where(
            credential.c.access_key_id == access_key_id
        )
    ).first()
    if row is None:
        return None
    payload = tx.services.keys.system_cipher().open_record(
        _TABLE, access_key_id, bytes(row.secret_sealed)
    )
    return payload["secret"], row.role


def stored_credentials(tx: Tx, access_key_ids: Sequence[str]) -> set[str]:
    """Which of `access_key_ids` are still stored (not revoked): ids only, nothing opened."""
    found: set[str] = set()
    for chunk in in_chunks(access_key_ids):
        found.update(
            tx.conn.execute(
                select(credential.c.access_key_id).where(credential.c.access_key_id.in_(chunk))
            ).scalars()
        )
    return found


def list_credentials(tx: Tx) -> list[CredentialInfo]:
    rows = tx.conn.execute(
        select(credential.c.access_key_id, credential.c.role, credential.c.created_at).order_by(
            credential.c.created_at
        )
    )
    return [CredentialInfo(r.access_key_id, r.role, r.created_at) for r in rows]


def delete_credential(tx: Tx, *, access_key_id: str) -> None:
    """Revoke a credential. This process's caches stop using it at once (`SecretCache.forget`);
    other processes (a server's other workers, a server the CLI revoked it beside) within about
    `REVOCATION_CHECK_SECONDS` of the commit, when their caches next see the row gone."""
    tx.erased()
    result = tx.conn.execute(delete(credential).where(credential.c.access_key_id == access_key_id))
    if result.rowcount == 0:
        raise NotFound(f"No credential has the access key id {access_key_id}.")
    for cache in list(_CACHES):
        cache.forget(access_key_id)


# Every SecretCache of this process, for delete_credential to reach (the app's authenticator's,
# which the web pages that delete credentials cannot see).
_CACHES: weakref.WeakSet[SecretCache] = weakref.WeakSet()


# How often at most a cache asks the database which of its credentials are still stored. A key
# revoked in another process (a server's other worker, another server, the CLI) works there for
# about this long after the revoking commit: for a service holding customers' personal data that
# must be "almost at once". Shorter costs more: the check is a read transaction (on the event
# loop, a move of one request to a worker thread), once per interval per process with a cached
# key, against none per request, which is what the cache is for (a lookup per request was the
# largest cost of a small API request).
REVOCATION_CHECK_SECONDS = 1.0


class SecretCache:
    """Known credentials, kept in memory for a short time.

    Looking a secret up (a read transaction and an AES-GCM open) would otherwise be the largest
    cost of a small API request. Only found keys are cached, so a new credential works at once;
    a revoked one stops working at once in the process that revoked it (`forget`), and within
    about `REVOCATION_CHECK_SECONDS` in every other server process: `get`, given `stored` (which
    of some keys are still stored), asks it about every cached key at most that often, and drops
    those that are gone. `clock` is monotonic seconds; tests pass their own.

    The check is single-flight: when it falls due, one request runs it and the others arriving
    meanwhile wait for its result, rather than each running one of its own (under load, every
    request of the moment would otherwise read the database, each moved off the event loop
    first). None is answered from a cache whose check is overdue: when the check fails (a
    database error, or a move off the event loop), it is still due, and one of the requests that
    waited for it (or the next request) runs it again.
    """

    def __init__(
        self,
        ttl_seconds: float = 30.0,
        max_entries: int = 10_000,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._entries: dict[str, tuple[float, str, str]] = {}
        # Keys revoked in this process: until when each is looked up at every use, uncached.
        self._forgotten: dict[str, float] = {}
        # When the cached keys are next checked against the database (`get`'s `stored`).
        self._check_due = float("-inf")
        # Whether a request is running that check; the others that need it wait on `_checked`.
        self._checking = False
        self._checked = threading.Condition(threading.Lock())
        _CACHES.add(self)

    def forget(self, access_key_id: str) -> None:
        """Stop using a cached credential now (it is being revoked). For `ttl_seconds` the key
        is looked up at every use and not cached: a request that looks it up while the revoking
        transaction has not committed yet finds it still there, and must not cache it again
        for the cache's time. (A process that did not revoke it has the same race with no
        `forget`: a key it cached from a read before the commit goes at its next check.)"""
        self._forgotten[access_key_id] = self._clock() + self._ttl
        self._entries.pop(access_key_id, None)

    def get(
        self,
        access_key_id: str,
        load: Callable[[], tuple[str, str] | None],
        stored: Callable[[Sequence[str]], Collection[str]] | None = None,
    ) -> tuple[str, str] | None:
        """(secret, role) of a key, from the cache or `load`. With `stored`, the cached keys
        are checked against the database first when the last check is older than
        `REVOCATION_CHECK_SECONDS`; without it, only this process's revocations are seen."""
        now = self._clock()
        if stored is not None and now >= self._check_due and self._entries:
            self._check(now, stored)
        if self._forgotten:
            until = self._forgotten.get(access_key_id)
            if until is not None and until > now:
                return load()
            if until is not None:
                self._forgotten.pop(access_key_id, None)
        entry = self._entries.get(access_key_id)
        if entry is not None and entry[0] > now:
            return entry[1], entry[2]
        found = load()
        if found is None:
            self._entries.pop(access_key_id, None)
            return None
        if len(self._entries) >= self._max:
            self._entries.clear()
        if not self._entries:
            # The one entry is as fresh as a check (read after `now`): none due before then.
            self._check_due = now + REVOCATION_CHECK_SECONDS
        self._entries[access_key_id] = (now + self._ttl, found[0], found[1])
        return found

    def _check(self, now: float, stored: Callable[[Sequence[str]], Collection[str]]) -> None:
        """Return once the cached keys have been checked no earlier than `now`'s interval: by
        this caller (`_drop_revoked`), or by the one whose check was under way when it came.
        Raises what the check raised when this caller ran it."""
        with self._checked:
            while now >= self._check_due and self._checking:
                # Waiting here may take as long as a read; on the event loop that would stall
                # every request of the process, so the request moves to a worker thread, as
                # running the check itself would (`stored` reads).
                avoid_blocking("waiting for another request's revocation check")
                self._checked.wait()
            if now < self._check_due:
                return  # a check that came after this request's interval opened is enough
            self._checking = True
        try:
            self._drop_revoked(now, stored)
        finally:
            # On success `_check_due` has moved on and the waiters return; on failure it has
            # not, and one of them (or the next request) runs the check again.
            with self._checked:
                self._checking = False
                self._checked.notify_all()

    def _drop_revoked(self, now: float, stored: Callable[[Sequence[str]], Collection[str]]) -> None:
        cached = list(self._entries)
        # May raise (WouldBlock on the event loop, a database error): the check is then still
        # due, so no request is answered from an unchecked cache.
        present = set(stored(cached))
        # Due again from the time before the read: an entry cached from a read that came before
        # a revoking commit this read did not see yet is dropped by the next check.
        self._check_due = now + REVOCATION_CHECK_SECONDS
        for access_key_id in cached:
            if access_key_id not in present:
                self._entries.pop(access_key_id, None)
