"""Uris past what an integration's columns hold, through the API against a live server (both
backends; tests/unit/integrations/test_integration_uris_bounded.py has the rules).

A contact record whose InstanceARN had more than 255 characters (an unbounded region) was taken
for an instance's: PostgreSQL refused to keep it, and POST /contact-records answered 500 for the
whole batch (the Kinesis connector stopped on it for ever); SQLite kept it. It is rejected
alone now, saying why, and the rest of the batch is applied. PutIntegration of an instance ARN
with Arabic-Indic digits, of a FlowName too long for its ARN, or of a Uri outside ASCII with
Tags (PostgreSQL: 500) is answered as it should be."""

from __future__ import annotations

import json
import uuid

import pytest
from botocore.exceptions import ClientError
from tests.unit.flows.test_flows_templates import flow_definition
from tests.unit.integrations.integ_helpers import ctr
from tests.wire.test_contact_records_http import post, search

from openprofiles.contacts.kept import UnroutedRecord, list_unrouted

ACCOUNT = "111122223333"


@pytest.fixture
def domain(live_server) -> str:
    name = f"d-{uuid.uuid4().hex[:10]}"
    live_server.client().create_domain(DomainName=name, DefaultExpirationDays=30)
    return name


def kept_records(live_server) -> list[UnroutedRecord]:
    with live_server.services.read() as tx:
        return list_unrouted(tx)


def kept_ids(live_server) -> set[str]:
    return {r.message_id for r in kept_records(live_server)}


def test_a_record_of_an_instance_arn_too_long_is_rejected_alone(live_server, domain) -> None:
    instance = f"arn:aws:connect:us-east-1:{ACCOUNT}:instance/{uuid.uuid4()}"
    live_server.client().put_integration(DomainName=domain, Uri=instance)
    too_long = f"arn:aws:connect:{'a' * 150}:{ACCOUNT}:instance/{'b' * 100}"
    records = [
        ctr("fine-1", instance=instance),
        ctr("long-1", instance=too_long),
        ctr("fine-2", instance=instance),
    ]
    kept_before = kept_ids(live_server)

    response = post(live_server, "/contact-records", json.dumps(records))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["Accepted"] == 2, body
    [rejected] = body["Rejected"]
    assert rejected["ContactId"] == "long-1"
    assert "is not a contact-centre instance ARN" in rejected["Message"]
    assert search(live_server, domain, "_ctrContactId", "fine-1")
    assert search(live_server, domain, "_ctrContactId", "fine-2")
    # Kept as a rejected record is, under no instance: the ARN is not stored.
    [kept] = [r for r in kept_records(live_server) if r.message_id not in kept_before]
    assert kept.instance_arn is None
    assert "is not a contact-centre instance ARN" in kept.reason


def put_refused(live_server, **params: object) -> str:
    with pytest.raises(ClientError) as caught:
        live_server.client().put_integration(**params)
    error = caught.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400, error
    return str(error["Error"]["Message"])


def test_put_integration_of_an_instance_arn_with_arabic_indic_digits_is_400(
    live_server, domain
) -> None:
    uri = "arn:aws:connect:us-east-1:١٢٣٤٥٦٧٨٩٠١٢:instance/abc-1"

    message = put_refused(live_server, DomainName=domain, Uri=uri)

    assert "is not a contact-centre instance ARN" in message


def test_put_integration_of_a_flow_name_too_long_for_its_arn_is_400(live_server, domain) -> None:
    flow = flow_definition("f" * 230, "crm-bucket")

    message = put_refused(live_server, DomainName=domain, ObjectTypeName="CTR", FlowDefinition=flow)

    assert "The FlowName is too long for the flow's ARN" in message
    assert "(230 given)" in message
    assert live_server.client().list_integrations(DomainName=domain)["Items"] == []


def test_put_integration_of_a_uri_outside_ascii_with_tags(live_server, domain) -> None:
    uri = "s3://" + "é" * 250
    client = live_server.client()

    client.put_integration(DomainName=domain, Uri=uri, ObjectTypeName="CTR", Tags={"a": "b"})

    assert client.get_integration(DomainName=domain, Uri=uri)["Tags"] == {"a": "b"}
    client.delete_integration(DomainName=domain, Uri=uri)
