"""An agent-role credential is not shown the key and queue details the agent pages hide (boto3
against a live server, both backends): GetDomain leaves out DefaultEncryptionKey (a KMS key's
ARN holds the account id) and DeadLetterQueueUrl, and a data request on a domain whose key
cannot be used (disabled, or its KMS out of reach) answers what the agent pages say instead of
the key provider's message. Admins still get both, to act on them."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from tests.support.server import run_server
from tests.wire.test_objects_api import CRM

from openprofiles.crypto.keyring import Keyring
from openprofiles.settings import Settings

REGION = "us-east-1"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Fake credentials for moto, and no chance of reading the developer's real AWS config."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


def _error(call: Callable[..., Any], **params: Any) -> tuple[int, str, str]:
    with pytest.raises(ClientError) as exc:
        call(**params)
    response = exc.value.response
    status = response["ResponseMetadata"]["HTTPStatusCode"]
    return status, str(response["Error"]["Code"]), str(response["Error"]["Message"])


def _data_requests(client: Any, domain: str, profile_id: str) -> dict[str, tuple[int, str, str]]:
    """The outcome of each data request an agent may make on the domain."""
    record = json.dumps({"id": "c9", "email": "kofi@example.com"})
    return {
        "SearchProfiles": _error(
            client.search_profiles, DomainName=domain, KeyName="_profileId", Values=[profile_id]
        ),
        "CreateProfile": _error(client.create_profile, DomainName=domain, FirstName="Ama"),
        # On SQLite answered later, with the turn's other PutProfileObject calls (coalesce).
        "PutProfileObject": _error(
            client.put_profile_object, DomainName=domain, ObjectTypeName="Crm", Object=record
        ),
        "BatchPutProfileObject": _error(
            client.batch_put_profile_object,
            DomainName=domain,
            ObjectTypeName="Crm",
            Items=[{"Id": "1", "Object": record}],
        ),
    }


def _domain_with_profile(client: Any, key_arn: str, **config: Any) -> tuple[str, str]:
    name = f"k-{uuid.uuid4().hex[:10]}"
    client.create_domain(
        DomainName=name, DefaultExpirationDays=30, DefaultEncryptionKey=key_arn, **config
    )
    client.put_profile_object_type(DomainName=name, ObjectTypeName="Crm", **CRM)
    return name, client.create_profile(DomainName=name, FirstName="Kofi")["ProfileId"]


@pytest.fixture
def uncached(settings: Settings) -> Settings:
    # No data-key cache: a key disabled is noticed at the next request.
    return replace(settings, data_key_cache_seconds=0)


def test_an_agent_is_told_a_disabled_key_in_plain_words(uncached: Settings) -> None:
    with run_server(uncached) as server:
        keyring = Keyring(server.settings.keyring_path)
        key = keyring.create_key("tenant")
        arn = key.arn(server.settings.region, server.settings.account_id)
        domain, profile_id = _domain_with_profile(server.client(), arn)
        keyring.disable(key.key_id)

        for operation, (status, code, message) in _data_requests(
            server.client("agent"), domain, profile_id
        ).items():
            assert (status, code) == (403, "AccessDeniedException"), operation
            assert "customer data cannot be read at the moment" in message, (operation, message)
            assert "Ask an administrator" in message, (operation, message)
            for detail in (key.key_id, "arn:", "disabled", "keys enable"):
                assert detail not in message, (operation, detail, message)
        for operation, (status, code, message) in _data_requests(
            server.client(), domain, profile_id
        ).items():
            assert (status, code) == (403, "AccessDeniedException"), operation
            assert key.key_id in message and "disabled" in message, (operation, message)


@pytest.mark.moto
def test_an_agent_is_told_an_unreachable_kms_in_plain_words(
    uncached: Settings, moto_url: str, aws_env: None
) -> None:
    working = replace(uncached, kms_endpoint_url=moto_url, aws_region=REGION)
    kms = boto3.client("kms", endpoint_url=moto_url, region_name=REGION)
    key_arn = kms.create_key()["KeyMetadata"]["Arn"]
    with run_server(working) as server:
        domain, profile_id = _domain_with_profile(server.client(), key_arn)
    # A port bound and held here but never listening: a connection to it is refused at once.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed:
        closed.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{closed.getsockname()[1]}"
        with run_server(replace(working, kms_endpoint_url=endpoint)) as server:
            agent = _data_requests(server.client("agent"), domain, profile_id)
            admin = _data_requests(server.client(), domain, profile_id)
    for operation, (status, code, message) in agent.items():
        assert (status, code) == (500, "InternalServerException"), operation
        assert "customer data cannot be read right now" in message, (operation, message)
        assert "ask an administrator" in message, (operation, message)
        for detail in (key_arn, key_arn.rsplit("/", 1)[1], "arn:", "KMS", endpoint):
            assert detail not in message, (operation, detail, message)
    for operation, (status, code, message) in admin.items():
        assert (status, code) == (500, "InternalServerException"), operation
        assert key_arn in message, (operation, message)


@pytest.mark.moto
def test_get_domain_leaves_the_key_and_the_queue_out_for_an_agent(
    settings: Settings, moto_url: str, aws_env: None
) -> None:
    sqs = boto3.client("sqs", endpoint_url=moto_url, region_name=REGION)
    queue = sqs.create_queue(QueueName=f"dlq-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    served = replace(settings, sqs_endpoint_url=moto_url, aws_region=REGION)
    with run_server(served) as server:
        key = Keyring(server.settings.keyring_path).create_key("tenant")
        arn = key.arn(server.settings.region, server.settings.account_id)
        domain, _ = _domain_with_profile(server.client(), arn, DeadLetterQueueUrl=queue)
        seen_by_admin = server.client().get_domain(DomainName=domain)
        seen_by_agent = server.client("agent").get_domain(DomainName=domain)
        listed = server.client("agent").list_domains()["Items"]
    assert seen_by_admin["DefaultEncryptionKey"] == arn
    assert seen_by_admin["DeadLetterQueueUrl"] == queue
    assert "DefaultEncryptionKey" not in seen_by_agent
    assert "DeadLetterQueueUrl" not in seen_by_agent
    # The rest is as the admin sees it.
    for member in ("DomainName", "DefaultExpirationDays", "Stats", "CreatedAt"):
        assert seen_by_agent[member] == seen_by_admin[member], member
    assert [d["DomainName"] for d in listed] == [domain]
    assert not {"DefaultEncryptionKey", "DeadLetterQueueUrl"} & set(listed[0])


def test_get_profile_object_type_leaves_its_key_out_for_an_agent(settings: Settings) -> None:
    with run_server(settings) as server:
        key = Keyring(server.settings.keyring_path).create_key("type-key")
        arn = key.arn(server.settings.region, server.settings.account_id)
        domain, _ = _domain_with_profile(server.client(), arn)
        server.client().put_profile_object_type(
            DomainName=domain, ObjectTypeName="Sealed", EncryptionKey=arn, **CRM
        )
        seen_by_admin = server.client().get_profile_object_type(
            DomainName=domain, ObjectTypeName="Sealed"
        )
        seen_by_agent = server.client("agent").get_profile_object_type(
            DomainName=domain, ObjectTypeName="Sealed"
        )
    assert seen_by_admin["EncryptionKey"] == arn
    assert "EncryptionKey" not in seen_by_agent
    assert seen_by_agent["Keys"] == seen_by_admin["Keys"]
