"""Integrations through a real boto3 client against a live server (both backends)."""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote

import pytest
from botocore.exceptions import ClientError
from tests.unit.integrations.integ_helpers import ctr
from tests.wire.test_contact_records_http import post, search

KMS = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def _instance() -> str:
    return f"arn:aws:connect:us-east-1:111122223333:instance/{uuid.uuid4()}"


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


@pytest.fixture
def domain(live_server) -> str:
    name = f"d-{uuid.uuid4().hex[:10]}"
    live_server.client().create_domain(DomainName=name, DefaultExpirationDays=30)
    return name


def test_instance_integration_lifecycle(live_server, domain):
    client = live_server.client()
    instance = _instance()
    put = client.put_integration(DomainName=domain, Uri=instance, Tags={"team": "cc"})
    assert put["ObjectTypeName"] == "CTR" and put["Tags"] == {"team": "cc"}
    assert put["CreatedAt"] is not None
    got = client.get_integration(DomainName=domain, Uri=instance)
    assert got["Uri"] == instance and got["DomainName"] == domain
    listed = client.list_integrations(DomainName=domain)["Items"]
    assert [i["Uri"] for i in listed] == [instance]
    account = client.list_account_integrations(Uri=instance)["Items"]
    assert [i["DomainName"] for i in account] == [domain]
    arn = (
        f"arn:aws:profile:{live_server.settings.region}:{live_server.settings.account_id}"
        f":domains/{domain}/integrations/{quote(instance, safe='')}"
    )
    client.tag_resource(resourceArn=arn, tags={"env": "test"})
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == {"team": "cc", "env": "test"}
    client.delete_integration(DomainName=domain, Uri=instance)
    with pytest.raises(ClientError) as exc:
        client.get_integration(DomainName=domain, Uri=instance)
    assert _code(exc) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as exc:
        client.delete_integration(DomainName=domain, Uri=instance)
    assert _code(exc) == "ResourceNotFoundException"


def test_instance_belongs_to_one_domain(live_server, domain):
    client = live_server.client()
    other = f"d-{uuid.uuid4().hex[:10]}"
    client.create_domain(DomainName=other, DefaultExpirationDays=30)
    instance = _instance()
    client.put_integration(DomainName=domain, Uri=instance, ObjectTypeName="CTR-NoInferred")
    with pytest.raises(ClientError) as exc:
        client.put_integration(DomainName=other, Uri=instance)
    assert _code(exc) == "BadRequestException"
    assert domain in exc.value.response["Error"]["Message"]


def test_validation_errors(live_server, domain):
    client = live_server.client()
    cases = [
        {"Uri": "arn:aws:sqs:us-east-1:111122223333:q"},
        {"Uri": "arn:aws:connect:us-east-1:111122223333:queue/x"},
        {"Uri": "arn:aws:sqs:us-east-1:111122223333:q", "ObjectTypeName": "Nope"},
        {
            "Uri": "arn:aws:sqs:us-east-1:111122223333:q",
            "ObjectTypeName": "CTR",
            "ObjectTypeNames": {"ShopifyCreateCustomers": "Shopify-Customer"},
        },
        {},
    ]
    for params in cases:
        with pytest.raises(ClientError) as exc:
            client.put_integration(DomainName=domain, **params)
        assert _code(exc) == "BadRequestException", params
    with pytest.raises(ClientError) as exc:
        client.put_integration(DomainName="no-such-domain", Uri=_instance())
    assert _code(exc) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as exc:
        live_server.client("agent").put_integration(DomainName=domain, Uri=_instance())
    assert _code(exc) == "AccessDeniedException"


