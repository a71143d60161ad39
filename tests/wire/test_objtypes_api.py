"""Object types and templates through a real boto3 client against a live server (both backends)."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from botocore.exceptions import ClientError
from tests.unit.object_types.conftest import profile_mapping
from tests.unit.object_types.objtypes_cases import RULE_CASES

from openprofiles.object_types.service import note_implicit_type_used


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _message(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Message"])


@pytest.fixture
def domain(live_server) -> str:
    name = f"d-{uuid.uuid4().hex[:10]}"
    live_server.client().create_domain(DomainName=name, DefaultExpirationDays=30)
    return name


def test_put_get_list_delete(live_server, domain):
    client = live_server.client()
    put = client.put_profile_object_type(
        DomainName=domain,
        ObjectTypeName="Customers",
        ExpirationDays=100,
        MaxProfileObjectCount=10,
        Tags={"team": "crm"},
        **profile_mapping(),
    )
    assert put["ObjectTypeName"] == "Customers"
    assert put["AllowProfileCreation"] is True
    assert put["Fields"] == profile_mapping()["Fields"]
    assert put["Keys"] == profile_mapping()["Keys"]
    assert put["Tags"] == {"team": "crm"}
    assert put["MaxAvailableProfileObjectCount"] == 1000
    assert isinstance(put["CreatedAt"], datetime) and isinstance(put["LastUpdatedAt"], datetime)

    got = client.get_profile_object_type(DomainName=domain, ObjectTypeName="Customers")
    assert got["Description"] == "CRM customers"
    assert got["ExpirationDays"] == 100
    assert got["Tags"] == {"team": "crm"}

    settings = live_server.settings
    arn = (
        f"arn:aws:profile:{settings.region}:{settings.account_id}:domains/{domain}"
        "/object-types/Customers"
    )
    client.tag_resource(resourceArn=arn, tags={"env": "test"})
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == {"team": "crm", "env": "test"}

    items = client.list_profile_object_types(DomainName=domain)["Items"]
    assert [i["ObjectTypeName"] for i in items] == ["Customers"]
    assert items[0]["Description"] == "CRM customers"

    message = client.delete_profile_object_type(DomainName=domain, ObjectTypeName="Customers")
    assert "Customers" in message["Message"]
    with pytest.raises(ClientError) as exc:
        client.get_profile_object_type(DomainName=domain, ObjectTypeName="Customers")
    assert _code(exc) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as exc:
        client.list_tags_for_resource(resourceArn=arn)
    assert _code(exc) == "ResourceNotFoundException"


def test_list_pages(live_server, domain):
    client = live_server.client()
    for name in ("t1", "t2", "t3"):
        client.put_profile_object_type(DomainName=domain, ObjectTypeName=name, **profile_mapping())
    first = client.list_profile_object_types(DomainName=domain, MaxResults=2)
    assert [i["ObjectTypeName"] for i in first["Items"]] == ["t1", "t2"]
    rest = client.list_profile_object_types(
        DomainName=domain, MaxResults=2, NextToken=first["NextToken"]
    )
    assert [i["ObjectTypeName"] for i in rest["Items"]] == ["t3"]
    assert "NextToken" not in rest


def test_templates(live_server):
    client = live_server.client()
    items = client.list_profile_object_type_templates()["Items"]
    ids = {i["TemplateId"] for i in items}
    assert {"CTR", "CTR-NoInferred", "Salesforce-Account", "Shopify-Order"} <= ids
    assert len(ids) == 20
    page = client.list_profile_object_type_templates(MaxResults=5)
    assert len(page["Items"]) == 5 and page["NextToken"]
    template = client.get_profile_object_type_template(TemplateId="Zendesk-users")
    assert template["SourceName"] == "Zendesk"
    assert template["Keys"]["_zendeskUserId"][0]["StandardIdentifiers"] == ["PROFILE", "UNIQUE"]
    with pytest.raises(ClientError) as exc:
        client.get_profile_object_type_template(TemplateId="Nope")
    assert _code(exc) == "ResourceNotFoundException"


def test_a_fetched_template_can_be_put_back(live_server, domain):
    client = live_server.client()
    template = client.get_profile_object_type_template(TemplateId="CTR")
    client.put_profile_object_type(
        DomainName=domain,
        ObjectTypeName="MyContacts",
        Description="copy of CTR",
        AllowProfileCreation=template["AllowProfileCreation"],
        Fields=template["Fields"],
        Keys=template["Keys"],
    )


def test_put_from_template_and_rule11(live_server, domain):
    client = live_server.client()
    put = client.put_profile_object_type(
        DomainName=domain, ObjectTypeName="CTR", Description="contacts", TemplateId="CTR-NoInferred"
    )
    assert put["TemplateId"] == "CTR-NoInferred"
    assert set(put["Keys"]) == {"_ctrContactId", "_phone", "_email"}
    with pytest.raises(ClientError) as exc:
        client.put_profile_object_type(
            DomainName=domain,
            ObjectTypeName="Other",
            Description="x",
            TemplateId="CTR",
            Fields=profile_mapping()["Fields"],
            Keys=profile_mapping()["Keys"],
        )
    assert _code(exc) == "BadRequestException"
    assert "or you can specify TemplateId" in _message(exc)


def test_implicit_type_is_served_and_listed_once_used(live_server, domain):
    client = live_server.client()
    got = client.get_profile_object_type(DomainName=domain, ObjectTypeName="Zendesk-tickets")
    assert got["TemplateId"] == "Zendesk-tickets"
    assert client.list_profile_object_types(DomainName=domain)["Items"] == []
    with live_server.services.write() as tx:
        note_implicit_type_used(tx, domain_name=domain, name="Zendesk-tickets")
    items = client.list_profile_object_types(DomainName=domain)["Items"]
    assert [i["ObjectTypeName"] for i in items] == ["Zendesk-tickets"]
    client.delete_profile_object_type(DomainName=domain, ObjectTypeName="Zendesk-tickets")
    assert client.list_profile_object_types(DomainName=domain)["Items"] == []


def test_unknown_domain(live_server):
    with pytest.raises(ClientError) as exc:
        live_server.client().put_profile_object_type(
            DomainName="no-such-domain", ObjectTypeName="X", **profile_mapping()
        )
    assert _code(exc) == "ResourceNotFoundException"


def test_reserved_name(live_server, domain):
    with pytest.raises(ClientError) as exc:
        live_server.client().put_profile_object_type(
            DomainName=domain, ObjectTypeName="_asset", **profile_mapping()
        )
    assert _code(exc) == "BadRequestException"
    assert "reserved for standard objects" in _message(exc)


@pytest.mark.parametrize(
    ("definition", "fragment"), [c[1:] for c in RULE_CASES], ids=[c[0] for c in RULE_CASES]
)
def test_validation_rules(live_server, domain, definition, fragment):
    with pytest.raises(ClientError) as exc:
        live_server.client().put_profile_object_type(
            DomainName=domain, ObjectTypeName="Broken", **definition
        )
    assert _code(exc) == "BadRequestException"
    assert fragment in _message(exc)


def test_rule8_across_object_types(live_server, domain):
    client = live_server.client()
    client.put_profile_object_type(DomainName=domain, ObjectTypeName="A", **profile_mapping())
    numeric = profile_mapping()
    numeric["Fields"]["id"] = {"Source": "_source.id", "ContentType": "NUMBER"}
    with pytest.raises(ClientError) as exc:
        client.put_profile_object_type(DomainName=domain, ObjectTypeName="B", **numeric)
    assert _code(exc) == "BadRequestException"
    assert "Key customerId is already defined by object type A" in _message(exc)


def test_agent_may_read_but_not_define(live_server, domain):
    agent = live_server.client("agent")
    agent.list_profile_object_types(DomainName=domain)
    with pytest.raises(ClientError) as exc:
        agent.put_profile_object_type(DomainName=domain, ObjectTypeName="X", **profile_mapping())
    assert _code(exc) == "AccessDeniedException"


def test_implicit_type_listed_after_put_profile_object(live_server, domain):
    client = live_server.client()
    client.put_profile_object(
        DomainName=domain,
        ObjectTypeName="CTR",
        Object='{"ContactId": "c-1", "CustomerEndpoint": '
        '{"Type": "TELEPHONE_NUMBER", "Address": "+12063457890"}}',
    )
    items = client.list_profile_object_types(DomainName=domain)["Items"]
    assert [i["ObjectTypeName"] for i in items] == ["CTR"]
    found = client.search_profiles(DomainName=domain, KeyName="_ctrContactId", Values=["c-1"])
    assert found["Items"][0]["PhoneNumber"] == "+12063457890"
