"""`openprofiles keys rotate`: a local key gets new material, and the data key of every domain
under it is re-wrapped under the new version, one domain at a time, so a run that stopped is
finished by running it again; the data keys (and so the sealed records) stay the same. On
SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from tests.support.installation import install
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.app import build_services
from openprofiles.cli import main
from openprofiles.context import Services
from openprofiles.crypto.domain_keys import KeyManager, encryption_context
from openprofiles.crypto.keyring import Keyring
from openprofiles.crypto.providers import (
    KeyProvider,
    LocalKeyProvider,
    ProviderResolver,
    local_wrap_header,
    local_wrap_version,
)
from openprofiles.domains.key_rotation import domains_under_key, rewrap_domain
from openprofiles.domains.service import update_domain
from openprofiles.profiles.service import create_profile, get_profile
from openprofiles.settings import Settings
from openprofiles.store.schema import domain, profile

FIELDS = {"FirstName": "Ana", "LastName": "Lima", "PhoneNumber": "+14155550100"}


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
    """The services of a server running while the command runs (its own keyring object and
    data-key cache)."""
    built = build_services(settings)
    try:
        yield built
    finally:
        built.database.dispose()


def _wrapped_keys(services: Services) -> dict[str, tuple[str, bytes]]:
    with services.read() as tx:
        rows = tx.conn.execute(select(domain.c.name, domain.c.key_id, domain.c.wrapped_key))
        return {r.name: (r.key_id, bytes(r.wrapped_key)) for r in rows}


def _sealed_profiles(services: Services) -> dict[str, bytes]:
    with services.read() as tx:
        rows = tx.conn.execute(select(profile.c.profile_id, profile.c.sealed))
        return {r.profile_id: bytes(r.sealed) for r in rows}


def _new_profile(services: Services, domain_name: str) -> str:
    with services.write() as tx:
        return create_profile(tx, domain_name=domain_name, fields=dict(FIELDS)).profile_id


def _read_profile(services: Services, domain_name: str, profile_id: str) -> dict[str, object]:
    with services.read() as tx:
        return get_profile(tx, domain_name=domain_name, profile_id=profile_id).fields


def test_rotate_rewraps_the_domains_under_the_key_and_profiles_still_read(
    settings: Settings, server: Services
) -> None:
    options = _options(settings)
    created = CliRunner().invoke(main, ["keys", "create", "--alias", "billing", *options])
    assert created.exit_code == 0, created.output
    # Stdout is the ARN alone (scripts read it); the reminder to back up keyring.json, which
    # docs/operations.md asks for after each `keys create` and `keys rotate`, is on stderr.
    arn = created.stdout.strip()
    assert f"Back up {settings.keyring_path} now" in created.stderr
    make_domain(server, "by-alias", "alias/billing")
    make_domain(server, "by-arn", arn)
    make_domain(server, "by-default")
    ids = {name: _new_profile(server, name) for name in ("by-alias", "by-arn", "by-default")}
    for name, profile_id in ids.items():  # the server's data-key cache now holds each domain
        assert _read_profile(server, name, profile_id) == FIELDS
    wrapped_before = _wrapped_keys(server)
    sealed_before = _sealed_profiles(server)
    started = datetime.now(UTC)

    output = _ok("keys", "rotate", "alias/billing", *options)
    assert "to version 2" in output
    assert f"Back up {settings.keyring_path} now" in output
    assert "Re-wrapped the data keys of 2 domain(s) under version 2 (0 already were)" in output
    assert "Customer data was not re-encrypted" in output

    wrapped_after = _wrapped_keys(server)
    for name in ("by-alias", "by-arn"):
        key_id, wrapped = wrapped_after[name]
        assert key_id == wrapped_before[name][0]
        assert wrapped != wrapped_before[name][1]
        assert local_wrap_version(wrapped) == 2
    assert wrapped_after["by-default"] == wrapped_before["by-default"]
    # The data keys did not change, so no record was sealed again.
    assert _sealed_profiles(server) == sealed_before
    # The running server reads them (its cache is keyed by the wrapped key: it unwraps the new
    # one with the keyring it reads again), and so does a process started afterwards.
    later = build_services(settings)
    try:
        for name, profile_id in ids.items():
            assert _read_profile(server, name, profile_id) == FIELDS
            assert _read_profile(later, name, profile_id) == FIELDS
    finally:
        later.database.dispose()
    # New profiles in a re-wrapped domain, on the running server.
    fresh = _new_profile(server, "by-arn")
    assert _read_profile(server, "by-arn", fresh) == FIELDS

    listed = {k["Alias"]: k for k in json.loads(_ok("keys", "list", "--json", *options))}
    assert listed["billing"]["Versions"] == 2
    rotated_at = datetime.fromisoformat(listed["billing"]["CurrentVersionCreatedAt"])
    assert rotated_at >= started
    assert listed["openprofiles-default"]["Versions"] == 1
    text = _ok("keys", "list", *options)
    assert f"{arn}  billing  version 2 since {listed['billing']['CurrentVersionCreatedAt']}" in text


def test_rotating_the_default_key_keeps_credentials_working(
    settings: Settings, server: Services
) -> None:
    options = _options(settings)
    issued = json.loads(_ok("credentials", "create", "--role", "admin", "--json", *options))
    make_domain(server, "sales")
    profile_id = _new_profile(server, "sales")

    output = _ok("keys", "rotate", "alias/openprofiles-default", *options)
    assert "Re-wrapped the data keys of 1 domain(s) under version 2" in output
    assert local_wrap_version(_wrapped_keys(server)["sales"][1]) == 2
    # The server's own secrets come from the key's first version: the stored credential still
    # opens (a process starting checks that it does), and so do the domain's profiles.
    listed = _ok("credentials", "list", "--json", *options)
    assert issued["AccessKeyId"] in listed
    assert _read_profile(server, "sales", profile_id) == FIELDS


def test_a_kms_key_is_refused(settings: Settings) -> None:
    options = _options(install(settings))
    _ok("keys", "create", "--alias", "billing", *options)
    keyring_before = settings.keyring_path.read_bytes()
    code, output = _run(
        "keys",
        "rotate",
        "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        *options,
    )
    assert code == 1
    assert "AWS KMS rotates its own key material" in output
    assert "EnableKeyRotation" in output and "nothing needs re-wrapping" in output
    assert settings.keyring_path.read_bytes() == keyring_before


def test_an_unknown_or_disabled_key_is_refused(settings: Settings) -> None:
    options = _options(install(settings))
    _ok("keys", "create", "--alias", "billing", *options)
    code, output = _run("keys", "rotate", "alias/nope", *options)
    assert code == 1 and "There is no key alias/nope" in output
    _ok("keys", "disable", "alias/billing", "--data-dir", str(settings.data_dir))
    code, output = _run("keys", "rotate", "alias/billing", *options)
    assert code == 1 and "is disabled; enable it" in output
    code, output = _run("keys", "rotate", "alias/billing", "--no-rewrap", "--rewrap-only")
    assert code == 2 and "not both" in output
    [billing] = [k for k in Keyring(settings.keyring_path).list_keys() if k.alias == "billing"]
    assert len(billing.versions) == 1


def test_an_interrupted_rewrap_is_finished_by_running_it_again(
    settings: Settings, server: Services
) -> None:
    options = _options(settings)
    _ok("keys", "create", "--alias", "billing", *options)
    for name in ("one", "two", "three"):
        make_domain(server, name, "alias/billing")
    ids = {name: _new_profile(server, name) for name in ("one", "two", "three")}

    # The keyring step only, as a run stopped before re-wrapping would leave it ...
    key = Keyring(settings.keyring_path).rotate("alias/billing")
    assert {local_wrap_version(w) for _, w in _wrapped_keys(server).values()} == {1}
    # ... or stopped after the first domain.
    assert key is not None
    assert domains_under_key(server, key) == ["one", "three", "two"]
    assert rewrap_domain(server, "one", key)

    output = _ok("keys", "rotate", "alias/billing", "--rewrap-only", *options)
    assert "Re-wrapped the data keys of 2 domain(s) under version 2 (1 already were)" in output
    assert {local_wrap_version(w) for _, w in _wrapped_keys(server).values()} == {2}
    wrapped = _wrapped_keys(server)
    # Again: nothing left to do, nothing changed, and no new version was made.
    output = _ok("keys", "rotate", "alias/billing", "--rewrap-only", *options)
    assert "Re-wrapped the data keys of 0 domain(s) under version 2 (3 already were)" in output
    assert _wrapped_keys(server) == wrapped
    assert len(Keyring(settings.keyring_path).lookup("alias/billing").versions) == 2  # type: ignore[union-attr]
    for name, profile_id in ids.items():
        assert _read_profile(server, name, profile_id) == FIELDS


class _ChangesTheKeyFirst:
    """A real local provider that, on its first wrap, has another writer move the domain
    `moved` to another key first (an UpdateDomain committing while the re-wrap runs)."""

    def __init__(self, inner: KeyProvider, other: Services, moved: str, to_key: str) -> None:
        self.inner, self.other, self.moved, self.to_key = inner, other, moved, to_key
        self.done = False

    def generate_data_key(self, key_id: str, context: Mapping[str, str]) -> tuple[bytes, bytes]:
        return self.inner.generate_data_key(key_id, context)

    def decrypt_data_key(self, key_id: str, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        return self.inner.decrypt_data_key(key_id, wrapped, context)

    def wrap_data_key(self, key_id: str, data_key: bytes, context: Mapping[str, str]) -> bytes:
        if not self.done:
            self.done = True
            moved = self.other.keys.new_domain_key(self.moved, self.to_key)
            with self.other.write() as tx:
                update_domain(
                    tx,
                    domain_name=self.moved,
                    changes={},
                    new_key=(moved.key_id, moved.wrapped),
                )
        return self.inner.wrap_data_key(key_id, data_key, context)


class _Resolver(ProviderResolver):
    def __init__(self, settings: Settings, keyring: Keyring, provider: KeyProvider) -> None:
        super().__init__(settings, keyring)
        self.provider = provider

    def resolve(self, key_id: str) -> KeyProvider:
        super().resolve(key_id)  # the real identifier checks
        return self.provider


def test_a_key_changed_during_the_rewrap_is_not_overwritten(
    settings: Settings, server: Services
) -> None:
    options = _options(settings)
    _ok("keys", "create", "--alias", "billing", *options)
    make_domain(server, "sales", "alias/billing")
    keyring = Keyring(settings.keyring_path)
    key = keyring.rotate("alias/billing")
    default_arn = server.keys.resolver.default_key_id()
    provider = _ChangesTheKeyFirst(LocalKeyProvider(keyring), server, "sales", default_arn)
    rotating = dataclasses.replace(server, keys=KeyManager(_Resolver(settings, keyring, provider)))

    assert not rewrap_domain(rotating, "sales", key)
    key_id, wrapped = _wrapped_keys(server)["sales"]
    assert key_id == default_arn  # the other writer's change stands
    assert server.keys.resolver.resolve(key_id).decrypt_data_key(
        key_id, wrapped, encryption_context("sales")
    )


def test_no_key_material_in_output_or_logs(
    settings: Settings, server: Services, caplog: pytest.LogCaptureFixture
) -> None:
    options = _options(settings)
    caplog.set_level(logging.DEBUG)
    outputs = [_ok("keys", "create", "--alias", "billing", *options)]
    make_domain(server, "sales", "alias/billing")
    _new_profile(server, "sales")
    outputs.append(_ok("keys", "rotate", "alias/billing", "--no-rewrap", *options))
    outputs.append(_ok("keys", "rotate", "alias/billing", "--rewrap-only", *options))
    outputs.append(_ok("keys", "rotate", "alias/billing", *options))
    outputs.append(_ok("keys", "list", *options))
    outputs.append(_ok("keys", "list", "--json", *options))
    assert "re-wrapped the data key of domain sales under version 2" in caplog.text

    keyring = Keyring(settings.keyring_path)
    key = keyring.lookup("alias/billing")
    assert key is not None and len(key.versions) == 3
    key_id, wrapped = _wrapped_keys(server)["sales"]
    data_key = LocalKeyProvider(keyring).decrypt_data_key(
        key_id, wrapped, encryption_context("sales")
    )
    secrets = [v.material for v in key.versions] + [data_key]
    shown = "\n".join(outputs) + caplog.text
    for secret in secrets:
        for form in (secret.hex(), base64.b64encode(secret).decode(), repr(secret)):
            assert form not in shown


def test_a_server_with_a_keyring_older_than_the_rotation_refuses_to_start(
    settings: Settings, server: Services
) -> None:
    """A second server (or a restore) with keyring.json copied before `keys rotate` would start,
    then fail every request of the re-wrapped domains: it refuses to start instead, naming the
    key and the version it lacks."""
    from openprofiles.crypto.errors import KeyringError

    options = _options(settings)
    arn = _ok("keys", "create", "--alias", "billing", *options).splitlines()[0]
    make_domain(server, "billed", arn)
    before_rotation = settings.keyring_path.read_bytes()
    _ok("keys", "rotate", "alias/billing", *options)
    settings.keyring_path.write_bytes(before_rotation)
    with pytest.raises(KeyringError, match=r"version 2 is needed, it holds 1 to 1"):
        build_services(settings)


def test_a_domain_created_by_alias_is_checked_at_start(
    settings: Settings, server: Services
) -> None:
    """CreateDomain with DefaultEncryptionKey="alias/billing" stores the alias as the key id:
    the start-up check still finds the key and the version its data key needs."""
    from openprofiles.crypto.errors import KeyringError

    options = _options(settings)
    without_billing = settings.keyring_path.read_bytes()
    _ok("keys", "create", "--alias", "billing", *options)
    make_domain(server, "billed", "alias/billing")
    assert _wrapped_keys(server)["billed"][0] == "alias/billing"
    before_rotation = settings.keyring_path.read_bytes()
    _ok("keys", "rotate", "alias/billing", *options)
    rotated = settings.keyring_path.read_bytes()

    settings.keyring_path.write_bytes(before_rotation)
    with pytest.raises(KeyringError, match=r"version 2 is needed, it holds 1 to 1"):
        build_services(settings)
    settings.keyring_path.write_bytes(without_billing)
    with pytest.raises(KeyringError, match=r"does not hold the local key alias/billing "):
        build_services(settings)
    settings.keyring_path.write_bytes(rotated)
    build_services(settings).database.dispose()


def test_a_staged_rotation_wraps_nothing_under_the_new_version_until_activated(
    settings: Settings, server: Services
) -> None:
    """`--no-rewrap` adds the version pending: a server on this host goes on wrapping new data
    keys under the active version, so a server elsewhere whose keyring.json was not copied yet
    still opens every domain; `--rewrap-only` activates it and re-wraps."""
    options = _options(settings)
    arn = _ok("keys", "create", "--alias", "billing", *options).splitlines()[0]
    make_domain(server, "old", "alias/billing")
    elsewhere = settings.keyring_path.read_bytes()  # another host's copy, not updated yet

    output = _ok("keys", "rotate", "alias/billing", "--no-rewrap", *options)
    assert "to version 2" in output and "pending" in output
    assert "--rewrap-only" in output
    listed = {k["Alias"]: k for k in json.loads(_ok("keys", "list", "--json", *options))}
    assert listed["billing"]["ActiveVersion"] == 1
    assert listed["billing"]["PendingVersion"] == 2
    assert listed["billing"]["Versions"] == 2
    assert f"{arn}  billing  version 1 since" in _ok("keys", "list", *options)
    assert "(version 2 pending" in _ok("keys", "list", *options)
    # Another rotation on top of a pending one is refused: the hosts have only the pending one.
    code, output = _run("keys", "rotate", "alias/billing", *options)
    assert code == 1 and "is pending" in output

    # The running server (it reads the keyring file again) makes and changes domains' keys.
    make_domain(server, "new", "alias/billing")
    make_domain(server, "moved")
    moved = server.keys.new_domain_key("moved", arn)
    with server.write() as tx:
        update_domain(tx, domain_name="moved", changes={}, new_key=(moved.key_id, moved.wrapped))
    ids = {name: _new_profile(server, name) for name in ("old", "new", "moved")}
    assert {local_wrap_version(w) for _, w in _wrapped_keys(server).values()} == {1}
    # The other host, its keyring not copied yet, starts and reads all of them.
    other = dataclasses.replace(
        settings,
        data_dir=settings.data_dir.parent / "other-host",
        database_url=settings.effective_database_url,
    )
    other.keyring_path.parent.mkdir(mode=0o700)
    other.keyring_path.write_bytes(elsewhere)
    other.keyring_path.chmod(0o600)
    other_server = build_services(other)
    try:
        for name, profile_id in ids.items():
            assert _read_profile(other_server, name, profile_id) == FIELDS
    finally:
        other_server.database.dispose()

    output = _ok("keys", "rotate", "alias/billing", "--rewrap-only", *options)
    assert "Activated version 2" in output
    assert "Re-wrapped the data keys of 3 domain(s) under version 2 (0 already were)" in output
    assert {local_wrap_version(w) for _, w in _wrapped_keys(server).values()} == {2}
    make_domain(server, "newer", "alias/billing")
    assert local_wrap_version(_wrapped_keys(server)["newer"][1]) == 2
    listed = {k["Alias"]: k for k in json.loads(_ok("keys", "list", "--json", *options))}
    assert (listed["billing"]["ActiveVersion"], listed["billing"]["PendingVersion"]) == (2, None)
    assert "pending" not in _ok("keys", "list", *options)
    for name, profile_id in ids.items():
        assert _read_profile(server, name, profile_id) == FIELDS


def test_a_keyring_rotated_separately_refuses_to_start(
    settings: Settings, server: Services
) -> None:
    """Two keyrings that each rotated the key to version 2 (two hosts, or a restored keyring
    rotated again) hold different material under one number: the server refuses to start,
    naming the key and version, instead of failing every request of the domain."""
    from openprofiles.crypto.errors import KeyringError

    options = _options(settings)
    _ok("keys", "create", "--alias", "billing", *options)
    make_domain(server, "billed", "alias/billing")
    elsewhere = settings.keyring_path.parent / "elsewhere.json"
    elsewhere.write_bytes(settings.keyring_path.read_bytes())
    _ok("keys", "rotate", "alias/billing", *options)
    assert local_wrap_version(_wrapped_keys(server)["billed"][1]) == 2
    key = Keyring(elsewhere).rotate("alias/billing")  # the other host's own rotation

    wrapped_under = local_wrap_header(_wrapped_keys(server)["billed"][1]).fingerprint
    assert wrapped_under is not None
    settings.keyring_path.write_bytes(elsewhere.read_bytes())
    # Both fingerprints, as `keys list` shows them on each host.
    here = key.version(2)
    assert here is not None and here.fingerprint != wrapped_under
    with pytest.raises(
        KeyringError,
        match=rf"{key.key_id} version 2 \(fingerprint {here.fingerprint.hex()} in this "
        rf"keyring, {wrapped_under.hex()} in the data keys\) differs",
    ):
        build_services(settings)


def test_a_rotation_whose_rewrap_stops_still_reminds_to_back_up_the_keyring(
    settings: Settings, server: Services
) -> None:
    # The keyring holds the new version once the rotation starts re-wrapping; a re-wrap that
    # stopped raised before the reminder, and the --rewrap-only that finishes it makes no new
    # version, so nothing ever said to back up keyring.json (a review of the session's commits).
    options = _options(settings)
    _ok("keys", "create", "--alias", "billing", *options)
    make_domain(server, "damaged", "alias/billing")
    with server.write() as tx:
        wrapped = bytes(
            tx.conn.execute(
                select(domain.c.wrapped_key).where(domain.c.name == "damaged")
            ).scalar_one()
        )
        tx.conn.execute(
            domain.update()
            .where(domain.c.name == "damaged")
            .values(wrapped_key=wrapped[:-1] + bytes([wrapped[-1] ^ 1]))
        )

    result = CliRunner().invoke(main, ["keys", "rotate", "alias/billing", *options])

    assert result.exit_code == 1, result.output
    assert "Re-wrapping stopped after 0 domain(s)" in result.output
    assert f"Back up {settings.keyring_path} now" in result.stderr
    assert len(Keyring(settings.keyring_path).lookup("alias/billing").versions) == 2  # type: ignore[union-attr]
