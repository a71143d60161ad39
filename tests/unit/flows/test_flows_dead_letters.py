"""A flow's dead letters: their reasons name the flow, the item and the record's place in it,
also after a retry that fails again; a record over the object limit is one; the SQS note sent
in place of an object SQS cannot take says what is kept — on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.context import Services
from openprofiles.dlq import service
from openprofiles.dlq.models import RetryOutcome
from openprofiles.domains.service import update_domain
from openprofiles.flows.models import FlowRun
from openprofiles.flows.service import run_flow
from openprofiles.ingest import MAX_OBJECT_CHARS
from openprofiles.object_types.service import delete_object_type, put_object_type

from .test_flows_failed_items import TYPE, jsonl, letters, user
from .test_flows_templates import D, flow_definition, put_flow

REGION = "us-east-1"


def lead_type(services: Services) -> None:
    """An object type that creates no profile: a lead no profile has yet is rejected."""
    with services.write() as tx:
        put_object_type(
            tx,
            domain_name=D,
            name="Lead",
            params={
                "Description": "leads",
                "AllowProfileCreation": False,
                "Fields": {
                    "id": {"Source": "_source.id"},
                    "email": {
                        "Source": "_source.email",
                        "Target": "_profile.EmailAddress",
                        "ContentType": "EMAIL_ADDRESS",
                    },
                },
                "Keys": {
                    "leadId": [{"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["id"]}]
                },
            },
        )


def retry(services: Services) -> RetryOutcome:
    with services.write() as tx:
        return service.retry(tx, domain_name=D)


def test_a_retry_that_fails_again_still_names_the_flow(services: Services, tmp_path: Path) -> None:
    """The new reason of a retry used to drop "Flow crm: ", so the letter no longer said which
    flow its record came from."""
    make_domain(services, D)
    lead_type(services)
    folder = tmp_path / "crm"
    folder.mkdir()
    (folder / "a.jsonl").write_text(jsonl({"id": "1", "email": "a@example.com"}))
    put_flow(services, "crm", "Lead", flow_definition("crm", "file://", str(folder)))
    run_flow(services, domain_name=D, flow_name="crm")
    [letter] = letters(services)
    origin = "Flow crm, a.jsonl, line 1"
    assert letter.origin == origin
    assert letter.category == "no_profile" and letter.reason.startswith(f"{origin}: No profile")

    # Rejected again by the pipeline, twice: the flow is named once, first.
    for attempts in (2, 3):
        outcome = retry(services)
        assert outcome.failed == [letter.message_id]
        [again] = letters(services)
        assert (again.reason, again.category, again.attempts) == (
            letter.reason,
            "no_profile",
            attempts,
        )
    # Failing for another reason (the object type is gone): the new reason, after the flow.
    with services.write() as tx:
        delete_object_type(tx, domain_name=D, name="Lead")
    retry(services)
    [again] = letters(services)
    assert again.reason.startswith(f"{origin}: ") and again.reason.count("Flow crm") == 1
    assert "Lead" in again.reason and "No profile" not in again.reason
    assert (again.category, again.attempts) == ("invalid_value", 4)


def test_a_letter_stored_before_its_origin_was_kept_still_names_its_flow(
    services: Services,
) -> None:
    """A flow's letter written before the origin was kept on its own names the flow only in
    its reason: a retry reads it from there."""
    make_domain(services, D)
    lead_type(services)
    with services.write() as tx:
        stored = service.put(
            tx,
            domain_name=D,
            object_type_name="Lead",
            object_json=json.dumps({"id": "1", "email": "a@example.com"}),
            reason="Flow crm-2.x: No profile matched.",
            category="no_profile",
        )
    retry(services)
    [again] = letters(services)
    assert again.message_id == stored.message_id and again.attempts == 2
    assert again.reason.startswith("Flow crm-2.x: No profile matched the object's profile keys")
    assert again.origin == "Flow crm-2.x"


# ---------------------------------------------------------------------------- SQS notes


@pytest.fixture
def queue_url(services: Services, moto_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The domain D, with a dead-letter queue on moto's SQS."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    services.settings = replace(services.settings, sqs_endpoint_url=moto_url, aws_region=REGION)
    client = boto3.client("sqs", endpoint_url=moto_url, region_name=REGION)
    url = str(client.create_queue(QueueName=f"flows-{uuid.uuid4().hex[:8]}")["QueueUrl"])
    make_domain(services, D)
    with services.write() as tx:
        update_domain(tx, domain_name=D, changes={"DeadLetterQueueUrl": url})
    return url


def received(moto_url: str, url: str) -> dict[str, dict[str, Any]]:
    """The queue's messages by DeadLetterMessageId (those that carry a note), attributes as
    strings."""
    client = boto3.client("sqs", endpoint_url=moto_url, region_name=REGION)
    notes: dict[str, dict[str, Any]] = {}
    while batch := client.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    ).get("Messages", []):
        for message in batch:
            body = json.loads(message["Body"])
            notes[body["DeadLetterMessageId"]] = {
                "body": body,
                **{k: v["StringValue"] for k, v in message["MessageAttributes"].items()},
            }
    return notes


@pytest.mark.moto
def test_the_sqs_note_of_a_failed_flow_item_says_what_is_kept(
    services: Services, moto_url: str, queue_url: str, tmp_path: Path
) -> None:
    """The note in place of an object SQS cannot take used to say OpenProfiles "keeps the whole
    record", also for a failed item (no record) and for one of which nothing was read (empty)."""
    folder = tmp_path / "export"
    folder.mkdir()
    # Neither JSON nor JSON lines, and holding a character no SQS message can carry.
    (folder / "1.txt").write_text("name\x00email\n")
    (folder / "2.jsonl").write_text(jsonl(user(2)))
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder)))

    def replace_second(run: FlowRun) -> None:
        # A folder by the time it is read, which cannot be opened: the letter holds nothing.
        if run.items_read == 1:
            (folder / "2.jsonl").unlink()
            (folder / "2.jsonl").mkdir()

    run = run_flow(services, domain_name=D, flow_name="crm", on_progress=replace_second)
    assert (run.status, run.records_dead_lettered) == ("COMPLETED", 2)
    unreadable, gone = letters(services)
    assert (unreadable.object_json, gone.object_json) == ("name\x00email\n", "")
    notes = received(moto_url, queue_url)

    where = f"dead letter {{}} of domain {D}"
    assert notes[unreadable.message_id]["ObjectOmitted"] == (
        "The object was not sent: the object holds characters an SQS message cannot carry. "
        f"OpenProfiles keeps it whole in {where.format(unreadable.message_id)}."
    )
    assert notes[gone.message_id]["ObjectOmitted"] == (
        "Nothing was left out: the object is empty, and SQS takes no empty message. "
        f"OpenProfiles keeps {where.format(gone.message_id)}, with its reason."
    )
    for letter in (unreadable, gone):
        note = notes[letter.message_id]
        assert note["body"]["ObjectOmitted"] == note["ObjectOmitted"]
        assert note["Message"] == letter.reason and letter.reason.startswith(f"{letter.origin}: ")
        assert letter.origin in ("Flow crm, 1.txt", "Flow crm, 2.jsonl")


