"""POST /contact-records (both backends): a body holds at most 10,000 records whatever their
size (it was limited by bytes only, and 40,000 small records held the SQLite writer half a
minute), refused whole with a 413 naming the limit; an empty body, or one of whitespace, is a
BadRequestException (it was answered 200, Accepted 0)."""

from __future__ import annotations

import json

import pytest
from tests.support.server import LiveServer
from tests.unit.contacts.test_contact_records_http_body import post

from openprofiles.contacts.kept import list_unrouted


@pytest.mark.parametrize("body", [b"", b"  \n\t\r\n "])
def test_an_empty_body_is_a_bad_request(live_server: LiveServer, body: bytes) -> None:
    response = post(live_server, "/contact-records", body)
    assert response.status_code == 400, response.text
    assert response.headers["x-amzn-ErrorType"] == "BadRequestException"
    assert "empty" in response.json()["Message"]


def test_a_body_of_too_many_records_is_refused_whole(live_server: LiveServer) -> None:
    # Records of a few bytes each: far under the byte limit.
    body = "\n".join(json.dumps({"ContactId": f"c{n}"}) for n in range(10_001))
    response = post(live_server, "/contact-records", body.encode())
    assert response.status_code == 413, response.text[:300]
    assert response.headers["x-amzn-ErrorType"] == "RequestEntityTooLargeException"
    message = response.json()["Message"]
    assert "10001 records" in message and "at most 10000" in message
    # Nothing of it was kept: the limit is checked before anything is applied.
    with live_server.services.read() as tx:
        assert list_unrouted(tx, instance_arn=None) == []
