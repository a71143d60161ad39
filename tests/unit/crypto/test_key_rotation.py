"""Rotating a local key: new material as a new version, the earlier versions kept and found by
the version each wrapped data key records; keyrings and wrapped keys from before versions.

The re-wrapping of domains' data keys in the database is tested in tests/cli/test_keys_rotate.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import multiprocessing
import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from openprofiles.crypto import aead
from openprofiles.crypto.domain_keys import KeyManager
from openprofiles.crypto.encoding import canonical_context, length_prefixed
from openprofiles.crypto.errors import KeyProblem, KeyringError, KeyUnusable
from openprofiles.crypto.keyring import DEFAULT_ALIAS, Keyring
from openprofiles.crypto.providers import LocalKeyProvider, ProviderResolver, local_wrap_version
from openprofiles.settings import Settings

CONTEXT = {"openprofiles:domain": "sales"}


def _old_keyring(path: Path) -> tuple[str, bytes]:
    """A keyring.json as OpenProfiles wrote it before keys had versions, with one key; and a
    data key wrapped under it as it was wrapped then. Built by hand, not by the code under test."""
    key_id = str(uuid.uuid4())
    material = os.urandom(32)
    document = {
        "version": 1,
        "keys": [
            {
                "id": key_id,
                "alias": "legacy",
                "created_at": "2025-01-02T03:04:05.123456Z",
                "enabled": True,
                "material": base64.b64encode(material).decode("ascii"),
            }
        ],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    os.chmod(path, 0o600)
    aad = length_prefixed("openprofiles/local-wrap/v1", key_id, canonical_context(CONTEXT))
    return key_id, aead.seal(material, b"D" * 32, aad)


def test_rotation_adds_a_version_and_keeps_the_earlier_ones(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path / "keyring.json")
    key = keyring.create_key("billing")
    provider = LocalKeyProvider(keyring)
    data_key, wrapped_v1 = provider.generate_data_key(key.key_id, CONTEXT)
    assert local_wrap_version(wrapped_v1) == 1

    rotated = keyring.rotate("alias/billing")
    assert [v.number for v in rotated.versions] == [1, 2]
    assert rotated.versions[0] == key.current
    assert rotated.current.material != key.current.material
    assert rotated.current.created_at >= key.current.created_at
    assert rotated.created_at == key.created_at

    # New wraps use version 2; data keys wrapped under version 1 still open.
    wrapped_v2 = provider.wrap_data_key(key.key_id, data_key, CONTEXT)
    assert local_wrap_version(wrapped_v2) == 2
    assert provider.decrypt_data_key(key.key_id, wrapped_v2, CONTEXT) == data_key
    assert provider.decrypt_data_key(key.key_id, wrapped_v1, CONTEXT) == data_key
    # Another process reading the file finds both versions.
    assert Keyring(keyring.path).get(key.key_id) == rotated
    assert json.loads(keyring.path.read_text())["version"] == 2


def test_a_keyring_from_before_versions_still_unwraps(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    key_id, wrapped = _old_keyring(path)
    keyring = Keyring(path)
    provider = LocalKeyProvider(keyring)
    [key] = keyring.list_keys()
    assert [v.number for v in key.versions] == [1]
    assert key.current.created_at == datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert local_wrap_version(wrapped) == 1
    assert provider.decrypt_data_key(key_id, wrapped, CONTEXT) == b"D" * 32

    # A keyring never rotated is written as before (another key made): older releases read it.
    keyring.create_key("another")
    document = json.loads(path.read_text())
    assert document["version"] == 1
    assert all("material" in item and "versions" not in item for item in document["keys"])

    keyring.rotate(key_id)
    assert provider.decrypt_data_key(key_id, wrapped, CONTEXT) == b"D" * 32
    rewrapped = provider.wrap_data_key(key_id, b"D" * 32, CONTEXT)
    assert local_wrap_version(rewrapped) == 2
    assert Keyring(path).get(key_id).versions[0].material == key.current.material  # type: ignore[union-attr]


def test_a_running_reader_uses_the_new_version_at_once(tmp_path: Path) -> None:
    """A server's Keyring read before the CLI rotated the key wraps under the new version and
    unwraps data keys wrapped under it (it reads the file again when the file changed)."""
    server = Keyring(tmp_path / "keyring.json")
    key = server.default_key()
    server_provider = LocalKeyProvider(server)
    cli = Keyring(tmp_path / "keyring.json")
    cli.rotate(key.key_id)
    data_key, wrapped = server_provider.generate_data_key(key.key_id, CONTEXT)
    assert local_wrap_version(wrapped) == 2
    assert LocalKeyProvider(cli).decrypt_data_key(key.key_id, wrapped, CONTEXT) == data_key


def test_a_keyring_copied_before_the_rotation_says_so(tmp_path: Path) -> None:
    """A second server whose keyring.json was not copied again after the rotation."""
    keyring = Keyring(tmp_path / "keyring.json")
    key = keyring.create_key("billing")
    elsewhere = tmp_path / "elsewhere.json"
    shutil.copy(keyring.path, elsewhere)
    keyring.rotate(key.key_id)
    _, wrapped = LocalKeyProvider(keyring).generate_data_key(key.key_id, CONTEXT)
    with pytest.raises(KeyUnusable, match="version 2 of the local key") as raised:
        LocalKeyProvider(Keyring(elsewhere)).decrypt_data_key(key.key_id, wrapped, CONTEXT)
    assert raised.value.problem is KeyProblem.NOT_FOUND
    assert "Copy keyring.json from the data dir where the key was rotated" in raised.value.message


def test_a_changed_version_number_does_not_open(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path / "keyring.json")
    key = keyring.create_key("billing")
    provider = LocalKeyProvider(keyring)
    keyring.rotate(key.key_id)
    _, wrapped = provider.generate_data_key(key.key_id, CONTEXT)
    rotated = keyring.rotate(key.key_id)
    assert local_wrap_version(wrapped) == 2
    for number in (0, 1, 3):
        # The header names the version and its fingerprint consistently: only the
        # authenticated header (the associated data) tells that the blob was not made so.
        version = rotated.version(number)
        fingerprint = version.fingerprint if version is not None else wrapped[5:13]
        relabelled = wrapped[:1] + number.to_bytes(4, "big") + fingerprint + wrapped[13:]
        with pytest.raises(KeyUnusable, match="could not be unwrapped") as raised:
            provider.decrypt_data_key(key.key_id, relabelled, CONTEXT)
        assert raised.value.problem is KeyProblem.INVALID_CIPHERTEXT


def test_a_disabled_or_unknown_key_is_not_rotated(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path / "keyring.json")
    key = keyring.create_key("billing")
    keyring.disable(key.key_id)
    with pytest.raises(ValueError, match="is disabled; enable it"):
        keyring.rotate(key.key_id)
    with pytest.raises(LookupError, match="There is no key alias/nope"):
        keyring.rotate("alias/nope")
    assert len(Keyring(keyring.path).get(key.key_id).versions) == 1  # type: ignore[union-attr]


def test_rotating_the_default_key_keeps_the_server_secrets(tmp_path: Path) -> None:
    """The server's own secrets (API credential secrets, page tokens) are derived from the
    default key: a rotation must not change them, or every stored credential stops opening."""
    settings = Settings(data_dir=tmp_path)
    before = KeyManager(ProviderResolver(settings, Keyring(settings.keyring_path)))
    sealed = before.system_cipher().seal_record("credential", "OPKEY", {"secret": "s3cret"})
    Keyring(settings.keyring_path).rotate(f"alias/{DEFAULT_ALIAS}")
    after = KeyManager(ProviderResolver(settings, Keyring(settings.keyring_path)))
    assert after.system_cipher().open_record("credential", "OPKEY", sealed) == {"secret": "s3cret"}
    assert after.system_secret("pagination") == before.system_secret("pagination")


@pytest.mark.parametrize(
    "versions",
    [[1, 3], [2], [1, 1], []],
    ids=["gap", "no-first", "repeat", "none"],
)
def test_a_keyring_with_damaged_versions_is_reported(tmp_path: Path, versions: list[int]) -> None:
    keyring = Keyring(tmp_path / "keyring.json")
    key = keyring.create_key("billing")
    keyring.rotate(key.key_id)
    document = json.loads(keyring.path.read_text())
    material = document["keys"][0]["versions"][0]["material"]
    document["keys"][0]["versions"] = [
        {"version": n, "created_at": "2026-01-01T00:00:00Z", "material": material} for n in versions
    ]
    keyring.path.write_text(json.dumps(document))
    with pytest.raises(KeyringError, match="restore it from a backup"):
        Keyring(keyring.path).list_keys()


def _rotate_many(path: str, count: int, start: multiprocessing.synchronize.Event) -> None:
    keyring = Keyring(path)
    start.wait(10)
    for _ in range(count):
        keyring.rotate("alias/shared")
        keyring.create_key(f"k-{uuid.uuid4()}")


def test_concurrent_rotations_lose_no_version(tmp_path: Path) -> None:
    path = str(tmp_path / "keyring.json")
    first = Keyring(path).create_key("shared")
    context = multiprocessing.get_context("fork")
    start = context.Event()
    workers = [context.Process(target=_rotate_many, args=(path, 5, start)) for _ in range(3)]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    keyring = Keyring(path)
    key = keyring.get(first.key_id)
    assert key is not None
    assert [v.number for v in key.versions] == list(range(1, 17))
    assert key.versions[0] == first.current
    assert len({v.material for v in key.versions}) == 16
    assert len(keyring.list_keys()) == 16


def test_a_pending_version_unwraps_but_does_not_wrap(tmp_path: Path) -> None:
    """`keys rotate --no-rewrap`: the new version is stored pending; it opens data keys wrapped
    under it (by a host that activated it already) but wraps none until it is activated."""
    keyring = Keyring(tmp_path / "keyring.json")
    key = keyring.create_key("billing")
    provider = LocalKeyProvider(keyring)
    data_key, _ = provider.generate_data_key(key.key_id, CONTEXT)

    staged = keyring.rotate(key.key_id, activate=False)
    assert staged.current.number == 1
    assert staged.pending is not None and staged.pending.number == 2
    reread = Keyring(keyring.path).get(key.key_id)
    assert reread is not None and reread.pending == staged.pending and reread == staged
    assert json.loads(keyring.path.read_text())["keys"][0]["active_version"] == 1
    assert local_wrap_version(provider.wrap_data_key(key.key_id, data_key, CONTEXT)) == 1
    assert local_wrap_version(provider.generate_data_key(key.key_id, CONTEXT)[1]) == 1
    # No version on top of a pending one: the hosts it was copied to would lack it.
    with pytest.raises(ValueError, match="Version 2 of the local key alias/billing is pending"):
        keyring.rotate("alias/billing")

    elsewhere = tmp_path / "activated.json"
    shutil.copy(keyring.path, elsewhere)
    activated = Keyring(elsewhere).activate(key.key_id)
    assert (activated.current.number, activated.pending) == (2, None)
    wrapped_v2 = LocalKeyProvider(Keyring(elsewhere)).wrap_data_key(key.key_id, data_key, CONTEXT)
    assert local_wrap_version(wrapped_v2) == 2
    assert provider.decrypt_data_key(key.key_id, wrapped_v2, CONTEXT) == data_key
    # Activating again changes nothing.
    assert Keyring(elsewhere).activate(key.key_id) == activated


def test_the_v2_header_carries_the_version_fingerprint_authenticated(tmp_path: Path) -> None:
    """The wrapped form under version 2 and later, built here by hand: marker, version,
    fingerprint (HMAC-SHA256 of a constant under the material, 8 bytes), then the blob whose
    associated data names all three."""
    keyring = Keyring(tmp_path / "keyring.json")
    key = keyring.create_key("billing")
    rotated = keyring.rotate(key.key_id)
    material = rotated.current.material
    fingerprint = hmac.new(material, b"openprofiles/key-fingerprint", hashlib.sha256).digest()[:8]
    assert rotated.current.fingerprint == fingerprint
    assert rotated.versions[0].fingerprint != fingerprint

    wrapped = LocalKeyProvider(keyring).wrap_data_key(key.key_id, b"D" * 32, CONTEXT)
    assert wrapped[:5] == b"\xfe" + (2).to_bytes(4, "big")
    assert wrapped[5:13] == fingerprint
    aad = length_prefixed(
        "openprofiles/local-wrap/v2", key.key_id, "2", fingerprint, canonical_context(CONTEXT)
    )
    assert aead.open_sealed(material, wrapped[13:], aad) == b"D" * 32


def test_a_version_made_by_another_rotation_is_named(tmp_path: Path) -> None:
    """Two keyrings that each rotated the key to version 2 hold different material under one
    number: unwrapping says so (not merely that the data key is damaged)."""
    keyring = Keyring(tmp_path / "keyring.json")
    key = keyring.create_key("billing")
    other_path = tmp_path / "other.json"
    shutil.copy(keyring.path, other_path)
    keyring.rotate(key.key_id)
    Keyring(other_path).rotate(key.key_id)
    _, wrapped = LocalKeyProvider(keyring).generate_data_key(key.key_id, CONTEXT)
    with pytest.raises(KeyUnusable, match="version 2 in the keyring .* is other key material"):
        LocalKeyProvider(Keyring(other_path)).decrypt_data_key(key.key_id, wrapped, CONTEXT)
