"""Bad input to POST /contact-records and /contact-events, against a live server (both
backends): a wrong-typed field or a lone surrogate rejects only its record (the rest of the
batch is applied), a malformed multi-line body is one BadRequestException (nothing kept), an
update that cannot be ordered (no or the same LastUpdateTimestamp) or a ContactId padded with
white space is rejected rather than answered as accepted, and an oversized body is answered
413 once the limit is read, like the API's routes."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.parsers import RestJSONParser
from tests.support.event_loop import run_in_fresh_thread
from tests.unit.integrations.integ_helpers import ctr
from tests.wire.test_contact_records_http import post, search

from openprofiles.contacts.http import MAX_BODY_BYTES
from openprofiles.contacts.kept import list_unrouted
from openprofiles.dlq.service import list_messages


@pytest.fixture
def setup(live_server) -> tuple[str, str]:
    domain = f"d-{uuid.uuid4().hex[:10]}"
    live_server.client().create_domain(DomainName=domain, DefaultExpirationDays=30)
    instance = f"arn:aws:connect:us-east-1:111122223333:instance/{uuid.uuid4()}"
    live_server.client().put_integration(DomainName=domain, Uri=instance)
    return domain, instance


def letters(live_server, domain: str) -> list[dict[str, Any]]:
    with live_server.services.read() as tx:
        return [json.loads(m.object_json) for m in list_messages(tx, domain_name=domain)]


def unrouted_count(live_server) -> int:
    with live_server.services.read() as tx:
        return len(list_unrouted(tx))


def test_wrong_typed_field_rejects_its_record_only(live_server, setup):
    domain, instance = setup
    as_array = [
        ctr("good-1", instance=instance),
        ctr("bad-1", instance=instance, Channel=["VOICE"]),
        ctr("bad-2", instance=instance, LastUpdateTimestamp={"at": 1}),
    ]
    response = post(live_server, "/contact-records", json.dumps(as_array))
    assert response.status_code == 200
    body = response.json()
    assert body["Accepted"] == 1
    assert [r["ContactId"] for r in body["Rejected"]] == ["bad-1", "bad-2"]
    assert "Channel" in body["Rejected"][0]["Message"]
    as_lines = [
        ctr("bad-3", instance=instance, Channel={"Name": "VOICE"}),
        ctr("good-2", instance=instance),
    ]
    response = post(live_server, "/contact-records", "\n".join(json.dumps(r) for r in as_lines))
    assert response.json()["Accepted"] == 1
    assert [r["ContactId"] for r in response.json()["Rejected"]] == ["bad-3"]
    assert len(search(live_server, domain, "_ctrContactId", "good-1")) == 1
    assert len(search(live_server, domain, "_ctrContactId", "good-2")) == 1
    assert sorted(r["ContactId"] for r in letters(live_server, domain)) == [
        "bad-1",
        "bad-2",
        "bad-3",
    ]


def test_a_batch_sent_again_counts_another_attempt_on_its_letters(live_server, setup):
    """A feed whose answer was lost (a killed server, a timeout) sends the batch again: its
    rejected records were stored as new letters each time (and sent to SQS again). Now the
    same record from the feed is one letter with its attempts counted, its reason naming the
    feed; a different record is a letter of its own."""
    domain, instance = setup
    batch = json.dumps(
        [ctr("again-ok", instance=instance), ctr("again-bad", instance=instance, Channel=[1])]
    )
    for _ in range(2):
        response = post(live_server, "/contact-records", batch)
        assert response.status_code == 200
        assert [r["ContactId"] for r in response.json()["Rejected"]] == ["again-bad"]
    other = ctr("again-bad", instance=instance, Channel=[2])
    assert post(live_server, "/contact-records", json.dumps(other)).status_code == 200
    with live_server.services.read() as tx:
        stored = list_messages(tx, domain_name=domain)
    by_channel = {json.loads(m.object_json)["Channel"][0]: m for m in stored}
    assert sorted(by_channel) == [1, 2]
    assert [by_channel[1].attempts, by_channel[2].attempts] == [2, 1]
    assert by_channel[1].reason.startswith("POST /contact-records: ")
    assert "Channel" in by_channel[1].reason
    assert len(search(live_server, domain, "_ctrContactId", "again-ok")) == 1


def test_updates_that_cannot_be_ordered_and_padded_ids_are_rejected(live_server, setup):
    domain, instance = setup
    first = ctr("o-1", instance=instance, agent="first")
    assert post(live_server, "/contact-records", json.dumps(first)).json()["Accepted"] == 1
    unstamped = ctr("o-1", instance=instance, agent="unstamped")
    del unstamped["LastUpdateTimestamp"]
    body = [
        unstamped,
        ctr("o-1", instance=instance, agent="same time"),
        first,
        ctr(" o-1", instance=instance, agent="padded"),
    ]
    response = post(live_server, "/contact-records", json.dumps(body))
    assert response.status_code == 200
    answer = response.json()
    # Only the repeat of the applied record is accepted.
    assert answer["Accepted"] == 1
    assert [r["ContactId"] for r in answer["Rejected"]] == ["o-1", "o-1", " o-1"]
    no_time, same_time, padded = (r["Message"] for r in answer["Rejected"])
    assert "has no LastUpdateTimestamp" in no_time and "later LastUpdateTimestamp" in no_time
    assert "the same LastUpdateTimestamp but differs" in same_time
    assert "white space" in padded
    [profile] = search(live_server, domain, "_ctrContactId", "o-1")
    [stored] = live_server.client().list_profile_objects(
        DomainName=domain, ObjectTypeName="CTR", ProfileId=profile["ProfileId"]
    )["Items"]
    assert json.loads(stored["Object"])["Agent"]["Username"] == "first"
    assert sorted(r["Agent"]["Username"] for r in letters(live_server, domain)) == [
        "padded",
        "same time",
        "unstamped",
    ]


def test_contact_event_with_a_wrong_typed_field_is_a_bad_request(live_server, setup):
    _domain, instance = setup
    event = {
        "ContactId": "ev-1",
        "InstanceARN": instance,
        "Channel": ["VOICE"],
        "InitiationTimestamp": "2022-04-08T14:59:38Z",
    }
    for change in ({}, {"Channel": "VOICE", "CustomerEndpoint": {"Address": 1, "Type": "VOIP"}}):
        response = post(live_server, "/contact-events", json.dumps({**event, **change}))
        assert response.status_code == 400
        assert response.headers["x-amzn-ErrorType"] == "BadRequestException"
        assert response.json()["Message"]


def test_a_continued_contact_id_that_is_no_contact_id_is_refused_not_dropped(live_server, setup):
    """Records and events alike: a PreviousContactId (InitialContactId, RelatedContactId) of
    the wrong JSON type rejects its record, the reason naming the field, rather than being
    dropped and the contact said to continue no earlier contact."""
    domain, instance = setup
    event = {
        "ContactId": "ev-cont",
        "InstanceARN": instance,
        "Channel": "TASK",
        "InitiationTimestamp": "2022-04-08T14:59:38Z",
    }
    for name, value in (
        ("PreviousContactId", 5),
        ("InitialContactId", {}),
        ("RelatedContactId", True),
    ):
        response = post(live_server, "/contact-events", json.dumps({**event, name: value}))
        assert response.status_code == 400, response.text
        assert response.headers["x-amzn-ErrorType"] == "BadRequestException"
        assert f"{name} " in response.json()["Message"]
        assert "is not a ContactId" in response.json()["Message"]
    records = [
        ctr("cont-1", instance=instance, address=None, PreviousContactId=5),
        ctr("cont-2", instance=instance, address=None, InitialContactId={}),
        ctr("cont-3", instance=instance, RelatedContactId=True),
    ]
    body = post(live_server, "/contact-records", json.dumps(records)).json()
    assert body["Accepted"] == 0
    assert [r["ContactId"] for r in body["Rejected"]] == ["cont-1", "cont-2", "cont-3"]
    for rejection, name in zip(
        body["Rejected"], ("PreviousContactId", "InitialContactId", "RelatedContactId"), strict=True
    ):
        assert f"{name} " in rejection["Message"]
        assert "continues no earlier contact" not in rejection["Message"]
    assert sorted(r["ContactId"] for r in letters(live_server, domain)) == [
        "cont-1",
        "cont-2",
        "cont-3",
    ]


def test_a_timestamp_outside_utc_is_said_to_be_out_of_range(live_server, setup):
    _domain, instance = setup
    late = "9999-12-31T23:59:59-05:00"
    body = post(
        live_server,
        "/contact-records",
        json.dumps([ctr("late-1", instance=instance, LastUpdateTimestamp=late)]),
    ).json()
    [rejection] = body["Rejected"]
    assert rejection["ContactId"] == "late-1"
    assert "LastUpdateTimestamp" in rejection["Message"]
    assert "out of range" in rejection["Message"]
    assert "not an ISO 8601" not in rejection["Message"]
    event = {
        "ContactId": "late-ev",
        "InstanceARN": instance,
        "Channel": "VOICE",
        "InitiationTimestamp": late,
    }
    response = post(live_server, "/contact-events", json.dumps(event))
    assert response.status_code == 400
    assert "InitiationTimestamp" in response.json()["Message"]
    assert "out of range" in response.json()["Message"]


def test_contact_event_that_is_not_strict_json_is_a_bad_request(live_server, setup):
    """Read strictly, as every body is: NaN used to be accepted here (and stored) though
    POST /contact-records refused it."""
    domain, instance = setup
    event = {
        "ContactId": "ev-nan",
        "InstanceARN": instance,
        "Channel": "VOICE",
        "InitiationTimestamp": "2022-04-08T14:59:38Z",
        "Score": float("nan"),
        "CustomerEndpoint": {"Address": "+12065550142", "Type": "TELEPHONE_NUMBER"},
    }
    body = json.dumps(event)  # Python writes NaN, as some senders do
    response = post(live_server, "/contact-events", body)
    assert response.status_code == 400
    assert response.headers["x-amzn-ErrorType"] == "BadRequestException"
    assert "NaN" in response.json()["Message"]
    assert search(live_server, domain, "_ctrContactId", "ev-nan") == []


def test_lone_surrogate_rejects_its_record_only(live_server, setup):
    domain, instance = setup
    records = [
        ctr("s-good", instance=instance),
        ctr("s-bad", instance=instance, Attributes={"note": "\ud800"}),
    ]
    body = json.dumps(records)
    assert "\\ud800" in body
    response = post(live_server, "/contact-records", body)
    assert response.status_code == 200
    assert response.json()["Accepted"] == 1
    [rejected] = response.json()["Rejected"]
    assert rejected["ContactId"] == "s-bad"
    assert "lone UTF-16 surrogate" in rejected["Message"]
    assert len(search(live_server, domain, "_ctrContactId", "s-good")) == 1
    assert [r["ContactId"] for r in letters(live_server, domain)] == ["s-bad"]
    event = {
        "ContactId": "ev-\udc00",
        "InstanceARN": instance,
        "Channel": "VOICE",
        "InitiationTimestamp": "2022-04-08T14:59:38Z",
    }
    response = post(live_server, "/contact-events", json.dumps(event))
    assert response.status_code == 400
    assert "lone surrogate" in response.json()["Message"]


def test_malformed_multi_line_body_is_one_bad_request(live_server, setup):
    domain, instance = setup
    records = [ctr("p1", instance=instance), ctr("p2", instance=instance)]
    # A pretty-printed array with a stray trailing comma.
    pretty = json.dumps(records, indent=2)[:-2] + ",\n]"
    kept_before = unrouted_count(live_server)
    response = post(live_server, "/contact-records", pretty)
    assert response.status_code == 400
    assert response.headers["x-amzn-ErrorType"] == "BadRequestException"
    message = response.json()["Message"]
    assert "neither a JSON contact record, a JSON array of records nor JSON lines" in message
    assert f"line {pretty.count(chr(10)) + 1} column 1" in message
    assert unrouted_count(live_server) == kept_before
    assert letters(live_server, domain) == []
    assert search(live_server, domain, "_ctrContactId", "p1") == []
    # JSON lines with one bad line: that line is rejected, the rest applied.
    lines = f"{json.dumps(records[0])}\n{{bad\n{json.dumps(records[1])}"
    assert post(live_server, "/contact-records", lines).json()["Accepted"] == 2


@pytest.mark.parametrize("path", ["/contact-records", "/contact-events"])
def test_oversized_body_is_413_before_the_rest_is_read(live_server, path):
    chunk = b"x" * (1 << 20)
    chunks = MAX_BODY_BYTES // len(chunk) + 8
    # Over HTTP, chunked (no declared size), with headers of a known key that pass the
    # signature's header check: the size is checked before the body's part of the signature
    # (an unsigned request is refused before any of its body is read: test_unsigned_bodies).
    headers = _headers_signed_by_a_known_key(live_server, path)
    response = httpx.post(
        live_server.url + path, content=(chunk for _ in range(chunks)), headers=headers
    )
    assert response.status_code == 413
    # In the AWS error format, as an AWS SDK reads it (botocore's REST-JSON error parser).
    parsed = RestJSONParser().parse(
        {
            "status_code": response.status_code,
            "headers": response.headers,
            "body": response.content,
        },
        None,
    )
    assert parsed["Error"] == {
        "Code": "RequestEntityTooLargeException",
        "Message": f"The request body exceeds {MAX_BODY_BYTES} bytes.",
    }
    assert parsed["ResponseMetadata"]["RequestId"]
    assert response.headers["Content-Type"] == "application/json"
    # The app asks for no more of the body than the limit (the server drains the rest).
    status, asked = run_in_fresh_thread(_asgi_post(live_server.app, path, chunk, chunks, headers))
    assert status == 413
    assert asked == MAX_BODY_BYTES // len(chunk) + 1


def _headers_signed_by_a_known_key(live_server, path: str) -> dict[str, str]:
    """The headers of an empty POST to `path` signed by the admin key (host included)."""
    request = AWSRequest(method="POST", url=live_server.url + path, data=b"")
    key = Credentials(*live_server.admin_key)
    SigV4Auth(key, "profile", live_server.settings.region).add_auth(request)
    return {**dict(request.headers.items()), "host": live_server.url.split("//", 1)[1]}


async def _asgi_post(
    app: Any, path: str, chunk: bytes, chunks: int, headers: dict[str, str]
) -> tuple[int, int]:
    """POST `chunks` copies of `chunk` to the ASGI app; (status, chunks the app read)."""
    asked = 0
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal asked
        asked += 1
        return {"type": "http.request", "body": chunk, "more_body": asked < chunks}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")]
        + [(name.lower().encode(), value.encode()) for name, value in headers.items()],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    return status, asked


def test_an_instance_that_is_no_arn_rejects_its_record_only_and_is_not_kept_in_clear(
    live_server, setup
):
    """A NUL in InstanceARN used to fail the whole batch on PostgreSQL (a text column refuses
    it), and any string given as InstanceARN was kept in clear in the unrouted record's column:
    only a real instance ARN is (the sealed record keeps what was sent)."""
    domain, instance = setup
    marker = "someone@example.org +14155550199"
    records = [
        ctr("n-good", instance=instance),
        {"ContactId": "n-nul", "InstanceARN": "x\u0000"},
        ctr("n-text", instance=marker),
    ]
    response = post(live_server, "/contact-records", json.dumps(records))
    assert response.status_code == 200
    assert response.json()["Accepted"] == 1
    assert [r["ContactId"] for r in response.json()["Rejected"]] == ["n-nul", "n-text"]
    assert len(search(live_server, domain, "_ctrContactId", "n-good")) == 1
    with live_server.services.read() as tx:
        # The module's server keeps other tests' records too (some not JSON at all).
        ours = ('"n-nul"', '"n-text"')
        kept = [k for k in list_unrouted(tx) if any(i in k.object_json for i in ours)]
    assert sorted(json.loads(k.object_json)["ContactId"] for k in kept) == ["n-nul", "n-text"]
    assert [k.instance_arn for k in kept] == [None, None]
