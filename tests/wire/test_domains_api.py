"""Domains, tags and Stats through a real boto3 client against a live server (both backends)."""

from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError


def _name() -> str:
    return f"d-{uuid.uuid4().hex[:10]}"


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_create_get_update_delete_domain(live_server):
    client = live_server.client()
    name = _name()
    created = client.create_domain(
        DomainName=name, DefaultExpirationDays=366, Tags={"team": "care"}
    )
    assert created["DomainName"] == name
    assert created["DefaultExpirationDays"] == 366
    assert created["Tags"] == {"team": "care"}
    assert created["CreatedAt"].tzinfo is not None

    client.create_profile(DomainName=name, FirstName="Ada")
    got = client.get_domain(DomainName=name)
    assert got["Stats"]["ProfileCount"] == 1
    assert got["Stats"]["TotalSize"] > 0

    updated = client.update_domain(DomainName=name, DefaultExpirationDays=30)
    assert updated["DefaultExpirationDays"] == 30
    assert client.get_domain(DomainName=name)["DefaultExpirationDays"] == 30

    client.delete_domain(DomainName=name)
    with pytest.raises(ClientError) as exc:
        client.get_domain(DomainName=name)
    assert _code(exc) == "ResourceNotFoundException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_domain_names_are_unique(live_server):
    client = live_server.client()
    name = _name()
    client.create_domain(DomainName=name, DefaultExpirationDays=10)
    with pytest.raises(ClientError) as exc:
        client.create_domain(DomainName=name, DefaultExpirationDays=20)
    assert _code(exc) == "BadRequestException"
    assert "already exists" in exc.value.response["Error"]["Message"]
    # The rejected request changed nothing.
    assert client.get_domain(DomainName=name)["DefaultExpirationDays"] == 10


def test_list_domains_pages_with_next_token(live_server):
    client = live_server.client()
    prefix = f"p{uuid.uuid4().hex[:6]}"
    names = sorted(f"{prefix}-{i}" for i in range(5))
    for name in names:
        client.create_domain(DomainName=name, DefaultExpirationDays=1)
    seen: list[str] = []
    token = None
    while True:
        kwargs = {"MaxResults": 2}
        if token:
            kwargs["NextToken"] = token
        page = client.list_domains(**kwargs)
        assert len(page["Items"]) <= 2
        seen += [i["DomainName"] for i in page["Items"]]
        token = page.get("NextToken")
        if not token:
            break
    assert [n for n in seen if n.startswith(prefix)] == names


def test_tampered_next_token_is_refused(live_server):
    client = live_server.client()
    for _ in range(3):
        client.create_domain(DomainName=_name(), DefaultExpirationDays=1)
    token = client.list_domains(MaxResults=1)["NextToken"]
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    with pytest.raises(ClientError) as exc:
        client.list_domains(MaxResults=1, NextToken=tampered)
    assert _code(exc) == "BadRequestException"
    assert "NextToken" in exc.value.response["Error"]["Message"]


def test_update_domain_empty_string_clears_dead_letter_queue_setting(live_server):
    client = live_server.client()
    name = _name()
    client.create_domain(DomainName=name, DefaultExpirationDays=5)
    client.update_domain(DomainName=name, Matching={"Enabled": False})
    assert client.get_domain(DomainName=name)["Matching"] == {"Enabled": False}
    client.update_domain(DomainName=name, DeadLetterQueueUrl="")
    assert "DeadLetterQueueUrl" not in client.get_domain(DomainName=name)


@pytest.mark.parametrize(
    ("kwargs", "member"),
    [
        ({"DefaultExpirationDays": 0}, "DefaultExpirationDays"),
        ({"DefaultExpirationDays": 5000}, "DefaultExpirationDays"),
    ],
)
def test_create_domain_rejects_out_of_range_values(live_server, kwargs, member):
    client = live_server.client(parameter_validation=False)
    name = _name()
    with pytest.raises(ClientError) as exc:
        client.create_domain(DomainName=name, **kwargs)
    assert _code(exc) == "BadRequestException"
    assert member in exc.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as missing:
        client.get_domain(DomainName=name)
    assert _code(missing) == "ResourceNotFoundException"


