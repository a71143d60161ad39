"""What a key limited to some domains (auth.scope) may not reach beyond them, with real boto3
against a live server on both backends: it may not define a flow (a flow reads its source with
the server's own access: a folder of the server, a bucket with its AWS credentials), nor
associate an instance (that sends the domain every record kept for the instance, whoever sent
them); and a record it sent that waits for the contact it continues never follows its instance
to another domain (contacts.confined): it is dead-lettered in its own. Before, a key for one
domain read another domain's source through a flow, claimed an unassociated instance's kept
records, and a record it planted followed the instance into the domain an operator gave it."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from tests.support.server import LiveServer
from tests.unit.integrations.integ_helpers import ctr
from tests.wire.test_auth_domain_scope import World, _admin_records, _denied, _instance, _records

from openprofiles.contacts.kept import count_unrouted
from openprofiles.contacts.service import connect_instance
from openprofiles.contacts.sweep import send_waiting_on
from openprofiles.dlq.service import list_messages

CONFINED = (
    "The record was sent with an access key limited to some domains and kept in domain {}, "
    "waiting for the contact it continues; its instance is no longer associated with this "
    "domain, and the record may not go to another. It is dead-lettered here instead."
)


@pytest.fixture
def world(live_server: LiveServer) -> World:
    return World(live_server)


def _loot_type(client: Any, domain: str) -> None:
    client.put_profile_object_type(
        DomainName=domain,
        ObjectTypeName="Loot",
        Description="rows of a folder",
        AllowProfileCreation=True,
        Fields={
            "id": {"Source": "_source.id", "Target": "_profile.AccountNumber"},
            "email": {
                "Source": "_source.email",
                "Target": "_profile.EmailAddress",
                "ContentType": "EMAIL_ADDRESS",
            },
        },
        Keys={"id": [{"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["id"]}]},
    )


def _flow(name: str, folder: str) -> dict[str, Any]:
    return {
        "FlowName": name,
        "KmsArn": "arn:aws:kms:us-east-1:111122223333:key/1",
        "SourceFlowConfig": {
            "ConnectorType": "S3",
            "SourceConnectorProperties": {"S3": {"BucketName": "file://", "BucketPrefix": folder}},
        },
        "Tasks": [],
        "TriggerConfig": {"TriggerType": "OnDemand"},
    }


def test_a_scoped_key_may_not_define_or_change_a_flow(world: World) -> None:
    """The other domain's export sits in the server's flow folders: a flow defined with the
    scoped key would read it into care. Refused (403, saying why); a flow the operator defined
    in care may not be changed with it either, but may be deleted (it reads nothing then)."""
    folder = world.server.settings.data_dir / "flows" / f"{world.sales}-crm"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "export.jsonl").write_text(json.dumps({"id": "42", "email": "vip@x.example"}) + "\n")
    _loot_type(world.client, world.care)
    error = _denied(
        lambda: world.client.put_integration(
            DomainName=world.care, ObjectTypeName="Loot", FlowDefinition=_flow("steal", str(folder))
        )
    )
    assert error["Message"] == (
        f"User: {world.key[0]} is not authorized to perform: profile:PutIntegration with a "
        "FlowDefinition because the access key is limited to some domains: a flow reads its "
        "source with the server's own access (its folders and its AWS credentials), so only an "
        "access key for every domain may define or change one."
    )
    admin = world.server.client()
    uris = [one["Uri"] for one in admin.list_integrations(DomainName=world.care)["Items"]]
    assert uris == [world.care_instance]
    # The operator's flow in care: not to be changed with the scoped key, but deleted.
    mine = world.server.settings.data_dir / "flows" / f"{world.care}-crm"
    mine.mkdir(parents=True, exist_ok=True)
    defined = admin.put_integration(
        DomainName=world.care, ObjectTypeName="Loot", FlowDefinition=_flow("crm", str(mine))
    )
    _denied(
        lambda: world.client.put_integration(
            DomainName=world.care,
            Uri=defined["Uri"],
            ObjectTypeName="Loot",
            FlowDefinition=_flow("crm", str(folder)),
        )
    )
    world.client.delete_integration(DomainName=world.care, Uri=defined["Uri"])
    uris = [one["Uri"] for one in admin.list_integrations(DomainName=world.care)["Items"]]
    assert uris == [world.care_instance]


def _kept(server: LiveServer, instance: str) -> int:
    with server.services.read() as tx:
        return sum(count_unrouted(tx, instance_arn=instance).values())


def test_a_scoped_key_may_not_associate_an_instance(world: World) -> None:
    """An instance associated with no domain keeps every record sent for it (here the admin's):
    associating it with care would replay them there. Refused (403, saying why), nothing
    replayed; the instance already care's may still be updated with the key."""
    nowhere = _instance()
    kept = ctr("kept", instance=nowhere, address="+12065550141", Attributes={"secret": "x"})
    _post_admin(world, [kept])
    assert _kept(world.server, nowhere) == 1
    error = _denied(lambda: world.client.put_integration(DomainName=world.care, Uri=nowhere))
    assert error["Message"] == (
        f"User: {world.key[0]} is not authorized to associate the instance {nowhere} with a "
        "domain because the access key is limited to some domains: an association sends the "
        "domain every record kept for the instance and every one that comes next, so only an "
        "access key for every domain may associate or move an instance. An instance already "
        "associated with a domain of the key's scope can be updated with it."
    )
    admin = world.server.client()
    assert admin.list_account_integrations(Uri=nowhere)["Items"] == []
    assert _kept(world.server, nowhere) == 1
    assert not admin.search_profiles(
        DomainName=world.care, KeyName="_ctrContactId", Values=["kept"]
    )["Items"]
    # Care's own instance: its association is the key's domain's already, and may change type.
    updated = world.client.put_integration(
        DomainName=world.care, Uri=world.care_instance, ObjectTypeName="CTR-NoInferred"
    )
    assert updated["ObjectTypeName"] == "CTR-NoInferred"
    # Dissociated (allowed: the key's own domain's), it may not be associated again with it.
    world.client.delete_integration(DomainName=world.care, Uri=world.care_instance)
    _denied(lambda: world.client.put_integration(DomainName=world.care, Uri=world.care_instance))
    # The operator may, and the kept record goes to care.
    admin.put_integration(DomainName=world.care, Uri=nowhere)
    assert admin.search_profiles(DomainName=world.care, KeyName="_ctrContactId", Values=["kept"])[
        "Items"
    ]


def _post_admin(world: World, body: list[dict[str, Any]]) -> dict[str, Any]:
    """Records sent with the admin's unscoped key, whatever becomes of them."""
    server = world.server
    request = AWSRequest(
        method="POST",
        url=server.url + "/contact-records",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    SigV4Auth(Credentials(*server.admin_key), "profile", server.settings.region).add_auth(request)
    response = httpx.post(
        request.url, content=request.body, headers=dict(request.headers.items()), timeout=10
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _planted(world: World, instance: str) -> None:
    """A task of the instance sent with the scoped key before the contact it continues: kept
    waiting in care, the instance's domain."""
    task = ctr(
        "planted",
        channel="TASK",
        address=None,
        instance=instance,
        PreviousContactId="C1",
        Attributes={"note": "sent with care's key"},
    )
    answer = _records(world, [task])
    [waiting] = answer["Rejected"]
    assert "is kept" in waiting["Message"], waiting


def _care_letters(world: World) -> list[str]:
    with world.server.services.read() as tx:
        return [letter.reason for letter in list_messages(tx, domain_name=world.care)]


def _in_sales(world: World, contact_id: str) -> bool:
    found = world.server.client().search_profiles(
        DomainName=world.sales, KeyName="_ctrContactId", Values=[contact_id]
    )["Items"]
    return bool(found)


def test_a_scoped_key_s_waiting_record_does_not_follow_its_instance_away(world: World) -> None:
    """The instance leaves care in two steps (DeleteIntegration, then the operator associates
    it with sales): the sweep would have made the planted task wait in sales, and the contact
    it continues, sent there, would have placed it on a sales profile. It is dead-lettered in
    care instead, saying why."""
    moving = _instance()
    admin = world.server.client()
    admin.put_integration(DomainName=world.care, Uri=moving)
    _planted(world, moving)
    world.client.delete_integration(DomainName=world.care, Uri=moving)
    admin.put_integration(DomainName=world.sales, Uri=moving)
    sent = send_waiting_on(world.server.services)
    assert sent.dead_lettered.get(world.care) == 1
    _admin_records(world.server, [ctr("C1", instance=moving, address="+12065550151")])
    assert not _in_sales(world, "planted")
    assert _care_letters(world) == ["POST /contact-records: " + CONFINED.format(world.care)]
    assert _kept(world.server, moving) == 0


def test_a_scoped_key_s_waiting_record_stays_when_the_operator_moves_the_instance(
    world: World,
) -> None:
    """A move (openprofiles instances associate --move) makes the instance's waiting records
    wait in the new domain; the scoped key's is dead-lettered in care at once instead."""
    moving = _instance()
    admin = world.server.client()
    admin.put_integration(DomainName=world.care, Uri=moving)
    _planted(world, moving)
    with world.server.services.write() as tx:
        _, replayed = connect_instance(tx, domain_name=world.sales, instance_arn=moving, move=True)
    assert replayed.dead_lettered.get(world.care) == 1
    _admin_records(world.server, [ctr("C1", instance=moving, address="+12065550152")])
    assert not _in_sales(world, "planted")
    assert _care_letters(world) == ["POST /contact-records: " + CONFINED.format(world.care)]


def test_a_scoped_key_s_waiting_record_is_not_kept_for_the_next_domain(world: World) -> None:
    """Its instance dissociated from care, the record that waited its hour would be kept for
    whichever domain the instance is associated with next; it is dead-lettered in care."""
    leaving = _instance()
    world.server.client().put_integration(DomainName=world.care, Uri=leaving)
    _planted(world, leaving)
    world.client.delete_integration(DomainName=world.care, Uri=leaving)
    with world.server.services.read() as tx:
        later = tx.now + timedelta(hours=2)
    sent = send_waiting_on(world.server.services, now=later)
    assert sent.dead_lettered.get(world.care) == 1
    assert _kept(world.server, leaving) == 0
    assert _care_letters(world) == ["POST /contact-records: " + CONFINED.format(world.care)]
