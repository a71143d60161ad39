"""Domains sealed under AWS KMS keys, against moto's server mode as the KMS endpoint."""

from __future__ import annotations

import uuid

import boto3
import pytest
from botocore.exceptions import ClientError
from tests.support.server import run_server

from openprofiles.settings import Settings


@pytest.fixture
def kms_server(moto_url, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    settings = Settings(
        data_dir=tmp_path / "data", kms_endpoint_url=moto_url, aws_region="us-east-1"
    )
    with run_server(settings) as server:
        kms = boto3.client("kms", endpoint_url=moto_url, region_name="us-east-1")
        yield server, kms


def test_domain_under_a_kms_key(kms_server):
    server, kms = kms_server
    key_arn = kms.create_key()["KeyMetadata"]["Arn"]
    client = server.client()
    name = f"kms-{uuid.uuid4().hex[:8]}"
    created = client.create_domain(
        DomainName=name, DefaultExpirationDays=10, DefaultEncryptionKey=key_arn
    )
    assert created["DefaultEncryptionKey"] == key_arn
    pid = client.create_profile(DomainName=name, EmailAddress="kms@example.com")["ProfileId"]
    found = client.search_profiles(DomainName=name, KeyName="_email", Values=["KMS@example.com"])
    assert [i["ProfileId"] for i in found["Items"]] == [pid]


def test_disabled_kms_key_is_refused(kms_server):
    server, kms = kms_server
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.disable_key(KeyId=key_id)
    arn = kms.describe_key(KeyId=key_id)["KeyMetadata"]["Arn"]
    with pytest.raises(ClientError) as exc:
        server.client().create_domain(
            DomainName=f"kms-{uuid.uuid4().hex[:8]}",
            DefaultExpirationDays=10,
            DefaultEncryptionKey=arn,
        )
    assert exc.value.response["Error"]["Code"] == "BadRequestException"
    assert "disabled" in exc.value.response["Error"]["Message"]


def test_switching_a_domain_from_a_local_key_to_kms_keeps_its_data(kms_server):
    server, kms = kms_server
    client = server.client()
    name = f"kms-{uuid.uuid4().hex[:8]}"
    client.create_domain(DomainName=name, DefaultExpirationDays=10)
    pid = client.create_profile(DomainName=name, FirstName="Rotated")["ProfileId"]
    key_arn = kms.create_key()["KeyMetadata"]["Arn"]
    updated = client.update_domain(DomainName=name, DefaultEncryptionKey=key_arn)
    assert updated["DefaultEncryptionKey"] == key_arn
    # A fresh process (no cached data key) reads the data through the new key.
    server.services.keys.forget(name)
    profile = client.batch_get_profile(DomainName=name, ProfileIds=[pid])["Profiles"][0]
    assert profile["FirstName"] == "Rotated"
    # And back to the server's default key with "".
    client.update_domain(DomainName=name, DefaultEncryptionKey="")
    server.services.keys.forget(name)
    assert "DefaultEncryptionKey" not in client.get_domain(DomainName=name)
    assert (
        client.batch_get_profile(DomainName=name, ProfileIds=[pid])["Profiles"][0]["FirstName"]
        == "Rotated"
    )
