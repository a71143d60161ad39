"""A domain whose key was disabled after it was created (both backends, boto3 against a live
server): its data requests answer AccessDeniedException with what to do about the key (spec
§6.2), not an InternalServerException that says nothing; enabling the key brings it all back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from tests.support.backends import database_url_for
from tests.support.server import LiveServer, run_server

from openprofiles.crypto.keyring import Keyring
from openprofiles.settings import Settings


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    with database_url_for(request.param, tmp_path) as url:
        # No data-key cache: the disabled key is noticed at the next request.
        settings = Settings(data_dir=tmp_path / "data", database_url=url, data_key_cache_seconds=0)
        with run_server(settings) as live:
            yield live


def test_a_disabled_key_is_access_denied_with_its_reason(server: LiveServer) -> None:
    keyring = Keyring(server.settings.keyring_path)
    key = keyring.create_key("tenant")
    arn = key.arn(server.settings.region, server.settings.account_id)
    client = server.client()
    name = f"d-{uuid.uuid4().hex[:10]}"
    client.create_domain(DomainName=name, DefaultExpirationDays=30, DefaultEncryptionKey=arn)
    pid = client.create_profile(DomainName=name, FirstName="Ann")["ProfileId"]

    keyring.disable(key.key_id)
    with pytest.raises(ClientError) as exc:
        client.search_profiles(DomainName=name, KeyName="_profileId", Values=[pid])
    error = exc.value.response["Error"]
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert error["Code"] == "AccessDeniedException"
    assert "disabled" in error["Message"] and name in error["Message"]
    with pytest.raises(ClientError) as exc:
        client.create_profile(DomainName=name, FirstName="Bo")
    assert exc.value.response["Error"]["Code"] == "AccessDeniedException"

    keyring.enable(key.key_id)
    found = client.search_profiles(DomainName=name, KeyName="_profileId", Values=[pid])["Items"]
    assert [p["FirstName"] for p in found] == ["Ann"]
