"""POST /contact-records and /contact-events, SigV4-signed, against a live server (both
backends), with the results checked through boto3."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from tests.unit.integrations.integ_helpers import ctr


def _instance() -> str:
    return f"arn:aws:connect:us-east-1:111122223333:instance/{uuid.uuid4()}"


def post(
    live_server, path: str, body: str, role: str = "admin", timeout: float = 5.0
) -> httpx.Response:
    key = live_server.admin_key if role == "admin" else live_server.agent_key
    request = AWSRequest(
        method="POST",
        url=live_server.url + path,
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    SigV4Auth(Credentials(*key), "profile", live_server.settings.region).add_auth(request)
    return httpx.post(
        live_server.url + path,
        content=body.encode(),
        headers=dict(request.headers.items()),
        timeout=timeout,
    )


@pytest.fixture
def setup(live_server) -> tuple[str, str]:
    client = live_server.client()
    domain = f"d-{uuid.uuid4().hex[:10]}"
    client.create_domain(DomainName=domain, DefaultExpirationDays=30)
    instance = _instance()
    client.put_integration(DomainName=domain, Uri=instance)
    return domain, instance


def search(live_server, domain: str, key: str, value: str) -> list[dict[str, Any]]:
    return live_server.client().search_profiles(DomainName=domain, KeyName=key, Values=[value])[
        "Items"
    ]


def test_batch_with_rejections(live_server, setup):
    domain, instance = setup
    records = [
        ctr("v1", instance=instance, address="+12065550101"),
        ctr("v2", instance=instance, address="+12065550101", start="2022-04-09T10:00:00Z"),
        ctr("ch1", channel="CHAT", instance=instance, address="kim@example.com"),
        {"ContactId": "bad", "InstanceARN": _instance()},
        {"nothing": True},
    ]
    response = post(live_server, "/contact-records", json.dumps(records))
    assert response.status_code == 200
    body = response.json()
    assert body["Accepted"] == 3
    assert {r["ContactId"] for r in body["Rejected"]} == {"bad", None}
    [profile] = search(live_server, domain, "_ctrContactId", "v1")
    items = live_server.client().list_profile_objects(
        DomainName=domain, ObjectTypeName="CTR", ProfileId=profile["ProfileId"]
    )["Items"]
    assert sorted(json.loads(i["Object"])["ContactId"] for i in items) == ["v1", "v2"]
    # JSON lines and a single object are accepted too; a repeat delivery is idempotent.
    lines = "\n".join(json.dumps(r) for r in records[:2])
    assert post(live_server, "/contact-records", lines).json() == {"Accepted": 2, "Rejected": []}
    single = post(live_server, "/contact-records", json.dumps(records[2])).json()
    assert single == {"Accepted": 1, "Rejected": []}


def test_rejected_records_are_answered_with_their_place_in_the_body(live_server, setup):
    """Records whose ContactId cannot be read are answered with ContactId null: their `Index`
    (0-based, as the file loader's "array index") says which they are."""
    _domain, instance = setup
    records = [
        ctr("ix-1", instance=instance),
        {"nothing": True},
        "text",
        ctr("ix-2", instance=instance, Channel=7),
        {**ctr("ix-3", instance=instance), "ContactId": ["ix-3"]},
    ]
    body = post(live_server, "/contact-records", json.dumps(records)).json()
    assert body["Accepted"] == 1
    assert [(r["ContactId"], r["Index"]) for r in body["Rejected"]] == [
        (None, 1),
        (None, 2),
        ("ix-2", 3),
        (None, 4),
    ]
    assert all(r["Message"] for r in body["Rejected"])


def test_auth_and_roles(live_server, setup):
    _domain, instance = setup
    body = json.dumps(ctr("x", instance=instance))
    unsigned = httpx.post(live_server.url + "/contact-records", content=body)
    assert unsigned.status_code == 403
    assert unsigned.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    agent = post(live_server, "/contact-records", body, role="agent")
    assert agent.status_code == 403
    assert agent.headers["x-amzn-ErrorType"] == "AccessDeniedException"


def test_contact_event_then_record_then_forced_link(live_server, setup):
    domain, instance = setup
    event = {
        "ContactId": "live-9",
        "InitiationTimestamp": "2022-04-08T14:59:38Z",
        "Channel": "VOICE",
        "InstanceARN": instance,
        "CustomerEndpoint": {"Address": "+12065550199", "Type": "TELEPHONE_NUMBER"},
    }
    linked = post(live_server, "/contact-events", json.dumps(event)).json()
    assert linked["DomainName"] == domain and linked["CreatedProfile"] is True
    [found] = search(live_server, domain, "_ctrContactId", "live-9")
    assert found["ProfileId"] == linked["ProfileId"]
    post(live_server, "/contact-records", json.dumps(ctr("live-9", instance=instance)))
    [again] = search(live_server, domain, "_ctrContactId", "live-9")
    assert again["ProfileId"] == linked["ProfileId"]
    # An agent forces another contact onto a profile of their choice with AddProfileKey.
    client = live_server.client("agent")
    chosen = client.create_profile(DomainName=domain, FirstName="Chosen")["ProfileId"]
    post(live_server, "/contact-events", json.dumps({**event, "ContactId": "live-10"}))
    client.add_profile_key(
        DomainName=domain, ProfileId=chosen, KeyName="_ctrContactId", Values=["live-10"]
    )
    post(live_server, "/contact-records", json.dumps(ctr("live-10", instance=instance)))
    [forced] = search(live_server, domain, "_ctrContactId", "live-10")
    assert forced["ProfileId"] == chosen
    bad = post(live_server, "/contact-events", json.dumps({"ContactId": "x"}))
    assert bad.status_code == 400 and bad.headers["x-amzn-ErrorType"] == "BadRequestException"


def test_moving_instance(live_server, setup):
    domain, instance = setup
    post(live_server, "/contact-records", json.dumps(ctr("m1", instance=instance)))
    [old] = search(live_server, domain, "_ctrContactId", "m1")
    new_domain = f"d-{uuid.uuid4().hex[:10]}"
    live_server.client().create_domain(DomainName=new_domain, DefaultExpirationDays=30)
    from openprofiles.integrations.service import associate_instance

    with live_server.services.write() as tx:
        associate_instance(tx, domain_name=new_domain, instance_arn=instance, move=True)
    post(live_server, "/contact-records", json.dumps(ctr("m2", instance=instance)))
    assert search(live_server, domain, "_ctrContactId", "m2") == []
    assert len(search(live_server, new_domain, "_ctrContactId", "m2")) == 1
    assert search(live_server, domain, "_ctrContactId", "m1")[0]["ProfileId"] == old["ProfileId"]


def test_contacts_are_listed_newest_contact_first_whatever_order_they_arrive_in(live_server, setup):
    """ListProfileObjects of CTR lists by InitiationTimestamp, newest first: a record that
    arrives late (a backfill) or is updated later does not move its contact to the top."""
    domain, instance = setup
    address = "+12065550177"
    arrivals = [
        ctr("middle", instance=instance, address=address, start="2022-04-08T10:00:00Z"),
        ctr("newest", instance=instance, address=address, start="2022-04-09T10:00:00Z"),
        # Backfilled after the newer ones, then updated after that.
        ctr("oldest", instance=instance, address=address, start="2022-04-07T10:00:00Z"),
        ctr(
            "oldest",
            instance=instance,
            address=address,
            start="2022-04-07T10:00:00Z",
            last_update="2022-04-10T09:00:00Z",
            agent="after-call-work",
        ),
    ]
    for record in arrivals:  # one request each: each is written after the one before
        assert post(live_server, "/contact-records", json.dumps(record)).json()["Accepted"] == 1
    [profile] = search(live_server, domain, "_phone", address)
    client = live_server.client()
    args = {"DomainName": domain, "ObjectTypeName": "CTR", "ProfileId": profile["ProfileId"]}
    seen: list[dict[str, Any]] = []
    token = None
    while True:
        page = client.list_profile_objects(
            MaxResults=1, **args, **({"NextToken": token} if token else {})
        )
        seen += [json.loads(item["Object"]) for item in page["Items"]]
        token = page.get("NextToken")
        if not token:
            break
    assert [r["ContactId"] for r in seen] == ["newest", "middle", "oldest"]
    assert seen[-1]["Agent"]["Username"] == "after-call-work"
    filtered = client.list_profile_objects(
        **args, ObjectFilter={"KeyName": "_ctrContactId", "Values": ["middle"]}
    )["Items"]
    assert [json.loads(i["Object"])["ContactId"] for i in filtered] == ["middle"]


def test_a_transaction_of_large_records_is_one_request(live_server, setup):
    """A body is applied in one transaction, so it may hold what a file loader writes in one:
    500 records, here each of 64 KiB (Amazon Connect's 32 KB of contact attributes and as much
    again), 31 MiB in all: more than the API's 16 MiB for a request the model does not bound."""
    domain, instance = setup
    records, record_bytes = 500, 64 * 1024
    lines = []
    for n in range(records):
        record = ctr(f"large-{n}", instance=instance, address=f"+1206555{n:04d}")
        frame = json.dumps({**record, "Attributes": {"notes": ""}})
        # Each line with its newline (the last has none) is `record_bytes` long.
        record["Attributes"] = {"notes": "n" * (record_bytes - 1 - len(frame))}
        lines.append(json.dumps(record))
    body = "\n".join(lines)
    assert len(body.encode()) == records * record_bytes - 1 > 31 * 1024 * 1024
    response = post(live_server, "/contact-records", body, timeout=120)
    assert response.status_code == 200, response.text[:500]
    assert response.json() == {"Accepted": records, "Rejected": []}
    [profile] = search(live_server, domain, "_ctrContactId", f"large-{records - 1}")
    [stored] = live_server.client().list_profile_objects(
        DomainName=domain, ObjectTypeName="CTR", ProfileId=profile["ProfileId"]
    )["Items"]
    assert json.loads(stored["Object"]) == json.loads(lines[-1])
