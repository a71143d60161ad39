"""Key-material fingerprints across `keys list` and re-wrapping: operators compare keyrings across
hosts by the fingerprints `keys list` shows (the ones wrapped data keys record); a re-wrap never
counts as done a domain whose data key this keyring cannot unwrap, and gives the data keys wrapped
before versions (no fingerprint) the header, so the start-up check can compare them. On SQLite
and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from tests.support.installation import install
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.app import build_services
from openprofiles.cli import main
from openprofiles.context import Services
from openprofiles.crypto.errors import KeyringError, KeyUnusable
from openprofiles.crypto.keyring import Keyring
from openprofiles.domains.key_rotation import rewrap_domain
from openprofiles.profiles.service import create_profile, get_profile
from openprofiles.settings import Settings
from openprofiles.store.schema import domain

FIELDS = {"FirstName": "Ana", "LastName": "Lima"}


def _options(settings: Settings) -> list[str]:
    options = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        options += ["--database-url", settings.database_url]
    return options


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def _ok(*args: str) -> str:
    code, output = _run(*args)
    assert code == 0, output
    return output


@pytest.fixture
def server(settings: Settings) -> Iterator[Services]:
    built = build_services(settings)
    try:
        yield built
    finally:
        built.database.dispose()


def _wrapped(services: Services) -> dict[str, bytes]:
    with services.read() as tx:
        rows = tx.conn.execute(select(domain.c.name, domain.c.wrapped_key))
        return {r.name: bytes(r.wrapped_key) for r in rows}


def _materials(path: Path, alias: str) -> dict[int, bytes]:
    """A key's material per version, read from keyring.json by hand (either file format)."""
    [item] = [k for k in json.loads(path.read_text())["keys"] if k["alias"] == alias]
    if "versions" not in item:
        return {1: base64.b64decode(item["material"])}
    return {v["version"]: base64.b64decode(v["material"]) for v in item["versions"]}


def _fingerprint(material: bytes) -> str:
    """The documented fingerprint, computed here: HMAC-SHA256 of a constant, 8 bytes, hex."""
    return hmac.new(material, b"openprofiles/key-fingerprint", hashlib.sha256).digest()[:8].hex()


def _listed(settings: Settings, alias: str) -> dict[str, Any]:
    listed = json.loads(_ok("keys", "list", "--json", *_options(settings)))
    [item] = [k for k in listed if k["Alias"] == alias]
    return item


def test_keys_list_shows_each_versions_fingerprint_and_state(
    settings: Settings, server: Services
) -> None:
    options = _options(settings)
    _ok("keys", "create", "--alias", "billing", *options)
    make_domain(server, "billed", "alias/billing")
    _ok("keys", "rotate", "alias/billing", "--no-rewrap", *options)
    materials = _materials(settings.keyring_path, "billing")

    item = _listed(settings, "billing")
    assert item["KeyVersions"] == [
        {
            "Version": 1,
            "CreatedAt": item["CurrentVersionCreatedAt"],
            "Fingerprint": _fingerprint(materials[1]),
            "KeyMaterialState": "CURRENT",
        },
        {
            "Version": 2,
            "CreatedAt": item["KeyVersions"][1]["CreatedAt"],
            "Fingerprint": _fingerprint(materials[2]),
            "KeyMaterialState": "PENDING_ROTATION",
        },
    ]
    text = _ok("keys", "list", *options)
    assert f"  version 1  fingerprint {_fingerprint(materials[1])}  active  made " in text
    assert f"  version 2  fingerprint {_fingerprint(materials[2])}  pending  made " in text

    _ok("keys", "rotate", "alias/billing", "--rewrap-only", *options)
    item = _listed(settings, "billing")
    states = [(v["Version"], v["KeyMaterialState"]) for v in item["KeyVersions"]]
    assert states == [(1, "NON_CURRENT"), (2, "CURRENT")]
    # The fingerprint shown is the one the re-wrapped data key records in its header.
    wrapped = _wrapped(server)["billed"]
    assert wrapped[:5] == b"\xfe" + (2).to_bytes(4, "big")
    assert wrapped[5:13].hex() == item["KeyVersions"][1]["Fingerprint"]
    text = _ok("keys", "list", *options)
    assert f"  version 1  fingerprint {_fingerprint(materials[1])}  earlier  made " in text
    assert f"  version 2  fingerprint {_fingerprint(materials[2])}  active  made " in text
    for material in materials.values():
        for form in (material.hex(), base64.b64encode(material).decode(), repr(material)):
            assert form not in text and form not in json.dumps(item)


