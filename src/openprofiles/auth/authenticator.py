"""SigV4 authentication of the API's and the contact feeds' requests against the credential
store, in the two steps of `wire.sigv4`: the headers, before the body is read, then the body.

`Authenticator.check_headers` refuses at once what the headers show to be unauthenticated (no
signature, an unknown access key, a date out of the allowed skew...), so an anonymous client
cannot make the server read and hold a body (up to about 31 MB for the API) first. What it
returns finishes the check with the body, reusing what the first step looked up: a request
reads its credential once. The principal it makes carries the key's domain scope (auth.scope),
which the API's dispatcher and the contact feeds enforce.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from openprofiles.auth.credentials import (
    SecretCache,
    StoredCredential,
    could_be_access_key_id,
    find_secret,
    stored_scopes,
)
from openprofiles.auth.scope import DomainScope
from openprofiles.blocking import avoid_blocking
from openprofiles.context import Principal, Services
from openprofiles.wire.sigv4 import HeaderCheck, check_headers


@dataclass(slots=True)  # not frozen: that costs microseconds a request
class CheckedHeaders:
    """A request whose headers passed the signature check; `principal` finishes it."""

    signature: HeaderCheck
    role: str
    scope: DomainScope | None

    def principal(self, body: bytes) -> Principal:
        """The caller, once the body proves the signature; InvalidSignature else."""
        return Principal(
            access_key_id=self.signature.verify_body(body), role=self.role, scope=self.scope
        )


class Authenticator:
    """Authenticates requests signed with the server's API credentials (auth.credentials).

    Calling it checks a whole request (method, raw path, raw query, headers, body) and returns
    its `Principal`; `check_headers` is the first half, for a server that has not read the body
    yet. Credentials are cached for a short time (SecretCache), and checked against the
    database about every second in the background, so a key revoked or rescoped by another
    process is refused, or held to its new scope, here too; `close` (the app's shutdown) waits
    for a check under way.
    """

    def __init__(
        self,
        services: Services,
        max_skew_seconds: int,
        secrets: SecretCache[StoredCredential] | None = None,
    ) -> None:
        self._services = services
        self._max_skew_seconds = max_skew_seconds
        self._secrets: SecretCache[StoredCredential] = (
            secrets if secrets is not None else SecretCache()
        )

    def __call__(
        self, method: str, raw_path: str, raw_query: str, headers: Mapping[str, str], body: bytes
    ) -> Principal:
        return self.check_headers(method, raw_path, raw_query, headers).principal(body)

    def check_headers(
        self, method: str, raw_path: str, raw_query: str, headers: Mapping[str, str]
    ) -> CheckedHeaders:
        """Check the request's signature as far as its headers allow (wire.sigv4.check_headers);
        the AWS error of the first fault found, as the whole check gives it."""
        known: dict[str, StoredCredential] = {}

        def lookup(access_key_id: str) -> str | None:
            if not could_be_access_key_id(access_key_id):
                return None  # no key's shape: unknown, with no read (and no worker thread)
            found = self._secrets.get(
                access_key_id, lambda: self._load(access_key_id), self._stored
            )
            if found is None:
                return None
            known[access_key_id] = found
            return found.secret

        signature = check_headers(
            method,
            raw_path,
            raw_query,
            headers,
            find_secret=lookup,
            now=datetime.now(UTC),
            max_skew_seconds=self._max_skew_seconds,
        )
        found = known[signature.access_key]
        return CheckedHeaders(signature, found.role, self._scope(signature.access_key, found))

    def _scope(self, access_key_id: str, found: StoredCredential) -> DomainScope | None:
        if found.scope is None:
            return None
        settings = self._services.settings
        return DomainScope(access_key_id, found.scope, settings.region, settings.account_id)

    def _load(self, access_key_id: str) -> StoredCredential | None:
        # A credential not in the cache is read from the database: on the event loop (where
        # the API checks headers) that may wait, so the check moves to a worker thread
        # (openprofiles.blocking); a cached one, nearly every request's, costs no read.
        avoid_blocking("reading a credential")
        with self._services.read() as tx:
            return find_secret(tx, access_key_id=access_key_id)

    def close(self) -> None:
        """Wait for the cache's revocation check under way, and start no more (shutdown)."""
        self._secrets.close()

    def _stored(self, access_key_ids: Sequence[str]) -> set[str]:
        # Which cached keys are still stored as cached (not revoked, scope unchanged), once a
        # second at most: run by the cache in a thread of its own (SecretCache), never on a
        # request's path, so never on the loop.
        with self._services.read() as tx:
            scopes = stored_scopes(tx, access_key_ids)
        unchanged = set()
        for access_key_id, scope in scopes.items():
            # A key dropped from the cache meanwhile has nothing to compare: kept, harmlessly.
            cached = self._secrets.cached(access_key_id)
            if cached is None or cached.scope == scope:
                unchanged.add(access_key_id)
        return unchanged
