"""API credentials: access key ids with a sealed secret, a role and a domain scope.

The secret must be available in clear to verify SigV4 signatures, so it is sealed under the
server's system key rather than hashed; a copy of the database alone does not reveal it. The
scope (auth.scope: the domains the key may act on, or every domain) is not secret.

Servers keep the credentials they found in memory (`SecretCache`). Of a credential row only the
scope ever changes (`set_credential_scope`); otherwise it is inserted or deleted. So a cached
one is stale once its row is gone or its scope changed: each cache asks which of its keys are
still stored as cached at most every `REVOCATION_CHECK_SECONDS` (`stored_scopes`: ids and
scopes, nothing opened), and a key revoked or rescoped anywhere (another worker, another server,
the CLI) is refused, or held to its new scope, everywhere within about that time. The check
runs in a thread of its own, one at a time, started by the request that finds it due; no
request waits for it (`SecretCache`).
"""

from __future__ import annotations

import logging
import re
import secrets
import string
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Generic, NamedTuple, TypeVar

from sqlalchemy import delete, insert, select, update

from openprofiles.auth.scope import checked_scope, loaded_scope, stored_scope
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
# What an access key id can be: AWS's shape (IAM's AccessKeyId, 16 to 128 word characters, in
# ASCII), which ours ("OP" and 18 letters or digits) has. Anything else is no key of ours and
# is refused before the database is asked: PostgreSQL refuses a NUL in text with an error (a
# 500 where SQLite found no row), and a lookup of garbage costs a read for nothing.
_ACCESS_KEY_ID_SHAPE = re.compile(r"[A-Za-z0-9_]{16,128}")

log = logging.getLogger(__name__)

# What a cache keeps of a credential (the server's: StoredCredential).
V = TypeVar("V")


@dataclass(frozen=True)
class IssuedCredential:
    access_key_id: str
    secret_access_key: str
    role: str
    # The domains it may act on (auth.scope); None: every domain.
    scope: frozenset[str] | None = None


@dataclass(frozen=True)
class CredentialInfo:
    access_key_id: str
    role: str
    created_at: datetime
    scope: frozenset[str] | None = None


class StoredCredential(NamedTuple):
    """What a request's check needs of a key (`find_secret`)."""

    secret: str
    role: str
    scope: frozenset[str] | None


def create_credential(
    tx: Tx, *, role: str, domains: Iterable[str] | None = None
) -> IssuedCredential:
    """A new access key of `role`, limited to `domains` when given (auth.scope; None: every
    domain). A scope may name a domain that does not exist yet: CreateDomain of it is then
    allowed."""
    if role not in ROLES:
        raise BadRequest(f"Role must be one of {', '.join(ROLES)}.")
    scope = checked_scope(domains)
    # "OP" marks OpenProfiles keys the way "AKIA" marks AWS ones; 20 characters like AWS's.
    access_key_id = "OP" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(18))
    secret = secrets.token_urlsafe(30)
    sealed = tx.services.keys.system_cipher().seal_record(_TABLE, access_key_id, {"secret": secret})
    tx.conn.execute(
        insert(credential).values(
            access_key_id=access_key_id,
            secret_sealed=sealed,
            role=role,
            created_at=tx.now,
            domain_scope=stored_scope(scope),
        )
    )
    return IssuedCredential(access_key_id, secret, role, scope)


def secret_opens(keys: KeyManager, *, access_key_id: str, secret_sealed: bytes) -> bool:
    """Whether the server's system cipher opens a stored secret: False when the keyring is not
    the one the secret was sealed under (replaced, made anew, or another installation's)."""
    try:
        keys.system_cipher().open_record(_TABLE, access_key_id, secret_sealed)
    except DecryptionError:
        return False
    return True


def could_be_access_key_id(text: str) -> bool:
    """Whether `text` has the shape of an access key id (16 to 128 ASCII letters, digits or
    '_', as AWS's): one that has not is unknown without a lookup."""
    return _ACCESS_KEY_ID_SHAPE.fullmatch(text) is not None


