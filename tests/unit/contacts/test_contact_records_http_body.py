"""POST /contact-records against a live server (both backends): a body that begins with a UTF-8
byte order mark is read as the file loader reads a file (the mark is not part of the first
record), and a record nested deeper than PutProfileObject takes is rejected with its ContactId,
the rest of the body applied. /contact-events takes a byte order mark alike."""

from __future__ import annotations

import codecs
import json
import uuid

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from tests.support.server import LiveServer
from tests.unit.integrations.integ_helpers import ctr

from openprofiles.json_text import MAX_JSON_DEPTH


def post(live_server: LiveServer, path: str, body: bytes) -> httpx.Response:
    """`body`, bytes as they are, signed with an admin credential."""
    request = AWSRequest(
        method="POST",
        url=live_server.url + path,
        data=body,
        headers={"Content-Type": "application/json"},
    )
    credentials = Credentials(*live_server.admin_key)
    SigV4Auth(credentials, "profile", live_server.settings.region).add_auth(request)
    return httpx.post(
        live_server.url + path, content=body, headers=dict(request.headers.items()), timeout=5.0
    )


@pytest.fixture
def instance(live_server: LiveServer) -> str:
    domain = f"d-{uuid.uuid4().hex[:10]}"
    live_server.client().create_domain(DomainName=domain, DefaultExpirationDays=30)
    arn = f"arn:aws:connect:us-east-1:111122223333:instance/{uuid.uuid4()}"
    live_server.client().put_integration(DomainName=domain, Uri=arn)
    return arn


def test_a_body_with_a_byte_order_mark_is_read(live_server: LiveServer, instance: str) -> None:
    """It was refused whole (400) while the CLI took the same file."""
    for name, body in {
        "one": json.dumps(ctr("bom-1", instance=instance)),
        "lines": "\n".join(json.dumps(ctr(f"bom-{i}", instance=instance)) for i in (2, 3)),
        "array": json.dumps([ctr("bom-4", instance=instance)]),
    }.items():
        response = post(live_server, "/contact-records", codecs.BOM_UTF8 + body.encode())
        assert response.status_code == 200, (name, response.text)
        assert response.json()["Rejected"] == [], name
        assert response.json()["Accepted"] == (2 if name == "lines" else 1), name
    event = {
        "ContactId": "bom-event",
        "InstanceARN": instance,
        "Channel": "VOICE",
        "InitiationTimestamp": "2022-04-08T14:59:38Z",
    }
    response = post(live_server, "/contact-events", codecs.BOM_UTF8 + json.dumps(event).encode())
    assert response.status_code == 200, response.text
    assert response.json()["ContactId"] == "bom-event"


def test_a_record_nested_too_deeply_is_rejected_with_its_contact_id(
    live_server: LiveServer, instance: str
) -> None:
    """It was accepted and stored, though PutProfileObject refuses the same object."""
    levels = MAX_JSON_DEPTH + 100
    deep = json.dumps(ctr("deep-http", instance=instance))[:-1]
    deep += ', "deep": ' + "[" * levels + "]" * levels + "}"
    body = "\n".join([json.dumps(ctr("fine-http", instance=instance)), deep])
    response = post(live_server, "/contact-records", body.encode())
    assert response.status_code == 200, response.text
    assert response.json()["Accepted"] == 1
    [rejected] = response.json()["Rejected"]
    assert rejected["ContactId"] == "deep-http"
    assert f"nested at most {MAX_JSON_DEPTH} levels deep" in rejected["Message"]
