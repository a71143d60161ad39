"""PutProfileObjectType's EncryptionKey is checked exactly as CreateDomain's DefaultEncryptionKey
(the same resolver and proof, the same explanation): a key the domain would refuse is refused
for the type too, and nothing is stored; a usable key is kept and echoed. Through boto3 against
a live server, on both backends."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError
from tests.unit.object_types.conftest import profile_mapping

from openprofiles.crypto.keyring import Keyring


@pytest.fixture
def domain(live_server: Any) -> str:
    name = f"d-{uuid.uuid4().hex[:10]}"
    live_server.client().create_domain(DomainName=name, DefaultExpirationDays=30)
    return name


def _keyring(live_server: Any) -> Keyring:
    return Keyring(live_server.settings.keyring_path)


def _arn(live_server: Any, key: Any) -> str:
    return str(key.arn(live_server.settings.region, live_server.settings.account_id))


def _disabled_key(live_server: Any) -> str:
    keyring = _keyring(live_server)
    key = keyring.create_key(f"off-{uuid.uuid4().hex[:8]}")
    keyring.disable(key.key_id)
    return _arn(live_server, key)


def _refusal(call: Callable[[], Any]) -> tuple[str, str]:
    with pytest.raises(ClientError) as exc:
        call()
    error = exc.value.response["Error"]
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return str(error["Code"]), str(error["Message"])


@pytest.mark.parametrize(
    "bad_key",
    [
        lambda server: "garbage",
        lambda server: f"alias/none-{uuid.uuid4().hex[:8]}",
        _disabled_key,
    ],
    ids=["not-a-key-identifier", "unknown-alias", "disabled-key"],
)
def test_a_key_create_domain_refuses_is_refused_with_the_same_explanation(
    live_server: Any, domain: str, bad_key: Callable[[Any], str]
) -> None:
    client = live_server.client()
    key = bad_key(live_server)
    domain_code, domain_message = _refusal(
        lambda: client.create_domain(
            DomainName=f"d-{uuid.uuid4().hex[:10]}",
            DefaultExpirationDays=30,
            DefaultEncryptionKey=key,
        )
    )
    type_code, type_message = _refusal(
        lambda: client.put_profile_object_type(
            DomainName=domain, ObjectTypeName="Keyed", EncryptionKey=key, **profile_mapping()
        )
    )
    assert domain_code == type_code == "BadRequestException"
    assert domain_message.startswith("DefaultEncryptionKey cannot be used: ")
    assert type_message.startswith("EncryptionKey cannot be used: ")
    assert domain_message.removeprefix("DefaultEncryptionKey") == type_message.removeprefix(
        "EncryptionKey"
    )
    with pytest.raises(ClientError) as missing:
        client.get_profile_object_type(DomainName=domain, ObjectTypeName="Keyed")
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_a_usable_key_is_kept_and_echoed(live_server: Any, domain: str) -> None:
    client = live_server.client()
    alias = f"types-{uuid.uuid4().hex[:8]}"
    key = _keyring(live_server).create_key(alias)
    for given in (_arn(live_server, key), f"alias/{alias}"):
        put = client.put_profile_object_type(
            DomainName=domain, ObjectTypeName="Keyed", EncryptionKey=given, **profile_mapping()
        )
        assert put["EncryptionKey"] == given
        got = client.get_profile_object_type(DomainName=domain, ObjectTypeName="Keyed")
        assert got["EncryptionKey"] == given
    # Objects of the type are stored and read back (sealed under the domain's data key).
    client.put_profile_object(
        DomainName=domain,
        ObjectTypeName="Keyed",
        Object='{"id": "k-1", "email": "keyed@example.com", "first": "Kay"}',
    )
    found = client.search_profiles(
        DomainName=domain, KeyName="_email", Values=["keyed@example.com"]
    )["Items"]
    assert [p.get("FirstName") for p in found] == ["Kay"]
