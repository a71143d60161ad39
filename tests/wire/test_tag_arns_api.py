"""The ARNs TagResource, UntagResource and ListTagsForResource take, through a real boto3 client
against a live server (both backends): an integration's ARN with its Uri as it is (the one AWS
CloudFormation builds) or percent-encoded, and an ARN of another region or account, answered
as not found with this server's region and account."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import pytest
from botocore.exceptions import ClientError


def _prefix(live_server) -> str:
    settings = live_server.settings
    return f"arn:aws:profile:{settings.region}:{settings.account_id}:domains/"


@pytest.fixture
def domain(live_server) -> str:
    name = f"d-{uuid.uuid4().hex[:10]}"
    live_server.client().create_domain(DomainName=name, DefaultExpirationDays=30)
    return name


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    error = exc.value.response["Error"]
    return str(error["Code"]), str(error["Message"])


@pytest.mark.parametrize(
    "uri",
    [
        # A fixed id: xdist workers must collect the same parameters.
        "arn:aws:connect:us-east-1:111122223333:instance/5a0c3e52-7d4b-4f7e-9c1a-2b8d6e4f1a37",
        # '%' and '/' of its own, and a space: its raw spelling is no exact encoding.
        "s3://my-bucket/exports%2F2024/a b",
    ],
)
def test_an_integration_is_tagged_by_its_raw_or_encoded_arn(live_server, domain, uri):
    client = live_server.client()
    client.put_integration(DomainName=domain, Uri=uri, ObjectTypeName="CTR", Tags={"team": "cc"})
    raw = f"{_prefix(live_server)}{domain}/integrations/{uri}"
    encoded = f"{_prefix(live_server)}{domain}/integrations/{quote(uri, safe='')}"
    assert client.list_tags_for_resource(resourceArn=raw)["tags"] == {"team": "cc"}
    client.tag_resource(resourceArn=raw, tags={"env": "test"})
    assert client.list_tags_for_resource(resourceArn=encoded)["tags"] == {
        "team": "cc",
        "env": "test",
    }
    client.untag_resource(resourceArn=raw, tagKeys=["team"])
    assert client.list_tags_for_resource(resourceArn=raw)["tags"] == {"env": "test"}
    assert client.get_integration(DomainName=domain, Uri=uri)["Tags"] == {"env": "test"}
    client.delete_integration(DomainName=domain, Uri=uri)
    for arn in (raw, encoded):
        with pytest.raises(ClientError) as exc:
            client.list_tags_for_resource(resourceArn=arn)
        assert _error(exc) == ("ResourceNotFoundException", f"The resource {arn} does not exist.")


def test_an_exact_encoding_names_the_integration_it_encodes(live_server, domain):
    """`a%3Ab` is both the encoding of the Uri `a:b` and a Uri of its own: as an ARN's last
    part it names `a:b`, as it did before raw Uris were accepted; `a%3Ab` is named by its own
    encoding."""
    client = live_server.client()
    client.put_integration(DomainName=domain, Uri="a:b", ObjectTypeName="CTR", Tags={"is": "a:b"})
    client.put_integration(DomainName=domain, Uri="a%3Ab", ObjectTypeName="CTR", Tags={"is": "%"})
    base = f"{_prefix(live_server)}{domain}/integrations/"
    assert client.list_tags_for_resource(resourceArn=base + "a%3Ab")["tags"] == {"is": "a:b"}
    assert client.list_tags_for_resource(resourceArn=base + "a:b")["tags"] == {"is": "a:b"}
    assert client.list_tags_for_resource(resourceArn=base + "a%253Ab")["tags"] == {"is": "%"}


def test_an_arn_of_another_region_or_account_names_the_servers(live_server, domain):
    client = live_server.client()
    settings = live_server.settings
    others = [
        f"arn:aws:profile:eu-west-1:{settings.account_id}:domains/{domain}",
        f"arn:aws:profile:{settings.region}:123456789012:domains/{domain}",
        # A domain that does not exist is answered alike: nothing is told about the domain.
        f"arn:aws:profile:eu-west-1:{settings.account_id}:domains/no-such-{domain}",
        f"arn:aws:profile:eu-west-1:{settings.account_id}:domains/{domain}/object-types/CTR",
    ]
    for arn in others:
        for operation, more in (
            (client.list_tags_for_resource, {}),
            (client.tag_resource, {"tags": {"a": "1"}}),
            (client.untag_resource, {"tagKeys": ["a"]}),
        ):
            with pytest.raises(ClientError) as exc:
                operation(resourceArn=arn, **more)
            assert _error(exc) == (
                "ResourceNotFoundException",
                f"The resource {arn} does not exist: this server's region is {settings.region} "
                f"and its account {settings.account_id} (OPENPROFILES_REGION, "
                f"OPENPROFILES_ACCOUNT_ID), so its resources' ARNs begin "
                f"arn:aws:profile:{settings.region}:{settings.account_id}:",
            )
    assert client.list_tags_for_resource(resourceArn=_prefix(live_server) + domain)["tags"] == {}
