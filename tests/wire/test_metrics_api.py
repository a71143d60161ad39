"""GET /metrics against a live server (both backends): API requests counted by operation, status
and error, contact records and events taken in, and the database's dead letters and kept
records, in Prometheus' text format as a scraper parses it."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.unit.integrations.integ_helpers import ctr
from tests.wire.test_contact_records_http import post

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(live_server) -> Samples:
    response = httpx.get(live_server.url + "/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0) - before.get(key, 0)


def test_api_requests_are_counted_by_operation_status_and_error(live_server) -> None:
    client = live_server.client()
    domain = f"d-{uuid.uuid4().hex[:10]}"
    client.create_domain(DomainName=domain, DefaultExpirationDays=30)
    before = scrape(live_server)
    for n in range(3):
        client.create_profile(DomainName=domain, FirstName=f"F{n}")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_domain(DomainName=f"missing-{uuid.uuid4().hex[:8]}")
    after = scrape(live_server)
    requests = "openprofiles_api_requests_total"
    assert grew(before, after, requests, operation="CreateProfile", status="200", error="") == 3
    assert (
        grew(
            before,
            after,
            requests,
            operation="GetDomain",
            status="404",
            error="ResourceNotFoundException",
        )
        == 1
    )
    durations = "openprofiles_api_request_duration_seconds_count"
    assert grew(before, after, durations, operation="CreateProfile") == 3
    assert (
        grew(
            before,
            after,
            "openprofiles_api_request_duration_seconds_sum",
            operation="CreateProfile",
        )
        > 0
    )
    # The scrapes themselves are no API requests.
    assert not grew(before, after, requests, operation="none", status="404", error="")


def test_dead_letters_of_a_domain_are_shown_by_category(live_server) -> None:
    client = live_server.client()
    domain = f"d-{uuid.uuid4().hex[:10]}"
    client.create_domain(DomainName=domain, DefaultExpirationDays=30)
    client.put_profile_object_type(
        DomainName=domain,
        ObjectTypeName="Crm",
        Description="CRM accounts",
        AllowProfileCreation=False,
        Fields={"email": {"Source": "_source.email", "Target": "_profile.EmailAddress"}},
        Keys={"_email": [{"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["email"]}]},
    )
    for n in range(2):
        client.put_profile_object(
            DomainName=domain, ObjectTypeName="Crm", Object=json.dumps({"email": f"{n}@x.example"})
        )
    gauges = scrape(live_server)
    key = ("openprofiles_dead_letters", (("category", "no_profile"), ("domain", domain)))
    assert gauges[key] == 2
    client.delete_domain(DomainName=domain)
    assert key not in scrape(live_server)


def test_contact_records_and_events_are_counted_and_kept_records_shown(live_server) -> None:
    client = live_server.client()
    domain = f"d-{uuid.uuid4().hex[:10]}"
    client.create_domain(DomainName=domain, DefaultExpirationDays=30)
    instance = f"arn:aws:connect:us-east-1:111122223333:instance/{uuid.uuid4()}"
    client.put_integration(DomainName=domain, Uri=instance)
    nobodys = f"arn:aws:connect:us-east-1:111122223333:instance/{uuid.uuid4()}"
    before = scrape(live_server)
    records = [
        ctr(str(uuid.uuid4()), instance=instance, address="+12065550100"),
        # Of an instance associated with no domain: kept, and answered as rejected.
        ctr(str(uuid.uuid4()), instance=nobodys, address="+12065550101"),
    ]
    answer = post(live_server, "/contact-records", json.dumps(records)).json()
    assert answer["Accepted"] == 1 and len(answer["Rejected"]) == 1
    event = {
        "ContactId": str(uuid.uuid4()),
        "InitiationTimestamp": datetime.now(UTC).isoformat(),
        "Channel": "VOICE",
        "InstanceARN": instance,
        "CustomerEndpoint": {"Type": "TELEPHONE_NUMBER", "Address": "+12065550102"},
    }
    assert post(live_server, "/contact-events", json.dumps(event)).status_code == 200
    assert post(live_server, "/contact-events", "not json").status_code == 400
    after = scrape(live_server)
    records_total = "openprofiles_contact_records_total"
    assert grew(before, after, records_total, outcome="accepted") == 1
    assert grew(before, after, records_total, outcome="rejected") == 1
    feeds = "openprofiles_feed_requests_total"
    assert grew(before, after, feeds, feed="contact-records", status="200") == 1
    assert grew(before, after, feeds, feed="contact-events", status="200") == 1
    assert grew(before, after, feeds, feed="contact-events", status="400") == 1
    # A refused batch is counted too (unsigned: nothing of it read).
    assert httpx.post(live_server.url + "/contact-records", content=b"[]").status_code == 403
    assert grew(after, scrape(live_server), feeds, feed="contact-records", status="403") == 1
    assert grew(before, after, "openprofiles_kept_contact_records", waiting="false") == 1
