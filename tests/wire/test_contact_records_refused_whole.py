"""POST /contact-records against a live server (both backends): a body that is no record, no
array of records and no JSON lines — text that is not JSON on one line, a truncated record, a
JSON value that is not an object — is one BadRequestException saying where parsing stopped, and
nothing of it is applied or kept. Such bodies were answered 200 with one rejected record, which
was kept in the unrouted store under "(no instance)" until an operator purged it. A line or an
element that is not a record, beside records, is still rejected alone."""

from __future__ import annotations

import json
import uuid

import pytest
from tests.unit.integrations.integ_helpers import ctr
from tests.wire.test_contact_records_bad_input import letters, unrouted_count
from tests.wire.test_contact_records_http import post


@pytest.fixture
def setup(live_server) -> tuple[str, str]:
    domain = f"d-{uuid.uuid4().hex[:10]}"
    live_server.client().create_domain(DomainName=domain, DefaultExpirationDays=30)
    instance = f"arn:aws:connect:us-east-1:111122223333:instance/{uuid.uuid4()}"
    live_server.client().put_integration(DomainName=domain, Uri=instance)
    return domain, instance


def test_a_body_that_is_not_records_is_refused_whole(live_server, setup) -> None:
    domain, instance = setup
    record = json.dumps(ctr("tr-1", instance=instance))
    bodies = {
        "not JSON": ("{bad", "line 1 column 2"),
        "a truncated record": (record[: len(record) // 2], "line 1 column"),
        "truncated records, one a line": (f"{record[:40]}\n{record[:50]}", "line 1 column"),
        "null": ("null", "it is JSON null"),
        "a number": ("42", "it is a JSON number"),
        "a string": ('"ContactId"', "it is a JSON string"),
        "a boolean": ("true", "it is a JSON boolean"),
    }
    kept_before = unrouted_count(live_server)
    for name, (body, where) in bodies.items():
        response = post(live_server, "/contact-records", body)
        assert response.status_code == 400, (name, response.text)
        assert response.headers["x-amzn-ErrorType"] == "BadRequestException", name
        message = response.json()["Message"]
        assert message.startswith("The body is neither a JSON contact record"), (name, message)
        assert where in message, (name, message)
    assert unrouted_count(live_server) == kept_before
    assert letters(live_server, domain) == []


def test_lines_and_elements_that_are_not_records_fail_alone(live_server, setup) -> None:
    _, instance = setup
    good = [json.dumps(ctr(f"fine-{n}", instance=instance)) for n in range(3)]
    bodies = [f"{good[0]}\n{{bad", f"{good[1]}\nnull", f"[{good[2]}, null]"]
    for body in bodies:
        response = post(live_server, "/contact-records", body)
        assert response.status_code == 200, response.text
        assert response.json()["Accepted"] == 1, (body, response.text)
        assert len(response.json()["Rejected"]) == 1, (body, response.text)
