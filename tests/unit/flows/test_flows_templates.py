"""Flows (PutIntegration FlowDefinition): folder and S3 sources, tasks, triggers, and each
built-in external-application template ingesting a realistic exported record."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.context import Services
from openprofiles.dlq.service import list_messages
from openprofiles.errors import BadRequest
from openprofiles.flows.runs import list_runs
from openprofiles.flows.service import run_due_flows, run_flow
from openprofiles.integrations.service import put_integration
from openprofiles.profiles.service import (
    SearchCriterion,
    get_profile,
    profile_keys,
    search_profiles,
)

D = "flows"
KMS = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def flow_definition(
    name: str,
    bucket: str,
    prefix: str = "",
    trigger: dict[str, Any] | None = None,
    tasks: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "FlowName": name,
        "KmsArn": KMS,
        "SourceFlowConfig": {
            "ConnectorType": "S3",
            "SourceConnectorProperties": {"S3": {"BucketName": bucket, "BucketPrefix": prefix}},
        },
        "Tasks": tasks or [],
        "TriggerConfig": trigger or {"TriggerType": "OnDemand"},
    }


def put_flow(services: Services, name: str, type_name: str, definition: dict[str, Any]) -> None:
    with services.write() as tx:
        put_integration(
            tx, domain_name=D, uri=None, object_type_name=type_name, flow_definition=definition
        )


def find(services: Services, key: str, value: str) -> tuple[dict[str, Any], dict[str, list[str]]]:
    with services.read() as tx:
        page, _ = search_profiles(tx, domain_name=D, criteria=[SearchCriterion(key, (value,))])
        assert len(page) == 1, f"{key}={value} found {len(page)} profiles"
        record = get_profile(tx, domain_name=D, profile_id=page[0][0].profile_id)
        return record.fields, profile_keys(tx, domain_name=D, profile_id=record.profile_id)


SALESFORCE_CONTACT = {
    "attributes": {
        "type": "Contact",
        "url": "/services/data/v58.0/sobjects/Contact/0035g00000ABCDeAAH",
    },
    "Id": "0035g00000ABCDeAAH",
    "AccountId": "0015g00000XYZabAAB",
    "FirstName": "Rose",
    "LastName": "Gonzalez",
    "MiddleName": None,
    "Phone": "(512) 757-6000",
    "MobilePhone": "(512) 757-9340",
    "HomePhone": None,
    "Email": "rose@edge.com",
    "Birthdate": "1970-03-21",
    "MailingStreet": "313 Constitution Place",
    "MailingCity": "Austin",
    "MailingState": "TX",
    "MailingPostalCode": "78767",
    "MailingCountry": "USA",
    "OtherStreet": None,
    "LastModifiedDate": "2023-05-01T10:00:00.000+0000",
}
ZENDESK_USER = {
    "id": 35436,
    "url": "https://company.zendesk.com/api/v2/users/35436.json",
    "name": "Johnny Agent",
    "email": "johnny@example.com",
    "phone": "+15551234567",
    "external_id": "sai989sur98w9",
    "role": "end-user",
    "time_zone": "Copenhagen",
    "created_at": "2009-07-20T22:55:29Z",
    "tags": ["enterprise"],
    "verified": True,
}
SERVICENOW_USER = {
    "sys_id": "62826bf03710200044e0bfc8bcbe5df1",
    "user_name": "abel.tuter",
    "first_name": "Abel",
    "last_name": "Tuter",
    "middle_name": "",
    "email": "abel.tuter@example.com",
    "phone": "+1 858 287 7834",
    "mobile_phone": "",
    "home_phone": "",
    "gender": "Male",
    "street": "8 Shady Lane",
    "city": "San Diego",
    "state": "CA",
    "zip": "92101",
    "country": "US",
    "active": "true",
    "sys_updated_on": "2023-02-06 13:48:01",
}
MARKETO_LEAD = {
    "id": 318581,
    "firstName": "Jane",
    "lastName": "Doe",
    "email": "jane.doe@example.com",
    "phone": "415-555-0100",
    "mobilePhone": None,
    "sfdcAccountId": None,
    "sfdcContactId": "0035g00000QQQqqAAA",
    "city": "San Mateo",
    "state": "CA",
    "country": "USA",
    "postalCode": "94404",
    "address": "901 Mariners Island Blvd",
    "createdAt": "2023-01-10T22:45:02Z",
    "updatedAt": "2023-01-11T08:00:00Z",
}
SEGMENT_IDENTIFY = {
    "version": "0",
    "id": "5f0c9a50-1bd2-4b1b-9c1a-0b5f2a7e4d6e",
    "detail-type": "identify",
    "source": "aws.partner/segment.com/workspace/src",
    "account": "111122223333",
    "time": "2023-04-04T11:22:33Z",
    "region": "us-east-1",
    "detail": {
        "event": {
            "detail": {
                "type": "identify",
                "userId": "97980cfea0067",
                "anonymousId": "507f191e810c19729de860ea",
                "traits": {
                    "firstName": "Peter",
                    "lastName": "Gibbons",
                    "email": "peter@example.com",
                    "phone": "+14155550111",
                    "address": {
                        "city": "Austin",
                        "state": "TX",
                        "country": "USA",
                        "postalCode": "78701",
                        "street": "6th St",
                    },
                },
                "timestamp": "2023-04-04T11:22:30Z",
            }
        }
    },
}
SHOPIFY_CUSTOMER = {
    "version": "0",
    "id": "b3b8c6d2-0000-4000-8000-000000000001",
    "detail-type": "shopifyWebhook",
    "source": "aws.partner/shopify.com/123/customers",
    "detail": {
        "metadata": {"X-Shopify-Topic": "customers/create"},
        "event": {
            "detail": {
                "payload": {
                    "id": 706405506930370000,
                    "email": "bob@biller.com",
                    "first_name": "Bob",
                    "last_name": "Biller",
                    "phone": "+16135551111",
                    "note": "Placed an order by phone",
                    "default_address": {
                        "address1": "151 O'Connor Street",
                        "address2": "Suite 4",
                        "city": "Ottawa",
                        "province": "Ontario",
                        "country": "Canada",
                        "zip": "K2P 2L8",
                    },
                }
            }
        },
    },
}

TEMPLATE_CASES = [
    (
        "Salesforce-Contact",
        SALESFORCE_CONTACT,
        "_salesforceContactId",
        "0035g00000ABCDeAAH",
        {
            "FirstName": "Rose",
            "LastName": "Gonzalez",
            "EmailAddress": "rose@edge.com",
            "MobilePhoneNumber": "(512) 757-9340",
        },
        {"_salesforceAccountId": "0015g00000XYZabAAB"},
    ),
    (
        "Zendesk-users",
        ZENDESK_USER,
        "_zendeskUserId",
        "35436",
        {"EmailAddress": "johnny@example.com", "PhoneNumber": "+15551234567"},
        {"_zendeskExternalId": "sai989sur98w9"},
    ),
    (
        "Servicenow-sys_user",
        SERVICENOW_USER,
        "_serviceNowSystemId",
        "62826bf03710200044e0bfc8bcbe5df1",
        {"FirstName": "Abel", "LastName": "Tuter", "EmailAddress": "abel.tuter@example.com"},
        {},
    ),
    (
        "Marketo-leads",
        MARKETO_LEAD,
        "_marketoLeadId",
        "318581",
        {
            "FirstName": "Jane",
            "EmailAddress": "jane.doe@example.com",
            "PhoneNumber": "415-555-0100",
        },
        {"_salesforceContactId": "0035g00000QQQqqAAA"},
    ),
    (
        "Segment-Identify",
        SEGMENT_IDENTIFY,
        "_segmentUserId",
        "97980cfea0067",
        {"FirstName": "Peter", "LastName": "Gibbons", "EmailAddress": "peter@example.com"},
        {},
    ),
    (
        "Shopify-Customer",
        SHOPIFY_CUSTOMER,
        "_shopifyCustomerId",
        "706405506930370000",
        {
            "FirstName": "Bob",
            "EmailAddress": "bob@biller.com",
            "AdditionalInformation": "Placed an order by phone",
        },
        {},
    ),
]


@pytest.mark.parametrize(
    ("template", "record", "key", "value", "fields", "more_keys"), TEMPLATE_CASES
)
def test_folder_flow_ingests_template_record(
    services: Services,
    tmp_path: Path,
    template: str,
    record: dict[str, Any],
    key: str,
    value: str,
    fields: dict[str, str],
    more_keys: dict[str, str],
) -> None:
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "export-0001.jsonl").write_text(json.dumps(record) + "\n")
    put_flow(services, "export", template, flow_definition("export", "file://", str(folder)))
    run = run_flow(services, domain_name=D, flow_name="export")
    assert (run.status, run.records_ingested, run.records_dead_lettered) == ("COMPLETED", 1, 0)
    found, keys = find(services, key, value)
    for name, expected in fields.items():
        assert found[name] == expected, name
    for name, expected in more_keys.items():
        assert expected in keys[name]
    if template == "Shopify-Customer":
        assert found["Address"]["City"] == "Ottawa"


def test_tasks_filter_map_validate_and_dead_letter(services: Services, tmp_path: Path) -> None:
    make_domain(services, D)
    folder = tmp_path / "crm"
    folder.mkdir()
    rows = [
        {"cid": "1", "mail": "a@example.com", "score": "10", "noise": "x"},
        {"cid": "2", "mail": "b@example.com", "score": "1"},  # filtered out (score <= 5)
        {"cid": "3", "mail": "", "score": "20"},  # fails VALIDATE_NON_NULL -> dead letter
        "not json",
    ]
    (folder / "a.jsonl").write_text(
        "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows)
    )
    with services.write() as tx:
        from openprofiles.object_types.service import put_object_type

        put_object_type(
            tx,
            domain_name=D,
            name="Lead",
            params={
                "Description": "leads",
                "AllowProfileCreation": True,
                "Fields": {
                    "id": {"Source": "_source.LeadId"},
                    "email": {
                        "Source": "_source.Email",
                        "Target": "_profile.EmailAddress",
                        "ContentType": "EMAIL_ADDRESS",
                    },
                },
                "Keys": {
                    "leadId": [{"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["id"]}]
                },
            },
        )
    tasks = [
        {
            "TaskType": "Filter",
            "SourceFields": ["cid", "mail", "score"],
            "ConnectorOperator": {"S3": "PROJECTION"},
        },
        {
            "TaskType": "Filter",
            "SourceFields": ["score"],
            "ConnectorOperator": {"S3": "GREATER_THAN"},
            "TaskProperties": {"VALUE": "5", "DATA_TYPE": "integer"},
        },
        {
            "TaskType": "Validate",
            "SourceFields": ["mail"],
            "ConnectorOperator": {"S3": "VALIDATE_NON_NULL"},
            "TaskProperties": {"VALIDATION_ACTION": "DropRecord"},
        },
        {
            "TaskType": "Map",
            "SourceFields": ["cid"],
            "DestinationField": "LeadId",
            "ConnectorOperator": {"S3": "NO_OP"},
        },
        {
            "TaskType": "Map",
            "SourceFields": ["mail"],
            "DestinationField": "Email",
            "ConnectorOperator": {"S3": "NO_OP"},
        },
    ]
    put_flow(services, "crm", "Lead", flow_definition("crm", "file://", str(folder), tasks=tasks))
    run = run_flow(services, domain_name=D, flow_name="crm")
    assert (
        run.records_read,
        run.records_ingested,
        run.records_filtered,
        run.records_dead_lettered,
    ) == (4, 1, 1, 2)
    found, _ = find(services, "leadId", "1")
    assert found["EmailAddress"] == "a@example.com"
    with services.read() as tx:
        reasons = sorted(m.reason for m in list_messages(tx, domain_name=D))
    # Named by their lines: the record without a mail is line 3, the text that is no JSON 4.
    assert reasons[0].startswith("Flow crm, a.jsonl, line 3: ")
    assert "VALIDATE_NON_NULL failed: field mail" in reasons[0]
    assert reasons[1].startswith("Flow crm, a.jsonl, line 4: ")
    assert "could not be parsed as JSON" in reasons[1]


def test_event_and_scheduled_triggers(services: Services, tmp_path: Path) -> None:
    make_domain(services, D)
    events, scheduled = tmp_path / "events", tmp_path / "scheduled"
    events.mkdir()
    scheduled.mkdir()
    put_flow(
        services,
        "ev",
        "Zendesk-users",
        flow_definition("ev", "file://", str(events), trigger={"TriggerType": "Event"}),
    )
    put_flow(
        services,
        "sch",
        "Zendesk-users",
        flow_definition(
            "sch",
            "file://",
            str(scheduled),
            trigger={
                "TriggerType": "Scheduled",
                "TriggerProperties": {"Scheduled": {"ScheduleExpression": "rate(15 minutes)"}},
            },
        ),
    )
    now = datetime.now(UTC)
    # Event: nothing new, no run; a new file starts one that reads only that file.
    runs = run_due_flows(services, now=now)
    assert [r.flow_name for r in runs] == ["sch"]
    (events / "1.jsonl").write_text(json.dumps({**ZENDESK_USER, "id": 1}) + "\n")
    runs = run_due_flows(services, now=now + timedelta(minutes=1))
    assert [(r.flow_name, r.records_ingested) for r in runs] == [("ev", 1)]
    assert run_due_flows(services, now=now + timedelta(minutes=2)) == []
    (events / "2.jsonl").write_text(json.dumps({**ZENDESK_USER, "id": 2}) + "\n")
    (scheduled / "s.jsonl").write_text(json.dumps({**ZENDESK_USER, "id": 3}) + "\n")
    runs = run_due_flows(services, now=now + timedelta(minutes=3))
    assert [(r.flow_name, r.items_read) for r in runs] == [("ev", 1)]
    # Scheduled: due again once the interval has passed since its last run.
    runs = run_due_flows(services, now=now + timedelta(minutes=16))
    assert [(r.flow_name, r.records_ingested) for r in runs] == [("sch", 1)]
    with services.read() as tx:
        assert [r.trigger for r in list_runs(tx, domain_name=D, flow_name="ev")] == ["Event"] * 2


def test_flow_definition_validation(services: Services, tmp_path: Path) -> None:
    make_domain(services, D)
    bad = flow_definition("x", "file://", str(tmp_path))
    bad["SourceFlowConfig"]["ConnectorType"] = "Salesforce"
    with pytest.raises(BadRequest, match="cannot be reached"):
        put_flow(services, "x", "Zendesk-users", bad)
    with pytest.raises(BadRequest, match="rate"):
        put_flow(
            services,
            "x",
            "Zendesk-users",
            flow_definition(
                "x",
                "file://",
                str(tmp_path),
                trigger={
                    "TriggerType": "Scheduled",
                    "TriggerProperties": {
                        "Scheduled": {"ScheduleExpression": "cron(0 12 * * ? *)"}
                    },
                },
            ),
        )
    with pytest.raises(BadRequest, match="Task type Arithmetic"):
        put_flow(
            services,
            "x",
            "Zendesk-users",
            flow_definition(
                "x",
                "file://",
                str(tmp_path),
                tasks=[{"TaskType": "Arithmetic", "SourceFields": ["a"]}],
            ),
        )
    with pytest.raises(BadRequest, match="absolute path"):
        put_flow(services, "x", "Zendesk-users", flow_definition("x", "file://", "relative"))
    put_flow(
        services,
        "missing",
        "Zendesk-users",
        flow_definition("missing", "file://", str(tmp_path / "nope")),
    )
    run = run_flow(services, domain_name=D, flow_name="missing")
    assert run.status == "FAILED" and "does not exist" in (run.error or "")


def test_s3_flow(services: Services, moto_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
    bucket = f"exports-{services.settings.data_dir.parent.name[-20:].lower().replace('_', '-')}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(
        Bucket=bucket, Key="zendesk/users-1.jsonl", Body=json.dumps(ZENDESK_USER).encode() + b"\n"
    )
    s3.put_object(Bucket=bucket, Key="other/ignored.jsonl", Body=b"{}\n")
    from dataclasses import replace

    services.settings = replace(services.settings, s3_endpoint_url=moto_url)
    make_domain(services, D)
    put_flow(
        services,
        "s3",
        "Zendesk-users",
        flow_definition("s3", bucket, "zendesk/", trigger={"TriggerType": "Event"}),
    )
    [run] = run_due_flows(services, now=datetime.now(UTC))
    assert (run.status, run.items_read, run.records_ingested) == ("COMPLETED", 1, 1)
    found, _ = find(services, "_zendeskUserId", "35436")
    assert found["EmailAddress"] == "johnny@example.com"
    s3.put_object(
        Bucket=bucket,
        Key="zendesk/users-2.jsonl",
        Body=json.dumps({**ZENDESK_USER, "id": 99, "email": "n@example.com"}).encode(),
    )
    [run] = run_due_flows(services, now=datetime.now(UTC))
    assert (run.items_read, run.records_ingested) == (1, 1)
