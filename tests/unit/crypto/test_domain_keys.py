"""DomainCipher binding and KeyManager's key proof, cache and system secrets.

The provider calls are counted by a thin wrapper around a real LocalKeyProvider, so the cache is
tested against real wrapping, not a mock.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pytest

from openprofiles.crypto.domain_keys import SYSTEM_SCOPE, DomainCipher, KeyManager
from openprofiles.crypto.errors import DecryptionError, KeyProblem, KeyUnusable
from openprofiles.crypto.keyring import Keyring
from openprofiles.crypto.providers import KeyProvider, LocalKeyProvider, ProviderResolver
from openprofiles.settings import Settings

PAYLOAD = {"FirstName": "Ana", "PhoneNumber": "+14155550100", "Attributes": {"tier": "gold"}}


class CountingProvider:
    def __init__(self, inner: KeyProvider) -> None:
        self.inner = inner
        self.generated = 0
        self.decrypted = 0
        self.wrapped = 0

    def generate_data_key(self, key_id: str, context: Mapping[str, str]) -> tuple[bytes, bytes]:
        self.generated += 1
        return self.inner.generate_data_key(key_id, context)

    def decrypt_data_key(self, key_id: str, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        self.decrypted += 1
        return self.inner.decrypt_data_key(key_id, wrapped, context)

    def wrap_data_key(self, key_id: str, data_key: bytes, context: Mapping[str, str]) -> bytes:
        self.wrapped += 1
        return self.inner.wrap_data_key(key_id, data_key, context)


class CountingResolver(ProviderResolver):
    def __init__(self, settings: Settings, keyring: Keyring) -> None:
        super().__init__(settings, keyring)
        self.counter = CountingProvider(LocalKeyProvider(keyring))

    def resolve(self, key_id: str) -> KeyProvider:
        super().resolve(key_id)  # the real identifier checks
        return self.counter


@pytest.fixture
def resolver(tmp_path: Path) -> CountingResolver:
    settings = Settings(data_dir=tmp_path)
    return CountingResolver(settings, Keyring(settings.keyring_path))


def test_record_round_trip() -> None:
    cipher = DomainCipher(os.urandom(32), "sales")
    blob = cipher.seal_record("profile", "p1", PAYLOAD)
    assert b"Ana" not in blob
    assert cipher.open_record("profile", "p1", blob) == PAYLOAD


@pytest.mark.parametrize(
    ("domain", "table", "record_id"),
    [("sales", "profile", "p2"), ("sales", "profile_object", "p1"), ("support", "profile", "p1")],
)
def test_a_blob_moved_elsewhere_does_not_open(domain: str, table: str, record_id: str) -> None:
    data_key = os.urandom(32)
    blob = DomainCipher(data_key, "sales").seal_record("profile", "p1", PAYLOAD)
    with pytest.raises(DecryptionError):
        DomainCipher(data_key, domain).open_record(table, record_id, blob)


def test_digests_are_per_domain_and_deterministic() -> None:
    data_key = os.urandom(32)
    a = DomainCipher(data_key, "sales").digest("_phone", "+14155550100")
    assert a == DomainCipher(data_key, "sales").digest("_phone", "+14155550100")
    assert a != DomainCipher(data_key, "support").digest("_phone", "+14155550100")
    assert a != DomainCipher(os.urandom(32), "sales").digest("_phone", "+14155550100")


def test_new_domain_key_proves_the_key_and_uses_the_default(resolver: CountingResolver) -> None:
    manager = KeyManager(resolver)
    wrapped = manager.new_domain_key("sales")
    assert wrapped.key_id == resolver.default_key_id()
    assert wrapped.key_id.startswith("arn:openprofiles:kms:us-east-1:000000000000:key/")
    assert (resolver.counter.generated, resolver.counter.decrypted) == (1, 1)


def test_cipher_is_cached(resolver: CountingResolver) -> None:
    wrapped = KeyManager(resolver).new_domain_key("sales")
    sealed = KeyManager(resolver).cipher_for("sales", wrapped.key_id, wrapped.wrapped)
    blob = sealed.seal_record("profile", "p1", PAYLOAD)
    before = resolver.counter.decrypted

    manager = KeyManager(resolver)  # as in another process: nothing cached yet
    for _ in range(5):
        cipher = manager.cipher_for("sales", wrapped.key_id, wrapped.wrapped)
        assert cipher.open_record("profile", "p1", blob) == PAYLOAD
    assert resolver.counter.decrypted == before + 1

    manager.forget("sales")
    manager.cipher_for("sales", wrapped.key_id, wrapped.wrapped)
    assert resolver.counter.decrypted == before + 2


def test_new_domain_key_primes_the_cache(resolver: CountingResolver) -> None:
    manager = KeyManager(resolver)
    wrapped = manager.new_domain_key("sales")
    manager.cipher_for("sales", wrapped.key_id, wrapped.wrapped)
    assert resolver.counter.decrypted == 1


def test_cache_is_bounded(resolver: CountingResolver) -> None:
    manager = KeyManager(resolver, cache_size=2)
    keys = {name: KeyManager(resolver).new_domain_key(name) for name in ("a", "b", "c")}
    calls = resolver.counter.decrypted
    for name in ("a", "b", "c"):
        manager.cipher_for(name, keys[name].key_id, keys[name].wrapped)
    manager.cipher_for("c", keys["c"].key_id, keys["c"].wrapped)
    manager.cipher_for("b", keys["b"].key_id, keys["b"].wrapped)
    assert resolver.counter.decrypted == calls + 3
    manager.cipher_for("a", keys["a"].key_id, keys["a"].wrapped)  # evicted first
    assert resolver.counter.decrypted == calls + 4


def test_a_wrapped_key_belongs_to_its_domain(resolver: CountingResolver) -> None:
    wrapped = KeyManager(resolver).new_domain_key("sales")
    with pytest.raises(KeyUnusable, match="another encryption context"):
        KeyManager(resolver).cipher_for("support", wrapped.key_id, wrapped.wrapped)


def test_disabled_key_is_refused_with_a_clear_message(resolver: CountingResolver) -> None:
    key = resolver.keyring.create_key("sales-key")
    key_id = resolver.local_arn(key)
    manager = KeyManager(resolver)
    wrapped = manager.new_domain_key("sales", key_id)
    resolver.keyring.disable(key.key_id)
    with pytest.raises(KeyUnusable) as raised:
        manager.new_domain_key("support", key_id)
    assert raised.value.problem is KeyProblem.DISABLED
    assert raised.value.message == (
        f"The local key {key_id} is disabled; enable it with `openprofiles keys enable` or "
        "choose another key."
    )
    manager.forget("sales")
    with pytest.raises(KeyUnusable, match="is disabled"):
        manager.cipher_for("sales", key_id, wrapped.wrapped)


def test_alias_identifiers_work(resolver: CountingResolver) -> None:
    resolver.keyring.create_key("team-a")
    wrapped = KeyManager(resolver).new_domain_key("sales", "alias/team-a")
    assert wrapped.key_id == "alias/team-a"
    KeyManager(resolver).cipher_for("sales", "alias/team-a", wrapped.wrapped)


@pytest.mark.parametrize("key_id", ["nonsense", "arn:aws:s3:::bucket", "alias/missing"])
def test_unusable_identifiers(resolver: CountingResolver, key_id: str) -> None:
    with pytest.raises(KeyUnusable):
        KeyManager(resolver).new_domain_key("sales", key_id)
    assert resolver.counter.generated == 0


def test_system_secrets_are_stable_and_separate(resolver: CountingResolver) -> None:
    first, second = KeyManager(resolver), KeyManager(resolver)
    assert first.system_secret("pagination") == second.system_secret("pagination")
    assert len(first.system_secret("pagination")) == 32
    assert first.system_secret("pagination") != first.system_secret("session")
    blob = first.system_cipher().seal_record("credential", "AKID1", {"secret": "s"})
    assert second.system_cipher().open_record("credential", "AKID1", blob) == {"secret": "s"}
    assert first.system_cipher().domain_name == SYSTEM_SCOPE
    assert resolver.counter.generated == resolver.counter.decrypted == 0


def test_system_secrets_differ_between_keyrings(tmp_path: Path) -> None:
    def secret(directory: Path) -> bytes:
        settings = Settings(data_dir=directory)
        keyring = Keyring(settings.keyring_path)
        return KeyManager(ProviderResolver(settings, keyring)).system_secret("pagination")

    assert secret(tmp_path / "a") != secret(tmp_path / "b")


def test_rewrap_keeps_the_data_key(resolver: CountingResolver) -> None:
    manager = KeyManager(resolver)
    old = manager.new_domain_key("sales")
    blob = manager.cipher_for("sales", old.key_id, old.wrapped).seal_record(
        "profile", "p1", PAYLOAD
    )
    new_key_id = resolver.local_arn(resolver.keyring.create_key("sales-2025"))

    new = manager.rewrap_domain_key("sales", old.key_id, old.wrapped, new_key_id)
    assert new.key_id == new_key_id
    assert resolver.counter.wrapped == 1
    reader = KeyManager(resolver).cipher_for("sales", new.key_id, new.wrapped)
    assert reader.open_record("profile", "p1", blob) == PAYLOAD

    # The new wrapping needs the new key only: disabling the old one does not matter.
    resolver.keyring.disable(old.key_id)
    KeyManager(resolver).cipher_for("sales", new.key_id, new.wrapped)


def test_rewrap_to_a_disabled_key_is_refused(resolver: CountingResolver) -> None:
    manager = KeyManager(resolver)
    old = manager.new_domain_key("sales")
    target = resolver.keyring.create_key("off")
    resolver.keyring.disable(target.key_id)
    with pytest.raises(KeyUnusable, match="is disabled"):
        manager.rewrap_domain_key("sales", old.key_id, old.wrapped, resolver.local_arn(target))


def test_sealed_records_keep_their_documented_associated_data() -> None:
    """Records sealed before stay readable: the associated data is length_prefixed(label,
    domain, table, record id) under the HKDF-derived sealing key, however it is computed."""
    from openprofiles.crypto import aead
    from openprofiles.crypto.domain_keys import _DOMAIN_INFO, _hkdf
    from openprofiles.crypto.encoding import length_prefixed

    data_key = bytes(range(32))
    cipher = DomainCipher(data_key, "shop")
    seal_key = _hkdf(data_key, length_prefixed(_DOMAIN_INFO, "seal", "shop"))
    for record_id in ("p-1", "p-2"):
        blob = cipher.seal_record("profile", record_id, {"n": record_id})
        aad = length_prefixed("openprofiles/record/v1", "shop", "profile", record_id)
        assert aead.open_sealed(seal_key, blob, aad) == b'{"n":"%s"}' % record_id.encode()
        old_style = aead.seal(seal_key, b'{"n":1}', aad)
        assert cipher.open_record("profile", record_id, old_style) == {"n": 1}


def test_a_disabled_key_stops_working_once_the_cache_expires(resolver: CountingResolver) -> None:
    """Disabling a key (here a local one; KMS alike) reaches every process within the cache
    time, without a restart; before that, requests cost no call to the key provider."""
    key = resolver.keyring.create_key("sales-key")
    key_id = resolver.local_arn(key)
    wrapped = KeyManager(resolver).new_domain_key("sales", key_id)
    now = [1000.0]
    manager = KeyManager(resolver, cache_seconds=300, clock=lambda: now[0])
    manager.cipher_for("sales", key_id, wrapped.wrapped)
    calls = resolver.counter.decrypted

    now[0] += 299
    manager.cipher_for("sales", key_id, wrapped.wrapped)
    assert resolver.counter.decrypted == calls

    now[0] += 2  # expired: unwrapped again, which still works
    manager.cipher_for("sales", key_id, wrapped.wrapped)
    assert resolver.counter.decrypted == calls + 1

    resolver.keyring.disable(key.key_id)
    manager.cipher_for("sales", key_id, wrapped.wrapped)  # cached for another 300 s
    now[0] += 301
    with pytest.raises(KeyUnusable, match="is disabled"):
        manager.cipher_for("sales", key_id, wrapped.wrapped)


def test_the_cache_time_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENPROFILES_DATA_KEY_CACHE_SECONDS", "30")
    assert Settings.from_env().data_key_cache_seconds == 30.0


def test_lists_open_together_and_stay_bound_to_their_records() -> None:
    cipher = DomainCipher(os.urandom(32), "sales")
    rows = [("p1", ["Ana", None, 3]), ("p2", []), ("p3", ["x,]y", {"k": "v"}])]
    blobs = [(pid, cipher.seal_list("ml_feature", pid, values)) for pid, values in rows]
    assert b"Ana" not in blobs[0][1]
    assert cipher.open_lists("ml_feature", blobs) == [values for _, values in rows]
    assert cipher.open_lists("ml_feature", []) == []
    # A blob moved to another record, or read as another table's, does not open.
    with pytest.raises(DecryptionError):
        cipher.open_lists("ml_feature", [("p1", blobs[0][1]), ("p2", blobs[0][1])])
    with pytest.raises(DecryptionError):
        cipher.open_lists("profile", blobs[:1])
    # A record sealed as an object is not a list.
    with pytest.raises(DecryptionError):
        cipher.open_lists("ml_feature", [("p4", cipher.seal_record("ml_feature", "p4", PAYLOAD))])


# What a record's plaintext may hold and must come back exactly: text beyond ASCII, integers
# beyond 64 bits (which orjson, the plaintext's codec, would read as floats), floats, nesting.
EXACT_VALUES = {
    "FirstName": "Zoë 李",
    "Account": 2**70 + 1,
    "Negative": -(2**63) - 1,
    "Score": 0.1,
    "Nested": {"a": [1, None, True, "x,]y"]},
}


def test_plaintext_values_come_back_exactly() -> None:
    cipher = DomainCipher(os.urandom(32), "sales")
    blob = cipher.seal_record("profile_object", "o1", EXACT_VALUES)
    opened = cipher.open_record("profile_object", "o1", blob)
    assert opened == EXACT_VALUES
    assert type(opened["Account"]) is int
    assert cipher.open_records("profile_object", [("o1", blob)]) == [EXACT_VALUES]
    values = list(EXACT_VALUES.values())
    listed = cipher.seal_list("ml_feature", "p1", values)
    assert cipher.open_lists("ml_feature", [("p1", listed)]) == [values]


def test_records_sealed_with_the_standard_library_json_still_open() -> None:
    """Records sealed before the plaintext's codec was orjson: json.dumps's compact text, NaN
    included (json.dumps writes it; orjson refuses to read it)."""
    import json
    import math

    from openprofiles.crypto import aead
    from openprofiles.crypto.domain_keys import _DOMAIN_INFO, _hkdf
    from openprofiles.crypto.encoding import length_prefixed

    data_key = bytes(range(32))
    cipher = DomainCipher(data_key, "shop")
    seal_key = _hkdf(data_key, length_prefixed(_DOMAIN_INFO, "seal", "shop"))
    payload = {**EXACT_VALUES, "Ratio": float("nan")}
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    blob = aead.seal(seal_key, text, length_prefixed("openprofiles/record/v1", "shop", "t", "r"))
    opened = cipher.open_record("t", "r", blob)
    assert math.isnan(opened.pop("Ratio"))
    assert opened == EXACT_VALUES
    [many] = cipher.open_records("t", [("r", blob)])
    assert math.isnan(many.pop("Ratio")) and many == EXACT_VALUES