def find_secret(tx: Tx, *, access_key_id: str) -> StoredCredential | None:
    """The secret, role and scope of an access key, or None when the key is unknown."""
    if not could_be_access_key_id(access_key_id):
        return None
    row = tx.conn.execute(
        select(credential.c.secret_sealed, credential.c.role, credential.c.domain_scope).where(
            credential.c.access_key_id == access_key_id
        )
    ).first()
    if row is None:
        return None
    payload = tx.services.keys.system_cipher().open_record(
        _TABLE, access_key_id, bytes(row.secret_sealed)
    )
    return StoredCredential(payload["secret"], row.role, loaded_scope(row.domain_scope))


def stored_scopes(tx: Tx, access_key_ids: Sequence[str]) -> dict[str, frozenset[str] | None]:
    """The scope of each of `access_key_ids` still stored (not revoked): ids and scopes only,
    nothing opened."""
    found: dict[str, frozenset[str] | None] = {}
    for chunk in in_chunks(access_key_ids):
        rows = tx.conn.execute(
            select(credential.c.access_key_id, credential.c.domain_scope).where(
                credential.c.access_key_id.in_(chunk)
            )
        )
        found.update((r.access_key_id, loaded_scope(r.domain_scope)) for r in rows)
    return found


def list_credentials(tx: Tx) -> list[CredentialInfo]:
    rows = tx.conn.execute(
        select(
            credential.c.access_key_id,
            credential.c.role,
            credential.c.created_at,
            credential.c.domain_scope,
        ).order_by(credential.c.created_at)
    )
    return [
        CredentialInfo(r.access_key_id, r.role, r.created_at, loaded_scope(r.domain_scope))
        for r in rows
    ]


def set_credential_scope(
    tx: Tx, *, access_key_id: str, domains: Iterable[str] | None
) -> frozenset[str] | None:
    """Limit a credential to `domains` (None: every domain); the scope set. This process's
    caches look the key up again at once (`SecretCache.forget`); other processes hold it to the
    new scope within about `REVOCATION_CHECK_SECONDS` of the commit, as for a revocation: their
    caches' check finds the scope changed and drops the key, which the next request looks up."""
    scope = checked_scope(domains)
    if not could_be_access_key_id(access_key_id):
        raise NotFound(f"No credential has the access key id {access_key_id}.")
    result = tx.conn.execute(
        update(credential)
        .where(credential.c.access_key_id == access_key_id)
        .values(domain_scope=stored_scope(scope))
    )
    if result.rowcount == 0:
        raise NotFound(f"No credential has the access key id {access_key_id}.")
    _forget_everywhere(access_key_id)
    return scope


def delete_credential(tx: Tx, *, access_key_id: str) -> None:
    """Revoke a credential. This process's caches stop using it at once (`SecretCache.forget`);
    other processes (a server's other workers, a server the CLI revoked it beside) within about
    `REVOCATION_CHECK_SECONDS` of the commit, when their caches next see the row gone."""
    if not could_be_access_key_id(access_key_id):
        raise NotFound(f"No credential has the access key id {access_key_id}.")
    tx.erased()
    result = tx.conn.execute(delete(credential).where(credential.c.access_key_id == access_key_id))
    if result.rowcount == 0:
        raise NotFound(f"No credential has the access key id {access_key_id}.")
    _forget_everywhere(access_key_id)


def _forget_everywhere(access_key_id: str) -> None:
    for cache in list(_CACHES):
        cache.forget(access_key_id)


# Every SecretCache of this process, for delete_credential to reach (the app's authenticator's,
# which the web pages that delete credentials cannot see).
_CACHES: weakref.WeakSet[SecretCache] = weakref.WeakSet()


# How often at most a cache asks the database which of its credentials are still stored. A key
# revoked in another process (a server's other worker, another server, the CLI) works there for
# about this long after the revoking commit, plus the check's read: for a service holding
# customers' personal data that must be "almost at once". Shorter costs more: the check is a
# read transaction in a thread of its own, once per interval per process with a cached key in
# use, against none per request, which is what the cache is for (a lookup per request was the
# largest cost of a small API request).
REVOCATION_CHECK_SECONDS = 1.0

# How long after its last successful check (or its own lookup) a cached credential may still be
# used while the next check is under way, or failing: beyond that the cache is not trusted
# (fail-closed) and the key is looked up again. The check's interval plus an allowance for its
# read, so that requests arriving while a check runs are answered from the cache.
CHECK_READ_ALLOWANCE_SECONDS = 1.0