def test_flow_integration_echoes_settings(live_server, domain):
    client = live_server.client()
    # Under DATA_DIR/flows, the folder flows may read when no OPENPROFILES_FLOW_FOLDER_ROOTS.
    folder = live_server.settings.data_dir / "flows" / "zendesk"
    put = client.put_integration(
        DomainName=domain,
        ObjectTypeName="Zendesk-users",
        RoleArn="arn:aws:iam::111122223333:role/profiles",
        EventTriggerNames=["high-value"],
        FlowDefinition={
            "FlowName": "zendesk-export",
            "KmsArn": KMS,
            "SourceFlowConfig": {
                "ConnectorType": "S3",
                "SourceConnectorProperties": {
                    "S3": {"BucketName": "file://", "BucketPrefix": str(folder)}
                },
            },
            "Tasks": [],
            "TriggerConfig": {
                "TriggerType": "Scheduled",
                "TriggerProperties": {"Scheduled": {"ScheduleExpression": "rate(1 hours)"}},
            },
        },
    )
    assert put["Uri"].endswith(":flow/zendesk-export")
    assert put["RoleArn"] == "arn:aws:iam::111122223333:role/profiles"
    assert put["EventTriggerNames"] == ["high-value"]
    with pytest.raises(ClientError) as exc:
        client.put_integration(
            DomainName=domain,
            ObjectTypeName="Zendesk-users",
            FlowDefinition={
                "FlowName": "sf",
                "KmsArn": KMS,
                "SourceFlowConfig": {
                    "ConnectorType": "Salesforce",
                    "SourceConnectorProperties": {"Salesforce": {"Object": "Contact"}},
                },
                "Tasks": [],
                "TriggerConfig": {"TriggerType": "OnDemand"},
            },
        )
    assert _code(exc) == "BadRequestException"


def test_flow_folder_outside_the_roots_is_refused(live_server, domain):
    with pytest.raises(ClientError) as exc:
        live_server.client().put_integration(
            DomainName=domain,
            ObjectTypeName="Zendesk-users",
            FlowDefinition={
                "FlowName": "etc",
                "KmsArn": KMS,
                "SourceFlowConfig": {
                    "ConnectorType": "S3",
                    "SourceConnectorProperties": {"S3": {"BucketName": "file:///etc"}},
                },
                "Tasks": [],
                "TriggerConfig": {"TriggerType": "OnDemand"},
            },
        )
    assert _code(exc) == "BadRequestException"
    message = exc.value.response["Error"]["Message"]
    assert "outside the folders flows may read" in message
    # The folders are the server's, and so is the setting: the operator's to know.
    assert str(live_server.settings.data_dir.resolve()) not in message
    assert "OPENPROFILES_FLOW_FOLDER_ROOTS" not in message


def test_flow_folder_whose_links_loop_is_refused_saying_so(live_server, domain):
    """Not "outside the folders": its links cannot be followed at all (a 500 before)."""
    roots = live_server.settings.effective_flow_folder_roots
    loop = roots[0] / f"l{uuid.uuid4().hex[:8]}"
    roots[0].mkdir(parents=True, exist_ok=True)
    loop.symlink_to(loop)
    with pytest.raises(ClientError) as exc:
        live_server.client().put_integration(
            DomainName=domain,
            ObjectTypeName="Zendesk-users",
            FlowDefinition={
                "FlowName": "loop",
                "KmsArn": KMS,
                "SourceFlowConfig": {
                    "ConnectorType": "S3",
                    "SourceConnectorProperties": {
                        "S3": {"BucketName": "file://", "BucketPrefix": str(loop)}
                    },
                },
                "Tasks": [],
                "TriggerConfig": {"TriggerType": "OnDemand"},
            },
        )
    assert _code(exc) == "BadRequestException"
    message = exc.value.response["Error"]["Message"]
    assert message == f"The path {loop} cannot be followed: a loop of links."


def test_list_integrations_pages(live_server, domain):
    client = live_server.client()
    for _ in range(3):
        client.put_integration(
            DomainName=domain,
            Uri=f"arn:aws:sqs:us-east-1:111122223333:{uuid.uuid4().hex}",
            ObjectTypeName="CTR",
        )
    first = client.list_integrations(DomainName=domain, MaxResults=2)
    second = client.list_integrations(DomainName=domain, NextToken=first["NextToken"])
    assert len(first["Items"]) == 2 and len(second["Items"]) == 1 and "NextToken" not in second