def test_keys_list_tells_keyrings_rotated_separately_apart(settings: Settings) -> None:
    """The operator's check before copying keyring.json around: the same version number with
    another fingerprint on another host is other material."""
    options = _options(install(settings))
    _ok("keys", "create", "--alias", "billing", *options)
    other = settings.data_dir.parent / "other-host"
    other.mkdir(mode=0o700)
    (other / "keyring.json").write_bytes(settings.keyring_path.read_bytes())
    (other / "keyring.json").chmod(0o600)
    _ok("keys", "rotate", "alias/billing", "--no-rewrap", *options)
    _ok("keys", "rotate", "alias/billing", "--no-rewrap", "--data-dir", str(other))

    here = _listed(settings, "billing")["KeyVersions"]
    there = json.loads(_ok("keys", "list", "--json", "--data-dir", str(other)))
    [there_billing] = [k["KeyVersions"] for k in there if k["Alias"] == "billing"]
    assert here[0]["Fingerprint"] == there_billing[0]["Fingerprint"]
    assert here[1]["Fingerprint"] != there_billing[1]["Fingerprint"]


@pytest.mark.parametrize("keyring_copy", ["rotated-separately", "older-than-rotation"])
def test_a_domain_this_keyring_cannot_unwrap_is_not_counted_as_rewrapped(
    settings: Settings, server: Services, keyring_copy: str
) -> None:
    """The data key is under version 2 (the active number here) but of other material, or under
    a version this keyring lacks: the re-wrap used to skip it as already done. It stops instead,
    naming the domain and what to do, and leaves its data key as it is."""
    options = _options(settings)
    _ok("keys", "create", "--alias", "billing", *options)
    make_domain(server, "billed", "alias/billing")
    before_rotation = settings.keyring_path.read_bytes()
    _ok("keys", "rotate", "alias/billing", *options)
    wrapped = _wrapped(server)
    needed = wrapped["billed"][5:13].hex()
    if keyring_copy == "rotated-separately":
        # The other host's keyring: rotated on its own, so its version 2 is other material.
        settings.keyring_path.write_bytes(before_rotation)
        Keyring(settings.keyring_path).rotate("alias/billing")
        expected = (
            r"version 2 in the keyring .* is other key material "
            rf"\(fingerprint \w{{16}}, not {needed}\)"
        )
    else:
        settings.keyring_path.write_bytes(before_rotation)
        expected = "holds only versions 1 to 1 of it"
    # The running server reads the replaced keyring file again.
    key = server.keys.resolver.keyring.lookup("alias/billing")
    assert key is not None

    with pytest.raises(KeyUnusable, match=expected) as raised:
        rewrap_domain(server, "billed", key)
    assert raised.value.message.startswith("The data key of the domain billed was not re-wrapped")
    assert _wrapped(server) == wrapped
    # The command refuses before re-wrapping anything (the start-up check), key and version named.
    code, output = _run("keys", "rotate", "alias/billing", "--rewrap-only", *options)
    assert code == 1 and key.key_id in output
    assert _wrapped(server) == wrapped


def test_rewrap_only_gives_data_keys_wrapped_before_versions_a_fingerprint(
    settings: Settings, server: Services
) -> None:
    options = _options(settings)
    _ok("keys", "create", "--alias", "billing", *options)
    for name in ("one", "two"):
        make_domain(server, name, "alias/billing")
    with server.write() as tx:
        profile_id = create_profile(tx, domain_name="one", fields=dict(FIELDS)).profile_id
    bare = _wrapped(server)
    assert {w[:1] for w in bare.values()} != {b"\xfe"}  # bare, as before versions

    output = _ok("keys", "rotate", "alias/billing", "--rewrap-only", *options)
    assert "Re-wrapped the data keys of 2 domain(s) under version 1 (0 already were)" in output
    fingerprint = _fingerprint(_materials(settings.keyring_path, "billing")[1])
    for wrapped in _wrapped(server).values():
        assert wrapped[:5] == b"\xfe" + (1).to_bytes(4, "big")
        assert wrapped[5:13].hex() == fingerprint
    assert _listed(settings, "billing")["KeyVersions"][0]["Fingerprint"] == fingerprint
    # Still one version, the keyring in the format releases from before versions read.
    assert json.loads(settings.keyring_path.read_text())["version"] == 1
    # The data keys did not change: the running server and a new process read the profile.
    later = build_services(settings)
    try:
        for services in (server, later):
            with services.read() as tx:
                assert get_profile(tx, domain_name="one", profile_id=profile_id).fields == FIELDS
    finally:
        later.database.dispose()
    # Once is enough.
    headed = _wrapped(server)
    output = _ok("keys", "rotate", "alias/billing", "--rewrap-only", *options)
    assert "Re-wrapped the data keys of 0 domain(s) under version 1 (2 already were)" in output
    assert _wrapped(server) == headed

    # Now checkable: a keyring whose version 1 is other material is refused at start.
    document = json.loads(settings.keyring_path.read_text())
    [item] = [k for k in document["keys"] if k["alias"] == "billing"]
    item["material"] = base64.b64encode(os.urandom(32)).decode("ascii")
    settings.keyring_path.write_text(json.dumps(document))
    with pytest.raises(
        KeyringError, match=rf"{item['id']} version 1 \(fingerprint [0-9a-f]{{16}} in"
    ):
        build_services(settings)