def trusted_seconds() -> float:
    """How long a check (or lookup) vouches for a cached credential (read at each use, so that
    tests may change `REVOCATION_CHECK_SECONDS`)."""
    return REVOCATION_CHECK_SECONDS + CHECK_READ_ALLOWANCE_SECONDS


# How long the app's shutdown waits for a revocation check under way (`SecretCache.close`): a
# read that hangs must not hold the server's stop for ever (the thread is a daemon).
CLOSE_WAIT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class _Entry(Generic[V]):
    expires: float
    found: V
    # When it was last known stored: the start of the lookup that cached it, or of the last
    # successful check that asked about it (only those: a check vouches for no key it did not
    # ask about, such as one cached while it ran).
    vouched: float


class SecretCache(Generic[V]):
    """Known credentials, kept in memory for a short time.

    Looking a secret up (a read transaction and an AES-GCM open) would otherwise be the largest
    cost of a small API request. Only found keys are cached, so a new credential works at once;
    a revoked one stops working at once in the process that revoked it (`forget`), and within
    about `REVOCATION_CHECK_SECONDS` (plus a read's time) in every other server process: `get`,
    given `stored` (which of some keys are still stored as cached: not revoked, nor changed, as
    a scope is), has every cached key checked that often, and the check drops the others.
    `clock` is monotonic seconds; tests pass their own.

    The check runs off every request's path: the request that finds it due starts it in a
    thread of its own and goes on, answered from the cache like the others meanwhile. A request
    that ran it (a read) or waited for it would leave the event loop (openprofiles.blocking), and
    with it the burst of its moment, which would then not share one turn's work. Guarantees:
    - single-flight: one check at a time per cache; due again `REVOCATION_CHECK_SECONDS` after
      the last one started, whether it succeeded or not;
    - fail-closed: a cached key is used only while its last successful check, or its own lookup,
      is under `trusted_seconds()` old. Past that (the process was idle for a while, or checks
      fail), the first request for a key runs a check at once, and those arriving meanwhile wait
      for it (on the event loop, each moves to a worker thread first, as a lookup does): a burst
      after a pause shares one read rather than making one each. When the check fails (the
      database does not answer), the key is looked up, which fails or refuses as the database
      says;
    - no thread outlives `close` (the app's shutdown): it waits for the check under way, for
      `CLOSE_WAIT_SECONDS` at most.
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
        self._entries: dict[str, _Entry[V]] = {}
        # Keys revoked in this process: until when each is looked up at every use, uncached.
        self._forgotten: dict[str, float] = {}
        # When the cached keys are next checked against the database (`get`'s `stored`).
        self._check_due = float("-inf")
        # The check under way (single-flight), and whether `close` has stopped new ones.
        self._guard = threading.Lock()
        self._checking: threading.Thread | None = None
        self._closed = False
        _CACHES.add(self)

    def forget(self, access_key_id: str) -> None:
        """Stop using a cached credential now (it is being revoked). For `ttl_seconds` the key
        is looked up at every use and not cached: a request that looks it up while the revoking
        transaction has not committed yet finds it still there, and must not cache it again
        for the cache's time. (A process that did not revoke it has the same race with no
        `forget`: a key it cached from a read before the commit goes at its next check.)"""
        self._forgotten[access_key_id] = self._clock() + self._ttl
        self._entries.pop(access_key_id, None)

    def cached(self, access_key_id: str) -> V | None:
        """What the cache holds of a key now, however old (for `stored` to compare a key's row
        with), or None."""
        entry = self._entries.get(access_key_id)
        return None if entry is None else entry.found

    def get(
        self,
        access_key_id: str,
        load: Callable[[], V | None],
        stored: Callable[[Sequence[str]], Collection[str]] | None = None,
    ) -> V | None:
        """What is known of a key, from the cache or `load`. With `stored`, a check of the
        cached keys against the database is started (not awaited) when the last one started
        `REVOCATION_CHECK_SECONDS` ago; without it, only this process's revocations are seen."""
        now = self._clock()
        if stored is not None and now >= self._check_due and self._entries:
            self._start_check(now, stored)
        if self._forgotten:
            until = self._forgotten.get(access_key_id)
            if until is not None and until > now:
                return load()
            if until is not None:
                self._forgotten.pop(access_key_id, None)
        entry = self._entries.get(access_key_id)
        if entry is not None and entry.expires > now:
            if now - entry.vouched < trusted_seconds():
                return entry.found
            if stored is not None:
                # Fail-closed: no recent proof that it is still stored. One check now, for every
                # request of the moment (a burst after a pause), rather than a lookup each.
                self._check_now(stored)
                entry = self._entries.get(access_key_id)
                if entry is not None and self._clock() - entry.vouched < trusted_seconds():
                    return entry.found
        found = load()
        if found is None:
            self._entries.pop(access_key_id, None)
            return None
        if len(self._entries) >= self._max:
            self._entries.clear()
        if not self._entries:
            # The one entry is as fresh as a check (read after `now`): none due before then.
            self._check_due = now + REVOCATION_CHECK_SECONDS
        self._entries[access_key_id] = _Entry(now + self._ttl, found, now)
        return found

    def settle(self, timeout: float | None = None) -> None:
        """Return once the check under way, if any, has ended, or after `timeout` seconds (tests;
        `close`)."""
        with self._guard:
            running = self._checking
        if running is not None:
            running.join(timeout)

    def close(self) -> None:
        """Start no more checks, and wait for the one under way (the server is stopping), for
        `CLOSE_WAIT_SECONDS` at most."""
        with self._guard:
            self._closed = True
        self.settle(CLOSE_WAIT_SECONDS)

    def _start_check(self, now: float, stored: Callable[[Sequence[str]], Collection[str]]) -> None:
        with self._guard:
            if now < self._check_due:
                return  # another request started it: single-flight
            self._launch(now, stored)

    def _check_now(self, stored: Callable[[Sequence[str]], Collection[str]]) -> None:
        """Run a check (or join the one under way) and wait for it: a read, so on the event loop
        the request moves to a worker thread first (openprofiles.blocking)."""
        avoid_blocking("checking cached credentials for revocation")
        with self._guard:
            running = self._checking
            if running is None and self._clock() >= self._check_due:
                # (Not sooner: the last check, which started less than an interval ago, failed
                # or did not ask about this key; a failing database is asked once an interval.)
                running = self._launch(self._clock(), stored)
        if running is not None:
            running.join()

    def _launch(
        self, now: float, stored: Callable[[Sequence[str]], Collection[str]]
    ) -> threading.Thread | None:
        """Start a check in a thread of its own, unless one is under way or the cache is closed
        (called holding `_guard`); the check under way, if any."""
        if self._closed or self._checking is not None:
            return self._checking
        # Due again an interval after this one starts, whatever its outcome: a failing
        # database is asked once an interval, not once a request.
        self._check_due = now + REVOCATION_CHECK_SECONDS
        self._checking = threading.Thread(
            target=self._check,
            args=(now, stored),
            name="openprofiles-credential-check",
            # `close` joins it; a daemon only so that a read that hangs cannot hold up the
            # interpreter's exit.
            daemon=True,
        )
        self._checking.start()
        return self._checking

    def _check(self, started: float, stored: Callable[[Sequence[str]], Collection[str]]) -> None:
        try:
            cached = list(self._entries)
            # Ids and scopes only (stored_scopes); may raise (a database error): the keys then go
            # unchecked, and stop being used once `trusted_seconds()` has passed since the last
            # successful check.
            present = set(stored(cached))
        except Exception as exc:
            # The type only: a message could quote a URL with a password (logging_setup).
            log.warning("checking cached credentials for revocation failed: %s", type(exc).__name__)
        else:
            # Vouched for from the time before the read: an entry cached from a read that came
            # before a revoking commit this read did not see yet is dropped by the next check.
            for access_key_id in cached:
                entry = self._entries.get(access_key_id)
                if entry is None:
                    continue
                if access_key_id not in present:
                    self._entries.pop(access_key_id, None)
                elif entry.vouched < started:
                    # (A lookup on the loop's thread may have replaced the entry meanwhile with
                    # a fresher one: writing this one back only shortens its trust.)
                    self._entries[access_key_id] = replace(entry, vouched=started)
        finally:
            with self._guard:
                self._checking = None
