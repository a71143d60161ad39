"""An API caller is told what is wrong with a key, never where the server keeps its keyring or
which command its operator should run (boto3 against a live server, both backends). A
CreateDomain with an unknown local key answered "... does not exist in the keyring
/srv/.../keyring.json; list the keys with `openprofiles keys list` ..."; the operator still gets
that message, from the CLI and the logs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from tests.support.backends import database_url_for
from tests.support.server import LiveServer, run_server
from tests.wire.test_objects_api import CRM

from openprofiles.crypto.keyring import Keyring
from openprofiles.settings import Settings


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    with database_url_for(request.param, tmp_path) as url:
        # No data-key cache: a key disabled is noticed at the next request.
        settings = Settings(data_dir=tmp_path / "data", database_url=url, data_key_cache_seconds=0)
        with run_server(settings) as live:
            yield live


def refusal(call: Any, **params: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as exc:
        call(**params)
    error = exc.value.response["Error"]
    return str(error["Code"]), str(error["Message"])


def assert_no_server_detail(server: LiveServer, message: str) -> None:
    for detail in (str(server.settings.data_dir), "keyring.json", "openprofiles ", "`"):
        assert detail not in message, (detail, message)


def test_an_unknown_key_is_named_without_the_keyring(server: LiveServer) -> None:
    client = server.client()
    arn = f"arn:openprofiles:kms:{server.settings.region}:{server.settings.account_id}:key/"
    arn += str(uuid.uuid4())
    name = f"d-{uuid.uuid4().hex[:10]}"
    code, message = refusal(
        client.create_domain, DomainName=name, DefaultExpirationDays=30, DefaultEncryptionKey=arn
    )
    assert code == "BadRequestException"
    assert message == f"DefaultEncryptionKey cannot be used: The local key {arn} does not exist."
    code, message = refusal(
        client.create_domain,
        DomainName=name,
        DefaultExpirationDays=30,
        DefaultEncryptionKey="alias/no-such-key",
    )
    assert code == "BadRequestException"
    assert message == (
        "DefaultEncryptionKey cannot be used: There is no local key with the alias "
        "alias/no-such-key."
    )
    client.create_domain(DomainName=name, DefaultExpirationDays=30)
    code, message = refusal(
        client.put_profile_object_type,
        DomainName=name,
        ObjectTypeName="Crm",
        **{**CRM, "EncryptionKey": arn},
    )
    assert (code, message) == (
        "BadRequestException",
        f"EncryptionKey cannot be used: The local key {arn} does not exist.",
    )


def test_a_disabled_key_is_named_without_the_command(server: LiveServer) -> None:
    keyring = Keyring(server.settings.keyring_path)
    key = keyring.create_key("tenant")
    arn = key.arn(server.settings.region, server.settings.account_id)
    client = server.client()
    name = f"d-{uuid.uuid4().hex[:10]}"
    client.create_domain(DomainName=name, DefaultExpirationDays=30, DefaultEncryptionKey=arn)
    keyring.disable(key.key_id)
    code, message = refusal(client.create_profile, DomainName=name, FirstName="Bo")
    assert code == "AccessDeniedException"
    assert message == f"Domain {name}: The local key {arn} is disabled."
    other = f"d-{uuid.uuid4().hex[:10]}"
    code, message = refusal(
        client.create_domain, DomainName=other, DefaultExpirationDays=30, DefaultEncryptionKey=arn
    )
    assert code == "BadRequestException"
    assert_no_server_detail(server, message)
    assert "disabled" in message
