"""The local keyring file: permissions, atomic concurrent writes, reloads, aliases, states."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import uuid
from pathlib import Path

import pytest

from openprofiles.crypto.arns import local_key_arn
from openprofiles.crypto.errors import KeyProblem, KeyringError, KeyUnusable
from openprofiles.crypto.keyring import DEFAULT_ALIAS, Keyring
from openprofiles.crypto.providers import LocalKeyProvider


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_created_on_first_change_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "data" / "keyring.json"
    keyring = Keyring(path)
    assert not path.exists()
    # Reading does not make it (a lost keyring is not replaced by an empty one).
    assert keyring.list_keys() == []
    assert keyring.lookup("alias/openprofiles-default") is None
    assert not path.exists()
    keyring.default_key()
    assert path.exists()
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert mode(path.with_name("keyring.json.lock")) == 0o600


def test_rewrites_stay_owner_only(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path / "keyring.json")
    key = keyring.create_key("one")
    keyring.disable(key.key_id)
    assert mode(keyring.path) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_existing_directory_mode_is_left_alone(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)
    Keyring(tmp_path / "keyring.json").create_key("k")
    assert mode(tmp_path) == 0o755


def test_create_and_find(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path / "keyring.json")
    key = keyring.create_key("billing")
    assert uuid.UUID(key.key_id).version == 4
    assert [v.number for v in key.versions] == [1]
    assert len(key.current.material) == 32
    assert key.enabled
    assert keyring.get(key.key_id) == key
    assert keyring.find_by_alias("billing") == key
    assert keyring.find_by_alias("alias/billing") == key
    assert keyring.lookup(local_key_arn("eu-west-1", "111122223333", key.key_id)) == key
    assert keyring.lookup("alias/billing") == key
    assert keyring.lookup(key.key_id) == key
    assert keyring.get(str(uuid.uuid4())) is None
    assert keyring.find_by_alias("nope") is None


def test_material_never_in_repr(tmp_path: Path) -> None:
    key = Keyring(tmp_path / "keyring.json").create_key("secret")
    assert "material" not in repr(key)
    assert key.current.material.hex() not in repr(key)


def test_aliases_are_unique(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path / "keyring.json")
    keyring.create_key("team/sales")
    with pytest.raises(ValueError, match="alias 'team/sales' already exists"):
        keyring.create_key("team/sales")
    with pytest.raises(ValueError, match="already exists"):
        keyring.create_key("alias/team/sales")


@pytest.mark.parametrize("alias", ["", "has space", "é", "x" * 251, "a.b"])
def test_alias_pattern(tmp_path: Path, alias: str) -> None:
    with pytest.raises(ValueError, match="not valid"):
        Keyring(tmp_path / "keyring.json").create_key(alias)


def test_default_key_is_created_once(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path / "keyring.json")
    first = keyring.default_key()
    assert first.alias == DEFAULT_ALIAS
    assert keyring.default_key() == first
    assert Keyring(keyring.path).default_key() == first
    assert len(keyring.list_keys()) == 1


def test_disable_and_enable(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path / "keyring.json")
    key = keyring.create_key("k")
    assert not keyring.disable(key.key_id).enabled
    assert not Keyring(keyring.path).get(key.key_id).enabled  # type: ignore[union-attr]
    assert keyring.enable("alias/k").enabled
    with pytest.raises(LookupError, match="no key"):
        keyring.disable(str(uuid.uuid4()))


def test_disabled_key_is_refused_by_the_local_provider(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path / "keyring.json")
    key = keyring.create_key("k")
    provider = LocalKeyProvider(keyring)
    data_key, wrapped = provider.generate_data_key(key.key_id, {})
    keyring.disable(key.key_id)
    for call in (
        lambda: provider.generate_data_key(key.key_id, {}),
        lambda: provider.decrypt_data_key(key.key_id, wrapped, {}),
    ):
        with pytest.raises(KeyUnusable, match="is disabled") as raised:
            call()
        assert raised.value.problem is KeyProblem.DISABLED
    keyring.enable(key.key_id)
    assert provider.decrypt_data_key(key.key_id, wrapped, {}) == data_key


def test_a_running_reader_sees_keys_created_elsewhere(tmp_path: Path) -> None:
    server = Keyring(tmp_path / "keyring.json")
    assert server.list_keys() == []
    cli = Keyring(tmp_path / "keyring.json")
    created = cli.create_key("from-cli")
    assert server.get(created.key_id) == created
    assert server.find_by_alias("from-cli") == created


def test_reload_after_an_external_edit(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path / "keyring.json")
    key = keyring.create_key("k")
    assert keyring.get(key.key_id).enabled  # type: ignore[union-attr]
    document = json.loads(keyring.path.read_text())
    document["keys"][0]["enabled"] = False
    # Same size, possibly the same mtime tick: the write must still be noticed.
    tmp = keyring.path.with_name("edit.tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    os.replace(tmp, keyring.path)
    assert not keyring.get(key.key_id).enabled  # type: ignore[union-attr]


def test_corrupt_keyring_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    path.write_text("{not json")
    with pytest.raises(KeyringError, match="restore it from a backup"):
        Keyring(path).list_keys()


def _create_many(
    path: str, prefix: str, count: int, start: multiprocessing.synchronize.Event
) -> None:
    keyring = Keyring(path)
    start.wait(10)
    keyring.default_key()
    for i in range(count):
        keyring.create_key(f"{prefix}-{i}")


def test_concurrent_processes_do_not_lose_keys(tmp_path: Path) -> None:
    path = str(tmp_path / "shared" / "keyring.json")
    context = multiprocessing.get_context("fork")
    start = context.Event()
    workers = [
        context.Process(target=_create_many, args=(path, f"p{n}", 10, start)) for n in range(4)
    ]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    aliases = sorted(k.alias for k in Keyring(path).list_keys())
    expected = sorted([DEFAULT_ALIAS] + [f"p{n}-{i}" for n in range(4) for i in range(10)])
    assert aliases == expected
