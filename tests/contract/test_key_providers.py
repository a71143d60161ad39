"""One contract for every key provider: the local keyring, and KMS (moto's server over HTTP).

What moto 5.2.5 enforces, and so what the KMS case proves: encryption context and key identity
on Decrypt, unknown keys, key policies with Deny statements (on DescribeKey only), key state as
reported by DescribeKey. It does not refuse GenerateDataKey or Decrypt under a disabled key, so
the KMS provider checks DescribeKey before making a data key (real KMS refuses both anyway), and
the contract's KMS backend goes through tests.support.kms_proxy, which refuses them as KMS does
(DisabledException, KMSInvalidStateException): without it, "a disabled key cannot unwrap" would
fail for KMS, and a test relying on it elsewhere would prove nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from tests.support.kms_proxy import kms_proxy

from openprofiles.crypto.domain_keys import KeyManager, encryption_context
from openprofiles.crypto.errors import KeyProblem, KeyUnusable
from openprofiles.crypto.keyring import Keyring
from openprofiles.crypto.providers import KeyProvider, ProviderResolver
from openprofiles.settings import Settings

REGION = "us-east-1"
CONTEXT = encryption_context("sales")


@dataclass
class Backend:
    name: str
    resolver: ProviderResolver
    new_key: Callable[[], str]
    disable: Callable[[str], None]
    unknown_key_id: str

    def provider(self, key_id: str) -> KeyProvider:
        return self.resolver.resolve(key_id)


def local_backend(tmp_path: Path) -> Backend:
    settings = Settings(data_dir=tmp_path, region=REGION)
    keyring = Keyring(settings.keyring_path)
    resolver = ProviderResolver(settings, keyring)

    def disable(key_arn: str) -> None:
        keyring.disable(key_arn)

    return Backend(
        name="local",
        resolver=resolver,
        new_key=lambda: resolver.local_arn(keyring.create_key(f"k-{uuid.uuid4().hex[:8]}")),
        disable=disable,
        unknown_key_id=f"arn:openprofiles:kms:{REGION}:000000000000:key/{uuid.uuid4()}",
    )


def kms_backend(tmp_path: Path, moto_url: str, endpoint_url: str | None = None) -> Backend:
    """Keys made and disabled in moto, used through `endpoint_url` (default: moto itself)."""
    settings = Settings(
        data_dir=tmp_path, kms_endpoint_url=endpoint_url or moto_url, aws_region=REGION
    )
    resolver = ProviderResolver(settings, Keyring(settings.keyring_path))
    kms = kms_client(moto_url)

    def disable(key_arn: str) -> None:
        # moto answers DisableKey with a 500 when given the ARN; the bare key id works.
        kms.disable_key(KeyId=key_arn.rsplit("/", 1)[1])

    return Backend(
        name="kms",
        resolver=resolver,
        new_key=lambda: str(kms.create_key()["KeyMetadata"]["Arn"]),
        disable=disable,
        unknown_key_id=f"arn:aws:kms:{REGION}:123456789012:key/{uuid.uuid4()}",
    )


def kms_client(moto_url: str) -> Any:
    return boto3.client("kms", endpoint_url=moto_url, region_name=REGION)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials for moto, and no chance of reading the developer's real AWS config."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture(params=["local", pytest.param("kms", marks=pytest.mark.moto)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "local":
        yield local_backend(tmp_path)
    else:
        request.getfixturevalue("aws_env")
        moto_url = request.getfixturevalue("moto_url")
        with kms_proxy(moto_url) as proxy:
            yield kms_backend(tmp_path, moto_url, proxy.url)


def test_round_trip(backend: Backend) -> None:
    key_id = backend.new_key()
    provider = backend.provider(key_id)
    data_key, wrapped = provider.generate_data_key(key_id, CONTEXT)
    assert len(data_key) == 32
    assert data_key not in wrapped
    assert provider.decrypt_data_key(key_id, wrapped, dict(reversed(CONTEXT.items()))) == data_key


def test_each_data_key_is_fresh(backend: Backend) -> None:
    key_id = backend.new_key()
    provider = backend.provider(key_id)
    assert (
        provider.generate_data_key(key_id, CONTEXT)[0]
        != provider.generate_data_key(key_id, CONTEXT)[0]
    )


@pytest.mark.parametrize("context", [encryption_context("support"), {}, {**CONTEXT, "extra": "x"}])
def test_wrong_context_fails(backend: Backend, context: dict[str, str]) -> None:
    key_id = backend.new_key()
    provider = backend.provider(key_id)
    _, wrapped = provider.generate_data_key(key_id, CONTEXT)
    with pytest.raises(KeyUnusable) as raised:
        provider.decrypt_data_key(key_id, wrapped, context)
    assert raised.value.problem is KeyProblem.INVALID_CIPHERTEXT


def test_another_key_cannot_unwrap(backend: Backend) -> None:
    key_id, other = backend.new_key(), backend.new_key()
    _, wrapped = backend.provider(key_id).generate_data_key(key_id, CONTEXT)
    with pytest.raises(KeyUnusable):
        backend.provider(other).decrypt_data_key(other, wrapped, CONTEXT)


def test_damaged_wrapped_key_fails(backend: Backend) -> None:
    key_id = backend.new_key()
    provider = backend.provider(key_id)
    _, wrapped = provider.generate_data_key(key_id, CONTEXT)
    damaged = wrapped[:-1] + bytes([wrapped[-1] ^ 1])
    with pytest.raises(KeyUnusable) as raised:
        provider.decrypt_data_key(key_id, damaged, CONTEXT)
    assert raised.value.problem is KeyProblem.INVALID_CIPHERTEXT


def test_disabled_key_cannot_make_data_keys(backend: Backend) -> None:
    key_id = backend.new_key()
    backend.disable(key_id)
    with pytest.raises(KeyUnusable, match="disabled") as raised:
        backend.provider(key_id).generate_data_key(key_id, CONTEXT)
    assert raised.value.problem is KeyProblem.DISABLED
    assert key_id in raised.value.message


def test_disabled_key_cannot_unwrap(backend: Backend) -> None:
    """What makes a domain unusable once its key is disabled (after its cached data key
    expires): the wrapped data key no longer unwraps."""
    key_id = backend.new_key()
    provider = backend.provider(key_id)
    _, wrapped = provider.generate_data_key(key_id, CONTEXT)
    backend.disable(key_id)
    with pytest.raises(KeyUnusable, match="disabled") as raised:
        provider.decrypt_data_key(key_id, wrapped, CONTEXT)
    assert raised.value.problem is KeyProblem.DISABLED


def test_unknown_key(backend: Backend) -> None:
    key_id = backend.unknown_key_id
    provider = backend.provider(key_id)
    with pytest.raises(KeyUnusable, match="does not exist") as raised:
        provider.generate_data_key(key_id, CONTEXT)
    assert raised.value.problem is KeyProblem.NOT_FOUND


def test_key_manager_end_to_end(backend: Backend) -> None:
    key_id = backend.new_key()
    wrapped = KeyManager(backend.resolver).new_domain_key("sales", key_id)
    assert wrapped.key_id == key_id
    writer = KeyManager(backend.resolver).cipher_for("sales", key_id, wrapped.wrapped)
    blob = writer.seal_record("profile", "p1", {"FirstName": "Ana"})
    reader = KeyManager(backend.resolver).cipher_for("sales", key_id, wrapped.wrapped)
    assert reader.open_record("profile", "p1", blob) == {"FirstName": "Ana"}
    assert reader.digest("_email", "ana@example.com") == writer.digest("_email", "ana@example.com")


def test_wrap_an_existing_data_key(backend: Backend) -> None:
    key_id = backend.new_key()
    provider = backend.provider(key_id)
    data_key = bytes(range(32))
    wrapped = provider.wrap_data_key(key_id, data_key, CONTEXT)
    assert provider.decrypt_data_key(key_id, wrapped, CONTEXT) == data_key
    backend.disable(key_id)
    with pytest.raises(KeyUnusable, match="disabled"):
        provider.wrap_data_key(key_id, data_key, CONTEXT)


def test_key_change_keeps_records_readable(backend: Backend) -> None:
    first, second = backend.new_key(), backend.new_key()
    manager = KeyManager(backend.resolver)
    old = manager.new_domain_key("sales", first)
    blob = manager.cipher_for("sales", first, old.wrapped).seal_record("profile", "p1", {"a": 1})
    new = manager.rewrap_domain_key("sales", first, old.wrapped, second)
    reader = KeyManager(backend.resolver).cipher_for("sales", second, new.wrapped)
    assert reader.open_record("profile", "p1", blob) == {"a": 1}


def test_key_manager_refuses_a_disabled_key(backend: Backend) -> None:
    key_id = backend.new_key()
    backend.disable(key_id)
    with pytest.raises(KeyUnusable, match="disabled"):
        KeyManager(backend.resolver).new_domain_key("sales", key_id)


# KMS-only behaviour: local keys have neither policies nor a deletion schedule.


@pytest.mark.moto
@pytest.mark.usefixtures("aws_env")
def test_kms_key_policy_denial(tmp_path: Path, moto_url: str) -> None:
    deny_all = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*"}],
    }
    key_id = kms_client(moto_url).create_key(Policy=json.dumps(deny_all))["KeyMetadata"]["Arn"]
    backend = kms_backend(tmp_path, moto_url)
    with pytest.raises(KeyUnusable, match="not allowed to use KMS key") as raised:
        KeyManager(backend.resolver).new_domain_key("sales", key_id)
    assert raised.value.problem is KeyProblem.ACCESS_DENIED
    assert "kms:GenerateDataKey, kms:Encrypt and kms:Decrypt" in raised.value.message


@pytest.mark.moto
@pytest.mark.usefixtures("aws_env")
def test_kms_key_pending_deletion(tmp_path: Path, moto_url: str) -> None:
    kms = kms_client(moto_url)
    metadata = kms.create_key()["KeyMetadata"]
    kms.schedule_key_deletion(KeyId=metadata["KeyId"], PendingWindowInDays=7)
    backend = kms_backend(tmp_path, moto_url)
    with pytest.raises(KeyUnusable, match="PendingDeletion") as raised:
        KeyManager(backend.resolver).new_domain_key("sales", metadata["Arn"])
    assert raised.value.problem is KeyProblem.INVALID_STATE


@pytest.mark.moto
@pytest.mark.usefixtures("aws_env")
def test_kms_key_pending_deletion_cannot_unwrap(tmp_path: Path, moto_url: str) -> None:
    kms = kms_client(moto_url)
    key_arn = str(kms.create_key()["KeyMetadata"]["Arn"])
    with kms_proxy(moto_url) as proxy:
        provider = kms_backend(tmp_path, moto_url, proxy.url).provider(key_arn)
        _, wrapped = provider.generate_data_key(key_arn, CONTEXT)
        kms.schedule_key_deletion(KeyId=key_arn.rsplit("/", 1)[1], PendingWindowInDays=7)
        with pytest.raises(KeyUnusable, match="current state") as raised:
            provider.decrypt_data_key(key_arn, wrapped, CONTEXT)
    assert raised.value.problem is KeyProblem.INVALID_STATE


@pytest.mark.moto
@pytest.mark.usefixtures("aws_env")
def test_kms_alias_arn(tmp_path: Path, moto_url: str) -> None:
    kms = kms_client(moto_url)
    key = kms.create_key()["KeyMetadata"]
    kms.create_alias(AliasName="alias/openprofiles-test", TargetKeyId=key["KeyId"])
    alias_arn = f"arn:aws:kms:{REGION}:{key['AWSAccountId']}:alias/openprofiles-test"
    backend = kms_backend(tmp_path, moto_url)
    wrapped = KeyManager(backend.resolver).new_domain_key("sales", alias_arn)
    KeyManager(backend.resolver).cipher_for("sales", alias_arn, wrapped.wrapped)


@pytest.mark.moto
@pytest.mark.usefixtures("aws_env")
def test_move_a_domain_from_the_local_default_key_to_kms(tmp_path: Path, moto_url: str) -> None:
    backend = kms_backend(tmp_path, moto_url)
    manager = KeyManager(backend.resolver)
    old = manager.new_domain_key("sales")  # the local default key
    blob = manager.cipher_for("sales", old.key_id, old.wrapped).seal_record("profile", "p1", {})
    kms_key = backend.new_key()
    new = manager.rewrap_domain_key("sales", old.key_id, old.wrapped, kms_key)
    reader = KeyManager(backend.resolver).cipher_for("sales", kms_key, new.wrapped)
    assert reader.open_record("profile", "p1", blob) == {}
