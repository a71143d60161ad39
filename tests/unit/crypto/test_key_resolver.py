"""Which provider serves which key identifier, and how KMS's refusals read."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from tests.support.kms_proxy import kms_proxy
from tests.support.ports import free_port

from openprofiles.crypto.arns import is_aws_kms_arn, local_key_arn, parse_local_key_arn
from openprofiles.crypto.errors import KeyProblem, KeyUnusable
from openprofiles.crypto.keyring import Keyring
from openprofiles.crypto.providers import KmsKeyProvider, LocalKeyProvider, ProviderResolver
from openprofiles.settings import Settings

KMS_ARN = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.fixture
def resolver(tmp_path: Path) -> ProviderResolver:
    settings = Settings(data_dir=tmp_path, region="eu-west-2", account_id="123456789012")
    return ProviderResolver(settings, Keyring(settings.keyring_path))


def test_local_arn_round_trip() -> None:
    arn = local_key_arn("eu-west-2", "123456789012", "6f1c7a8e-3b7c-4d53-9a59-9d1f0f3c0e11")
    assert (
        arn
        == "arn:openprofiles:kms:eu-west-2:123456789012:key/6f1c7a8e-3b7c-4d53-9a59-9d1f0f3c0e11"
    )
    parsed = parse_local_key_arn(arn)
    assert parsed is not None
    assert parsed.key_id == "6f1c7a8e-3b7c-4d53-9a59-9d1f0f3c0e11"
    assert parse_local_key_arn(KMS_ARN) is None


@pytest.mark.parametrize(
    "arn",
    [
        KMS_ARN,
        "arn:aws:kms:us-east-1:111122223333:alias/my-key",
        "arn:aws-cn:kms:cn-north-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/mrk-1234abcd",
    ],
)
def test_aws_arns_go_to_kms(resolver: ProviderResolver, arn: str) -> None:
    assert is_aws_kms_arn(arn)
    assert isinstance(resolver.resolve(arn), KmsKeyProvider)


def test_local_identifiers_go_to_the_keyring(resolver: ProviderResolver) -> None:
    key = resolver.keyring.create_key("team-a")
    assert isinstance(resolver.resolve(resolver.local_arn(key)), LocalKeyProvider)
    assert isinstance(resolver.resolve("alias/team-a"), LocalKeyProvider)


def test_default_key_id_is_the_local_default_arn(resolver: ProviderResolver) -> None:
    default = resolver.keyring.default_key()
    assert resolver.default_key_id() == (
        f"arn:openprofiles:kms:eu-west-2:123456789012:key/{default.key_id}"
    )


def test_unknown_alias(resolver: ProviderResolver) -> None:
    with pytest.raises(KeyUnusable, match="no local key with the alias alias/nope") as raised:
        resolver.resolve("alias/nope")
    assert raised.value.problem is KeyProblem.NOT_FOUND


@pytest.mark.parametrize(
    "key_id", ["", "1234abcd-12ab-34cd-56ef-1234567890ab", "arn:aws:s3:::bucket", "alias/"]
)
def test_other_identifiers_are_refused_listing_the_accepted_forms(
    resolver: ProviderResolver, key_id: str
) -> None:
    with pytest.raises(
        KeyUnusable, match="not a key identifier OpenProfiles understands"
    ) as raised:
        resolver.resolve(key_id)
    assert raised.value.problem is KeyProblem.INVALID_IDENTIFIER
    assert "alias/NAME" in raised.value.message
    assert "arn:aws:kms:" in raised.value.message


def test_unreachable_kms_endpoint_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    endpoint = f"http://127.0.0.1:{free_port()}"  # a port nobody listens on
    provider = KmsKeyProvider(endpoint, "eu-west-1")
    with pytest.raises(KeyUnusable, match="could not reach the KMS endpoint") as raised:
        provider.generate_data_key(KMS_ARN, {"openprofiles:domain": "d"})
    assert endpoint in raised.value.message
    assert raised.value.transient


@pytest.mark.parametrize(
    ("code", "problem", "words"),
    [
        ("DisabledException", KeyProblem.DISABLED, "is disabled; enable it or choose another key"),
        ("KMSInvalidStateException", KeyProblem.INVALID_STATE, "pending deletion"),
        ("NotFoundException", KeyProblem.NOT_FOUND, "does not exist"),
        ("IncorrectKeyException", KeyProblem.INVALID_CIPHERTEXT, "was not made with"),
        ("ThrottlingException", KeyProblem.UNAVAILABLE, "try again later"),
        ("UnrecognizedClientException", KeyProblem.CREDENTIALS, "rejected OpenProfiles' AWS"),
    ],
)
def test_kms_decrypt_errors_moto_cannot_produce(
    moto_url: str, code: str, problem: KeyProblem, words: str
) -> None:
    # moto does not refuse Decrypt under a disabled or pending-deletion key, nor throttle, so
    # what real KMS answers comes from tests.support.kms_proxy, in front of moto's server: a
    # data key is wrapped for real, then its Decrypt is refused on the wire with `code`.
    with kms_proxy(moto_url) as proxy:
        client = boto3.client(
            "kms",
            endpoint_url=proxy.url,
            region_name="eu-west-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            # One attempt: botocore retries throttling itself (the server's client does too).
            config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
        )
        key_arn = client.create_key()["KeyMetadata"]["Arn"]
        provider = KmsKeyProvider(proxy.url, "eu-west-1", client=client)
        context = {"openprofiles:domain": "d"}
        _, wrapped = provider.generate_data_key(key_arn, context)
        proxy.refuse("Decrypt", code)
        with pytest.raises(KeyUnusable, match=words) as raised:
            provider.decrypt_data_key(key_arn, wrapped, context)
        assert raised.value.problem is problem
        # The refusal was the one answer: the next Decrypt unwraps the same data key.
        assert len(provider.decrypt_data_key(key_arn, wrapped, context)) == 32


def test_missing_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    provider = KmsKeyProvider("http://127.0.0.1:9", "eu-west-1")
    with pytest.raises(KeyUnusable, match="No AWS credentials") as raised:
        provider.generate_data_key(KMS_ARN, {})
    assert raised.value.problem is KeyProblem.CREDENTIALS