def test_put_integration_of_an_instance_replays_its_kept_records(live_server, domain):
    """Records of an instance associated with no domain are kept; associating it through
    PutIntegration delivers them, as `openprofiles instances associate` does."""
    instance = _instance()
    kept = post(live_server, "/contact-records", json.dumps(ctr("early", instance=instance)))
    assert kept.json()["Accepted"] == 0
    put = live_server.client().put_integration(DomainName=domain, Uri=instance)
    assert put["ObjectTypeName"] == "CTR"
    assert len(search(live_server, domain, "_ctrContactId", "early")) == 1
    # Put again, nothing is replayed twice and the object type stays as given.
    live_server.client().put_integration(
        DomainName=domain, Uri=instance, ObjectTypeName="CTR-NoInferred"
    )
    assert len(search(live_server, domain, "_ctrContactId", "early")) == 1
    got = live_server.client().get_integration(DomainName=domain, Uri=instance)
    assert got["ObjectTypeName"] == "CTR-NoInferred"


def test_an_instance_takes_object_type_name_not_object_type_names(live_server, domain):
    client = live_server.client()
    instance = _instance()
    with pytest.raises(ClientError) as exc:
        client.put_integration(
            DomainName=domain, Uri=instance, ObjectTypeNames={"VOICE": "CTR-AutoAssociateOnly"}
        )
    assert _code(exc) == "BadRequestException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    message = exc.value.response["Error"]["Message"]
    assert "takes ObjectTypeName" in message and "CTR-AutoAssociateOnly" in message
    with pytest.raises(ClientError) as exc:
        client.get_integration(DomainName=domain, Uri=instance)
    assert _code(exc) == "ResourceNotFoundException"


def test_an_instance_takes_no_flow_definition(live_server, domain):
    with pytest.raises(ClientError) as exc:
        live_server.client().put_integration(
            DomainName=domain,
            Uri=_instance(),
            ObjectTypeName="CTR",
            FlowDefinition={
                "FlowName": "calls",
                "KmsArn": KMS,
                "SourceFlowConfig": {
                    "ConnectorType": "S3",
                    "SourceConnectorProperties": {"S3": {"BucketName": "calls"}},
                },
                "Tasks": [],
                "TriggerConfig": {"TriggerType": "OnDemand"},
            },
        )
    assert _code(exc) == "BadRequestException"
    assert "takes no FlowDefinition" in exc.value.response["Error"]["Message"]


@pytest.mark.parametrize(
    ("operation", "kwargs", "member"),
    [
        ("put_integration", {"Uri": "arn:aws:sqs:us-east-1:000000000000:q\u0000"}, "Uri"),
        ("get_integration", {"Uri": "arn:aws:sqs:us-east-1:000000000000:q\u0000"}, "Uri"),
        ("delete_integration", {"Uri": "arn:aws:sqs:us-east-1:000000000000:q\u0000"}, "Uri"),
        ("create_profile", {"FirstName": "Ada\u0000"}, "FirstName"),
    ],
)
def test_a_nul_character_is_a_bad_request_on_both_backends(
    live_server, domain, operation, kwargs, member
):
    """PostgreSQL refuses a NUL in text: it was a 500 there (and accepted on SQLite)."""
    client = live_server.client(parameter_validation=False)
    if operation == "put_integration":
        kwargs = {**kwargs, "ObjectTypeName": "CTR"}
    with pytest.raises(ClientError) as exc:
        getattr(client, operation)(DomainName=domain, **kwargs)
    assert _code(exc) == "BadRequestException"
    message = exc.value.response["Error"]["Message"]
    assert member in message and "NUL character" in message
    assert client.list_integrations(DomainName=domain)["Items"] == []
    assert client.get_domain(DomainName=domain)["Stats"]["ProfileCount"] == 0


def test_a_nul_character_in_a_resource_arn_is_a_bad_request(live_server, domain):
    client = live_server.client(parameter_validation=False)
    arn = live_server.client().get_domain(DomainName=domain)["DomainName"]
    resource = f"arn:aws:profile:us-east-1:123456789012:domains/{arn}/object-types/n\u0000"
    with pytest.raises(ClientError) as exc:
        client.list_tags_for_resource(resourceArn=resource)
    assert _code(exc) == "BadRequestException"
    assert "NUL character" in exc.value.response["Error"]["Message"]