def test_create_domain_rejects_a_bad_name(live_server):
    client = live_server.client(parameter_validation=False)
    with pytest.raises(ClientError) as exc:
        client.create_domain(DomainName="bad name!", DefaultExpirationDays=5)
    assert _code(exc) == "BadRequestException"
    assert "DomainName" in exc.value.response["Error"]["Message"]


def test_create_domain_rejects_an_unknown_key(live_server):
    client = live_server.client()
    with pytest.raises(ClientError) as exc:
        client.create_domain(
            DomainName=_name(),
            DefaultExpirationDays=5,
            DefaultEncryptionKey="arn:openprofiles:kms:us-east-1:000000000000:key/nope",
        )
    assert _code(exc) == "BadRequestException"
    assert "DefaultEncryptionKey" in exc.value.response["Error"]["Message"]


def test_domain_with_a_named_local_key(live_server):
    keyring = live_server.services.keys.resolver.keyring
    key = keyring.create_key(f"k-{uuid.uuid4().hex[:8]}")
    arn = key.arn(live_server.settings.region, live_server.settings.account_id)
    client = live_server.client()
    name = _name()
    created = client.create_domain(
        DomainName=name, DefaultExpirationDays=5, DefaultEncryptionKey=arn
    )
    assert created["DefaultEncryptionKey"] == arn
    pid = client.create_profile(DomainName=name, FirstName="Grace")["ProfileId"]
    assert (
        client.batch_get_profile(DomainName=name, ProfileIds=[pid])["Profiles"][0]["FirstName"]
        == "Grace"
    )


def test_disabled_key_is_refused_with_a_clear_message(live_server):
    keyring = live_server.services.keys.resolver.keyring
    key = keyring.create_key(f"k-{uuid.uuid4().hex[:8]}")
    keyring.disable(key.key_id)
    arn = key.arn(live_server.settings.region, live_server.settings.account_id)
    with pytest.raises(ClientError) as exc:
        live_server.client().create_domain(
            DomainName=_name(), DefaultExpirationDays=5, DefaultEncryptionKey=arn
        )
    assert _code(exc) == "BadRequestException"
    assert "disabled" in exc.value.response["Error"]["Message"]


def test_tags_on_a_domain(live_server):
    client = live_server.client()
    name = _name()
    client.create_domain(DomainName=name, DefaultExpirationDays=5)
    settings = live_server.settings
    arn = f"arn:aws:profile:{settings.region}:{settings.account_id}:domains/{name}"
    client.tag_resource(resourceArn=arn, tags={"a": "1", "b": "2"})
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == {"a": "1", "b": "2"}
    client.untag_resource(resourceArn=arn, tagKeys=["a"])
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == {"b": "2"}
    assert client.get_domain(DomainName=name)["Tags"] == {"b": "2"}


def test_tagging_an_unknown_resource(live_server):
    client = live_server.client()
    arn = f"arn:aws:profile:us-east-1:000000000000:domains/{_name()}"
    with pytest.raises(ClientError) as exc:
        client.tag_resource(resourceArn=arn, tags={"a": "1"})
    assert _code(exc) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as bad:
        client.list_tags_for_resource(resourceArn="arn:aws:s3:::bucket")
    assert _code(bad) == "BadRequestException"


def test_delete_domain_removes_its_profiles_and_keys(live_server):
    client = live_server.client()
    name = _name()
    client.create_domain(DomainName=name, DefaultExpirationDays=5)
    client.create_profile(DomainName=name, PhoneNumber="+14155550100")
    client.delete_domain(DomainName=name)
    client.create_domain(DomainName=name, DefaultExpirationDays=5)
    found = client.search_profiles(DomainName=name, KeyName="_phone", Values=["+14155550100"])
    assert found["Items"] == []