def test_a_record_over_the_object_limit_is_dead_lettered_with_its_place(
    services: Services, tmp_path: Path
) -> None:
    """A flow handed the pipeline records of any length, where PutProfileObject, `ingest FILE`
    and a retry refuse one over 256,000 characters; and its letters named only the flow."""
    make_domain(services, D)
    folder = tmp_path / "crm"
    folder.mkdir()
    notes = "x" * MAX_OBJECT_CHARS
    (folder / "a.jsonl").write_text(jsonl(user(1), user(2, notes=notes), user(3)))
    (folder / "b.json").write_text(json.dumps([user(4), "not a record"]))
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder)))
    run = run_flow(services, domain_name=D, flow_name="crm")
    assert (run.records_ingested, run.records_dead_lettered) == (3, 2)
    long, not_record = letters(services)
    assert long.origin == "Flow crm, a.jsonl, line 2"
    assert long.reason.startswith(
        f"Flow crm, a.jsonl, line 2: The object is {len(jsonl(user(2, notes=notes))) - 1} "
        f"characters long; the limit is {MAX_OBJECT_CHARS}."
    )
    assert json.loads(long.object_json)["id"] == 2
    assert not_record.origin == "Flow crm, b.json, array index 1"
    assert "not a JSON object" in not_record.reason

    # What the object type takes is measured: a task that leaves the long field out lets the
    # record in.
    project = [
        {
            "TaskType": "Filter",
            "SourceFields": list(user(2)),
            "ConnectorOperator": {"S3": "PROJECTION"},
        }
    ]
    put_flow(services, "slim", TYPE, flow_definition("slim", "file://", str(folder), tasks=project))
    slim = run_flow(services, domain_name=D, flow_name="slim")
    assert (slim.records_ingested, slim.records_dead_lettered) == (4, 1)


def test_an_item_read_again_keeps_one_letter_per_bad_line(
    services: Services, tmp_path: Path
) -> None:
    """A file that grows is read again whole: each of its bad lines got another letter on every
    read (and another SQS message), for a log-style export without end."""
    make_domain(services, D)
    folder = tmp_path / "crm"
    folder.mkdir()
    file = folder / "a.jsonl"
    file.write_text(jsonl(user(1)) + "not json\n")
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder)))
    run_flow(services, domain_name=D, flow_name="crm")
    with file.open("a") as more:
        more.write(jsonl(user(2)) + "not json either\n")
    run = run_flow(services, domain_name=D, flow_name="crm")
    assert (run.records_ingested, run.records_dead_lettered) == (2, 2)
    assert sorted((x.origin, x.attempts) for x in letters(services)) == [
        ("Flow crm, a.jsonl, line 2", 2),
        ("Flow crm, a.jsonl, line 4", 1),
    ]
