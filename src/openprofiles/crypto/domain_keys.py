"""Per-domain data keys and the ciphers built from them.

`KeyManager` creates a domain's wrapped data key (proving the key provider works first), unwraps
it when the domain's records are read or written (cached, so KMS is not called per request), and
derives the server's own secrets from the default local key. `DomainCipher` seals records and
computes blind-index digests for one domain.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from openprofiles import json_codec
from openprofiles.blocking import avoid_blocking
from openprofiles.crypto import aead
from openprofiles.crypto.blind_index import BlindIndex
from openprofiles.crypto.encoding import length_prefixed
from openprofiles.crypto.errors import (
    CurrentKeyUnusable,
    DecryptionError,
    KeyProblem,
    KeyUnusable,
)
from openprofiles.crypto.providers import KeyProvider, KmsKeyProvider, ProviderResolver

CONTEXT_KEY = "openprofiles:domain"
SYSTEM_INFO = b"openprofiles/system/v1"
_DOMAIN_INFO = "openprofiles/domain/v1"
# Domain names match [a-zA-Z0-9_-]+, so a scope with ':' can never be a domain's.
SYSTEM_SCOPE = "openprofiles:system"


def encryption_context(domain_name: str) -> dict[str, str]:
    """The context every data key of a domain is wrapped with (KMS logs it in CloudTrail)."""
    return {CONTEXT_KEY: domain_name}


def _hkdf(key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(key)


class DomainCipher:
    """Seals records and digests search keys for one domain (or the system scope)."""

    def __init__(self, data_key: bytes, domain_name: str) -> None:
        if len(data_key) != aead.KEY_SIZE:
            raise ValueError(f"a data key is {aead.KEY_SIZE} bytes, not {len(data_key)}")
        self.domain_name = domain_name
        self._data_key = data_key
        # Two subkeys, never one key for two jobs: AES-GCM and HMAC have no joint security proof
        # under a shared key, and the index key is the one that must stay stable for lookups
        # while the sealing key could later be rotated on its own.
        self._sealer = aead.Sealer(
            _hkdf(data_key, length_prefixed(_DOMAIN_INFO, "seal", domain_name))
        )
        # The associated data's fixed part per table (see _aad), encoded once.
        self._aad_prefixes: dict[str, bytes] = {}
        self._index = BlindIndex(
            _hkdf(data_key, length_prefixed(_DOMAIN_INFO, "index", domain_name))
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickling is how a cipher reaches a worker process of this server (the full rule pass,
        # identity.rule_pass): through the pipe to a process it started, as its data key. A
        # pickled cipher is key material: never written to a file, a log or a queue.
        return (DomainCipher, (self._data_key, self.domain_name))

    def __repr__(self) -> str:
        return f"DomainCipher(domain_name={self.domain_name!r})"

    def seal_record(self, table: str, record_id: str, payload: dict[str, Any]) -> bytes:
        return self._sealer.seal(json_codec.dumps_bytes(payload), self._aad(table, record_id))

    def open_record(self, table: str, record_id: str, blob: bytes) -> dict[str, Any]:
        """The payload sealed for exactly this (domain, table, record id); DecryptionError else."""
        plaintext = self._sealer.open(blob, self._aad(table, record_id))
        payload = json_codec.loads(plaintext)
        if not isinstance(payload, dict):
            raise DecryptionError(f"the sealed {table} record {record_id} is not a JSON object")
        return payload

    def seal_list(self, table: str, record_id: str, values: list[Any]) -> bytes:
        """Like seal_record, for a payload that is a JSON array: a small record's fields by
        position, without the names an object would repeat in every record."""
        return self._sealer.seal(json_codec.dumps_bytes(values), self._aad(table, record_id))

    def open_lists(self, table: str, blobs: Sequence[tuple[str, bytes]]) -> list[list[Any]]:
        """The arrays sealed by seal_list for (record id, blob) pairs of one table, in order;
        DecryptionError as open_record. For reading many small records at once: the per-record
        work around AES-GCM (associated data, decoding) is most of opening one."""
        return self._open_many(table, blobs, list, "a JSON array")

    def open_records(self, table: str, blobs: Sequence[tuple[str, bytes]]) -> list[dict[str, Any]]:
        """open_record for (record id, blob) pairs of one table, in order, in one pass."""
        return self._open_many(table, blobs, dict, "a JSON object")

    def _open_many(
        self, table: str, blobs: Sequence[tuple[str, bytes]], kind: type, kind_name: str
    ) -> list[Any]:
        prefix = self._aad_prefix(table)
        ids = [record_id for record_id, _ in blobs]
        # The associated data as _aad makes it (length_prefixed, inlined: it is per record).
        encoded = [record_id.encode("utf-8") for record_id in ids]
        texts = self._sealer.open_many(
            (blob, prefix + len(e).to_bytes(4, "big") + e)
            for (_, blob), e in zip(blobs, encoded, strict=True)
        )
        # One JSON text for all: each plaintext is a JSON value this cipher sealed
        # (authenticated), so the joined text is an array of them, decoded in one call instead
        # of one per record.
        payloads = json_codec.loads(b"[" + b",".join(texts) + b"]")
        for record_id, payload in zip(ids, payloads, strict=True):
            if not isinstance(payload, kind):
                raise DecryptionError(f"the sealed {table} record {record_id} is not {kind_name}")
        return payloads

    def digest(self, key_name: str, normalised_value: str) -> bytes:
        return self._index.digest(key_name, normalised_value)

    def _aad(self, table: str, record_id: str) -> bytes:
        # Binding the row's identity means a blob copied to another row, table or domain does not
        # open, so a database writer cannot swap customers' data around undetected.
        # Equal to length_prefixed(label, domain, table, record_id): parts are concatenated.
        return self._aad_prefix(table) + length_prefixed(record_id)

    def _aad_prefix(self, table: str) -> bytes:
        prefix = self._aad_prefixes.get(table)
        if prefix is None:
            prefix = length_prefixed("openprofiles/record/v1", self.domain_name, table)
            self._aad_prefixes[table] = prefix
        return prefix


@dataclass(frozen=True)
class WrappedDomainKey:
    key_id: str
    wrapped: bytes


@dataclass(frozen=True)
class AliasedKey:
    """The KMS key (`key_arn`, KMS's KeyId) that the alias ARN `key_id` of a domain named when
    it unwrapped the domain's data key `wrapped`. Once the alias is gone KMS no longer says
    which key it named, and a drop must be sure which key it proves deleted
    (domains.unreadable.record_aliased_keys keeps it in the database)."""

    domain_name: str
    key_id: str
    wrapped: bytes
    key_arn: str


# How many times an AliasedKey whose domain row does not (yet) hold its wrapped data key is
# offered to be recorded: CreateDomain and UpdateDomain learn it before their transaction
# commits; one that never commits (refused, or the key changed again) is then let go.
ALIASED_KEY_OFFERS = 3


# How long an unwrapped data key is used before the key provider is asked again. Disabling
# or revoking a key (in KMS, or `openprofiles keys disable`) takes effect within this time in
# every process, as with the AWS Encryption SDK's caching; within it, KMS sees no call per
# request.
DEFAULT_CACHE_SECONDS = 300.0


class KeyManager:
    def __init__(
        self,
        resolver: ProviderResolver,
        cache_size: int = 1024,
        *,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._resolver = resolver
        self._cache_size = cache_size
        self._cache_seconds = cache_seconds
        self._clock = clock
        # cache key -> (cipher, when it must be unwrapped again)
        self._cache: OrderedDict[tuple[str, str, bytes], tuple[DomainCipher, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._system_root: bytes | None = None
        self._system_lock = threading.Lock()
        # The keys domains' KMS aliases named (AliasedKey), by domain: learnt and not recorded
        # yet (with the times offered), and recorded by this process. Compared in memory, so an
        # unwrap costs no database write unless what the alias named changed.
        self._aliased_lock = threading.Lock()
        self._aliased_pending: dict[str, tuple[AliasedKey, int]] = {}
        self._aliased_recorded: dict[str, AliasedKey] = {}

    @property
    def resolver(self) -> ProviderResolver:
        return self._resolver

    def new_domain_key(self, domain_name: str, key_id: str | None = None) -> WrappedDomainKey:
        """A data key for a new domain (or a key change), wrapped under `key_id` or the default.

        The round trip (generate, then decrypt the wrapped copy) proves now, at configuration
        time, that the key can also be used for reading later: a key that can encrypt but not
        decrypt would otherwise accept data nobody can read back.
        """
        key_id, data_key, wrapped = self._proven_data_key(domain_name, key_id, learn=True)
        self._remember(
            (domain_name, key_id, _fingerprint(wrapped)), DomainCipher(data_key, domain_name)
        )
        return WrappedDomainKey(key_id, wrapped)

    def check_key(self, domain_name: str, key_id: str) -> None:
        """KeyUnusable unless `key_id` could protect the domain's data: the proof
        `new_domain_key` makes, with the data key thrown away (an object type's EncryptionKey,
        which is checked and kept but seals nothing)."""
        self._proven_data_key(domain_name, key_id, learn=False)

    def _proven_data_key(
        self, domain_name: str, key_id: str | None, *, learn: bool
    ) -> tuple[str, bytes, bytes]:
        """(key id, data key, wrapped data key): a new data key under `key_id` or the default,
        unwrapped again to prove the key works both ways; with `learn`, the domain's own (what
        a KMS alias named is learnt from it)."""
        key_id = key_id or self._resolver.default_key_id()
        provider = self._resolver.resolve(key_id)
        context = encryption_context(domain_name)
        data_key, wrapped = provider.generate_data_key(key_id, context)
        unwrapped = (
            self._unwrap(provider, domain_name, key_id, wrapped)
            if learn
            else provider.decrypt_data_key(key_id, wrapped, context)
        )
        self._prove(key_id, unwrapped, data_key)
        return key_id, data_key, wrapped

    def rewrap_domain_key(
        self, domain_name: str, key_id: str, wrapped: bytes, new_key_id: str | None
    ) -> WrappedDomainKey:
        """The domain's existing data key wrapped under `new_key_id` (or the default key).

        The data key itself does not change, so no record has to be sealed again; the old
        wrapped key stays readable until the caller stores the new one. The new wrapping is
        proved by unwrapping it before it is returned, as in `new_domain_key`. CurrentKeyUnusable
        when `key_id` cannot unwrap it; KeyUnusable when `new_key_id` cannot be used.
        """
        new_key_id = new_key_id or self._resolver.default_key_id()
        context = encryption_context(domain_name)
        try:
            provider = self._resolver.resolve_wrapped(key_id, domain_name)
            data_key = provider.decrypt_data_key(key_id, wrapped, context)
        except KeyUnusable as exc:
            # Told apart from the new key's failures below: the caller names the right key.
            raise CurrentKeyUnusable(key_id, exc) from exc
        provider = self._resolver.resolve(new_key_id)
        rewrapped = provider.wrap_data_key(new_key_id, data_key, context)
        self._prove(
            new_key_id, self._unwrap(provider, domain_name, new_key_id, rewrapped), data_key
        )
        self.forget(domain_name)
        self._remember(
            (domain_name, new_key_id, _fingerprint(rewrapped)), DomainCipher(data_key, domain_name)
        )
        return WrappedDomainKey(new_key_id, rewrapped)

    def cached_cipher(self, domain_name: str, key_id: str, wrapped: bytes) -> DomainCipher | None:
        """The domain's cipher if its data key is unwrapped and not expired, else None (the
        caller then knows `cipher_for` would call the key provider)."""
        cache_key = (domain_name, key_id, _fingerprint(wrapped))
        with self._lock:
            cached = self._cache.get(cache_key)
            if cached is not None and cached[1] > self._clock():
                self._cache.move_to_end(cache_key)
                return cached[0]
        return None

    def cipher_for(self, domain_name: str, key_id: str, wrapped: bytes) -> DomainCipher:
        """The cipher of a domain, unwrapping its data key only when not cached."""
        cached = self.cached_cipher(domain_name, key_id, wrapped)
        if cached is not None:
            return cached
        cache_key = (domain_name, key_id, _fingerprint(wrapped))
        # On the event loop a provider call (KMS: the network) must not run at all.
        avoid_blocking("unwrapping a data key")
        # Unwrap outside the lock: a slow KMS call must not stall other domains. Two threads may
        # both unwrap on a cold cache; that costs one extra call, not a wrong answer.
        provider = self._resolver.resolve_wrapped(key_id, domain_name)
        cipher = DomainCipher(self._unwrap(provider, domain_name, key_id, wrapped), domain_name)
        self._remember(cache_key, cipher)
        return cipher

    def _unwrap(
        self, provider: KeyProvider, domain_name: str, key_id: str, wrapped: bytes
    ) -> bytes:
        """The domain's data key `wrapped` unwrapped; under a KMS alias, the key the alias named
        is learnt (AliasedKey) for `aliased_keys_to_record`."""
        context = encryption_context(domain_name)
        if not (isinstance(provider, KmsKeyProvider) and ":alias/" in key_id):
            return provider.decrypt_data_key(key_id, wrapped, context)
        data_key, key_arn = provider.unwrap_naming_key(key_id, wrapped, context)
        if key_arn is not None:
            learnt = AliasedKey(domain_name, key_id, wrapped, key_arn)
            with self._aliased_lock:
                if self._aliased_recorded.get(domain_name) != learnt:
                    self._aliased_pending[domain_name] = (learnt, 0)
        return data_key

    def aliased_keys_to_record(self) -> list[AliasedKey]:
        """The AliasedKeys learnt since they were last recorded (none, as a rule: one per
        domain under a KMS alias per process, and one per change of its key)."""
        with self._aliased_lock:
            return [learnt for learnt, _ in self._aliased_pending.values()]

    def aliased_key_offered(self, learnt: AliasedKey, *, recorded: bool) -> None:
        """`learnt` was offered to the database: `recorded`, or its domain row does not hold
        its wrapped data key (not yet, or no more): offered again, ALIASED_KEY_OFFERS times in
        all, unless learnt anew since."""
        with self._aliased_lock:
            pending = self._aliased_pending.get(learnt.domain_name)
            if pending is None or pending[0] != learnt:
                return
            if recorded:
                self._aliased_recorded[learnt.domain_name] = learnt
            if recorded or pending[1] + 1 >= ALIASED_KEY_OFFERS:
                del self._aliased_pending[learnt.domain_name]
            else:
                self._aliased_pending[learnt.domain_name] = (learnt, pending[1] + 1)

    def forget(self, domain_name: str) -> None:
        """Drop a domain's cached ciphers (after DeleteDomain or a change of its key)."""
        with self._lock:
            for cache_key in [k for k in self._cache if k[0] == domain_name]:
                del self._cache[cache_key]

    def system_cipher(self) -> DomainCipher:
        """A cipher for the server's own secrets (API credential secrets, session secrets).

        Derived from the default local key, so it needs no wrapped key stored anywhere and every
        process sharing the keyring derives the same one.
        """
        return DomainCipher(self._system_key(), SYSTEM_SCOPE)

    def system_secret(self, purpose: str) -> bytes:
        """A 32-byte secret for one purpose (e.g. "pagination" for page-token HMACs)."""
        return _hkdf(self._system_key(), length_prefixed(SYSTEM_INFO, "secret", purpose))

    def _system_key(self) -> bytes:
        with self._system_lock:
            if self._system_root is None:
                key = self._resolver.keyring.default_key()
                if not key.enabled:
                    raise KeyUnusable(
                        f"The default local key {key.key_id} is disabled, and the server's own "
                        "secrets are derived from it; enable it with `openprofiles keys enable`.",
                        KeyProblem.DISABLED,
                        caller_message="The server's default key is disabled.",
                    )
                # Always from the first version: the secrets are sealed under it and stay so,
                # since `keys rotate` re-wraps domains' data keys, not the server's secrets.
                self._system_root = _hkdf(key.versions[0].material, SYSTEM_INFO)
            return self._system_root

    @staticmethod
    def _prove(key_id: str, unwrapped: bytes, data_key: bytes) -> None:
        if not hmac.compare_digest(data_key, unwrapped):
            raise KeyUnusable(
                f"The key {key_id} returned a different data key when unwrapping the one it just "
                "wrapped; it cannot be used to protect this domain's data.",
                KeyProblem.INVALID_CIPHERTEXT,
            )

    def _remember(self, cache_key: tuple[str, str, bytes], cipher: DomainCipher) -> None:
        with self._lock:
            self._cache[cache_key] = (cipher, self._clock() + self._cache_seconds)
            self._cache.move_to_end(cache_key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)


def _fingerprint(wrapped: bytes) -> bytes:
    # The wrapped key's hash, not the blob, keys the cache: a new data key for the same domain
    # (key change) then never hits a stale entry.
    return hashlib.sha256(wrapped).digest()
