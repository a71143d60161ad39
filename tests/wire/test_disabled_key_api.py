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


def test_moving_a_domain_off_its_disabled_key_names_that_key_not_the_new_one(
    server: LiveServer,
) -> None:
    # A review: UpdateDomain to a working key, while the domain's current key was disabled,
    # answered "DefaultEncryptionKey cannot be used: The local key alias/lost is disabled.", as
    # if the key asked for were at fault.
    keyring = Keyring(server.settings.keyring_path)
    keyring.create_key("lost")
    keyring.create_key("care")
    client = server.client()
    name = f"d-{uuid.uuid4().hex[:10]}"
    client.create_domain(
        DomainName=name, DefaultExpirationDays=30, DefaultEncryptionKey="alias/lost"
    )
    pid = client.create_profile(DomainName=name, FirstName="Ann")["ProfileId"]
    keyring.disable("alias/lost")

    with pytest.raises(ClientError) as exc:
        client.update_domain(DomainName=name, DefaultEncryptionKey="alias/care")

    error = exc.value.response["Error"]
    # As every request that needs the domain's data key while its key is disabled (spec §6.2).
    assert error["Code"] == "AccessDeniedException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert error["Message"] == (
        f"Domain {name}: its data key cannot be re-wrapped under alias/care: its current key "
        "alias/lost is disabled, so it cannot unwrap the data key. Enable it for the change, "
        "make the request again, then disable it again if it is to stay disabled."
    )
    assert client.get_domain(DomainName=name)["DefaultEncryptionKey"] == "alias/lost"

    # What it says works: enabled for the move, the domain goes to alias/care, and the old key
    # can be disabled again.
    keyring.enable("alias/lost")
    client.update_domain(DomainName=name, DefaultEncryptionKey="alias/care")
    keyring.disable("alias/lost")
    found = client.search_profiles(DomainName=name, KeyName="_profileId", Values=[pid])["Items"]
    assert [p["FirstName"] for p in found] == ["Ann"]
