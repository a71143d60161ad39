"""POST /contact-records and /contact-events against a live server (both backends): a withheld
caller's number ("anonymous") counts as no endpoint, so a contact an agent linked lands on the
profile and its start event links by the link (it was dead-lettered for good, the event a 400);
a record or event holding a NUL (U+0000), which the API refuses in every value, is rejected
with the reason (it was accepted, making a profile CreateProfile would refuse)."""

from __future__ import annotations

import json
import uuid

from tests.unit.integrations.integ_helpers import ctr
from tests.wire.test_contact_records_http import _instance, post


def _domain(live_server) -> tuple[str, str]:
    client = live_server.client()
    domain = f"d-{uuid.uuid4().hex[:10]}"
    client.create_domain(DomainName=domain, DefaultExpirationDays=30)
    instance = _instance()
    client.put_integration(DomainName=domain, Uri=instance)
    return domain, instance


def test_a_linked_contact_from_a_withheld_number_lands_on_its_profile(live_server) -> None:
    client = live_server.client()
    domain, instance = _domain(live_server)
    profile_id = client.create_profile(DomainName=domain, FirstName="Known")["ProfileId"]
    for contact_id in ("an1", "an2"):
        client.add_profile_key(
            DomainName=domain, ProfileId=profile_id, KeyName="_ctrContactId", Values=[contact_id]
        )

    record = ctr("an1", instance=instance, address="anonymous")
    answer = post(live_server, "/contact-records", json.dumps([record]))
    event = {
        "ContactId": "an2",
        "InstanceARN": instance,
        "Channel": "VOICE",
        "InitiationTimestamp": "2022-04-08T14:59:38Z",
        "CustomerEndpoint": {"Address": "Restricted", "Type": "TELEPHONE_NUMBER"},
    }
    linked = post(live_server, "/contact-events", json.dumps(event))

    assert answer.status_code == 200 and answer.json() == {"Accepted": 1, "Rejected": []}
    assert linked.status_code == 200 and linked.json()["ProfileId"] == profile_id
    items = client.list_profile_objects(
        DomainName=domain, ObjectTypeName="CTR", ProfileId=profile_id
    )["Items"]
    assert sorted(json.loads(i["Object"])["ContactId"] for i in items) == ["an1", "an2"]
    # The withheld number became neither the profile's number nor a key.
    [profile] = client.search_profiles(
        DomainName=domain, KeyName="_profileId", Values=[profile_id]
    )["Items"]
    assert "PhoneNumber" not in profile


def test_a_record_or_event_holding_a_nul_is_rejected(live_server) -> None:
    client = live_server.client()
    domain, instance = _domain(live_server)
    # json.dumps writes each NUL as the escape \u0000, as a sender's JSON would.
    records = [
        ctr("nul\x00id", instance=instance, address="+13035551801"),
        ctr("n3", channel="CHAT", instance=instance, address="kim\x00@example.com"),
    ]
    body = json.dumps(records)
    assert "\\u0000" in body
    event = {
        "ContactId": "n4",
        "InstanceARN": instance,
        "Channel": "VOICE",
        "InitiationTimestamp": "2022-04-08T14:59:38Z\x00",
    }

    answer = post(live_server, "/contact-records", body)
    refused = post(live_server, "/contact-events", json.dumps(event))

    assert answer.status_code == 200
    rejected = answer.json()["Rejected"]
    assert answer.json()["Accepted"] == 0
    assert [r["ContactId"] for r in rejected] == [None, "n3"]
    assert all("NUL character (U+0000" in r["Message"] for r in rejected)
    assert refused.status_code == 400 and "NUL character" in refused.json()["Message"]
    found = client.search_profiles(DomainName=domain, KeyName="_ctrContactId", Values=["n3"])
    assert found["Items"] == []
