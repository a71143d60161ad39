"""An agent-role credential may not write the objects an integration feeds (auth.policy), through a
real boto3 client against a live server (both backends): contact records (CTR, a type built on a
contact-record template) and an integration's object type. PutProfileObject and
BatchPutProfileObject answer AccessDeniedException and nothing is written; an agent could
otherwise overwrite a contact's stored record, or invent contacts linked to profiles, that the
contact feeds take only from admins. Agents still write objects of types of their own, and
admins write every type."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError
from tests.unit.integrations.integ_helpers import ctr
from tests.wire.test_objects_api import CRM

FED = "is fed by an integration"


@pytest.fixture
def domain(live_server: Any) -> str:
    name = f"fed-{uuid.uuid4().hex[:10]}"
    live_server.client().create_domain(DomainName=name, DefaultExpirationDays=30)
    return name


def _instance() -> str:
    return f"arn:aws:connect:us-east-1:111122223333:instance/{uuid.uuid4()}"


def _refused(exc: pytest.ExceptionInfo[ClientError], type_name: str, operation: str) -> None:
    response = exc.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert response["Error"]["Code"] == "AccessDeniedException"
    message = response["Error"]["Message"]
    assert f"The object type {type_name} {FED}" in message, message
    assert f"only an admin may write its objects with {operation}" in message, message


def _stored_contacts(client: Any, domain: str, phone: str, type_name: str) -> dict[str, Any]:
    """The contact records of the profile with `phone`, by ContactId ({} when no profile)."""
    found = client.search_profiles(DomainName=domain, KeyName="_phone", Values=[phone])["Items"]
    records: dict[str, Any] = {}
    for profile in found:
        for item in client.list_profile_objects(
            DomainName=domain, ObjectTypeName=type_name, ProfileId=profile["ProfileId"]
        )["Items"]:
            record = json.loads(item["Object"])
            records[record["ContactId"]] = record
    return records


def test_an_agent_cannot_overwrite_or_invent_contact_records(live_server: Any, domain: str) -> None:
    admin, agent = live_server.client(), live_server.client("agent")
    instance = _instance()
    admin.put_integration(DomainName=domain, Uri=instance, ObjectTypeName="CTR")
    phone = "+12065550188"
    real = ctr("c-real", instance=instance, address=phone, Attributes={"note": "genuine"})
    # An admin may write contact records directly.
    admin.put_profile_object(DomainName=domain, ObjectTypeName="CTR", Object=json.dumps(real))

    forged = dict(real, Attributes={"note": "forged"}, LastUpdateTimestamp="2030-01-01T00:00:00Z")
    with pytest.raises(ClientError) as exc:
        agent.put_profile_object(DomainName=domain, ObjectTypeName="CTR", Object=json.dumps(forged))
    _refused(exc, "CTR", "PutProfileObject")
    invented = ctr("c-invented", instance=instance, address=phone)
    with pytest.raises(ClientError) as exc:
        agent.batch_put_profile_object(
            DomainName=domain,
            ObjectTypeName="CTR",
            Items=[{"Id": "1", "Object": json.dumps(invented)}],
        )
    _refused(exc, "CTR", "BatchPutProfileObject")

    stored = _stored_contacts(admin, domain, phone, "CTR")
    assert set(stored) == {"c-real"}
    assert stored["c-real"]["Attributes"] == {"note": "genuine"}
    assert stored["c-real"]["LastUpdateTimestamp"] == real["LastUpdateTimestamp"]


@pytest.mark.parametrize("template", ["CTR-NoInferred", "CTR-AutoAssociateOnly"])
def test_types_built_on_a_contact_record_template_are_refused(
    live_server: Any, domain: str, template: str
) -> None:
    """Refused with or without an instance integration: such a type holds contact records."""
    admin, agent = live_server.client(), live_server.client("agent")
    admin.put_profile_object_type(
        DomainName=domain, ObjectTypeName="Calls", TemplateId=template, Description="calls"
    )
    record = json.dumps(ctr(f"c-{uuid.uuid4().hex[:8]}", address="+12065550111"))
    for type_name in ("Calls", template):  # the defined type, and the implicit one
        with pytest.raises(ClientError) as exc:
            agent.put_profile_object(DomainName=domain, ObjectTypeName=type_name, Object=record)
        _refused(exc, type_name, "PutProfileObject")
        with pytest.raises(ClientError) as exc:
            agent.batch_put_profile_object(
                DomainName=domain, ObjectTypeName=type_name, Items=[{"Id": "a", "Object": record}]
            )
        _refused(exc, type_name, "BatchPutProfileObject")
    assert _stored_contacts(admin, domain, "+12065550111", "Calls") == {}


def test_an_integrations_object_type_is_refused_whole(live_server: Any, domain: str) -> None:
    """A type of one's own that an integration ingests as (an instance's, a flow's, or by
    ObjectTypeNames another integration's): the batch is refused whole, its valid items
    included."""
    admin, agent = live_server.client(), live_server.client("agent")
    for type_name in ("Calls", "Exports", "Tickets"):
        admin.put_profile_object_type(DomainName=domain, ObjectTypeName=type_name, **CRM)
    admin.put_integration(DomainName=domain, Uri=_instance(), ObjectTypeName="Calls")
    # Under DATA_DIR/flows, the folder flows may read when no OPENPROFILES_FLOW_FOLDER_ROOTS.
    folder = live_server.settings.data_dir / "flows" / uuid.uuid4().hex
    admin.put_integration(
        DomainName=domain,
        ObjectTypeName="Exports",
        FlowDefinition={
            "FlowName": f"exports-{uuid.uuid4().hex[:8]}",
            "KmsArn": "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "SourceFlowConfig": {
                "ConnectorType": "S3",
                "SourceConnectorProperties": {
                    "S3": {"BucketName": "file://", "BucketPrefix": str(folder)}
                },
            },
            "Tasks": [],
            "TriggerConfig": {"TriggerType": "OnDemand"},
        },
    )
    admin.put_integration(
        DomainName=domain,
        Uri=f"arn:aws:sqs:us-east-1:111122223333:{uuid.uuid4().hex}",
        ObjectTypeNames={"ticket": "Tickets"},
    )
    for type_name in ("Calls", "Exports", "Tickets"):
        email = f"{type_name.lower()}@example.com"
        good = json.dumps({"id": f"{type_name}-1", "email": email})
        with pytest.raises(ClientError) as exc:
            agent.put_profile_object(DomainName=domain, ObjectTypeName=type_name, Object=good)
        _refused(exc, type_name, "PutProfileObject")
        with pytest.raises(ClientError) as exc:
            agent.batch_put_profile_object(
                DomainName=domain,
                ObjectTypeName=type_name,
                Items=[{"Id": "good", "Object": good}, {"Id": "bad", "Object": "[1]"}],
            )
        _refused(exc, type_name, "BatchPutProfileObject")
        found = admin.search_profiles(DomainName=domain, KeyName="_email", Values=[email])
        assert found["Items"] == []
        # An admin writes them.
        admin.put_profile_object(DomainName=domain, ObjectTypeName=type_name, Object=good)
        found = admin.search_profiles(DomainName=domain, KeyName="_email", Values=[email])
        assert len(found["Items"]) == 1


def test_an_agent_still_writes_objects_of_types_no_integration_feeds(
    live_server: Any, domain: str
) -> None:
    admin, agent = live_server.client(), live_server.client("agent")
    admin.put_profile_object_type(DomainName=domain, ObjectTypeName="Notes", **CRM)
    # Another type's integration does not make this one fed.
    admin.put_integration(DomainName=domain, Uri=_instance(), ObjectTypeName="CTR")
    key = agent.put_profile_object(
        DomainName=domain,
        ObjectTypeName="Notes",
        Object=json.dumps({"id": "n1", "email": "note@example.com"}),
    )["ProfileObjectUniqueKey"]
    batch = agent.batch_put_profile_object(
        DomainName=domain,
        ObjectTypeName="Notes",
        Items=[{"Id": "2", "Object": json.dumps({"id": "n2", "email": "note@example.com"})}],
    )
    assert [s["Id"] for s in batch["Successful"]] == ["2"] and batch["Failed"] == []
    (profile,) = admin.search_profiles(
        DomainName=domain, KeyName="_email", Values=["note@example.com"]
    )["Items"]
    items = admin.list_profile_objects(
        DomainName=domain, ObjectTypeName="Notes", ProfileId=profile["ProfileId"]
    )["Items"]
    assert key in {i["ProfileObjectUniqueKey"] for i in items} and len(items) == 2
