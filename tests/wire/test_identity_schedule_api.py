"""A scheduled probabilistic matching job (Matching.JobSchedule, spec §5.2) is listed through a
real boto3 client against a live server (both backends). The live server's own scheduler is off
(tests/conftest.py), so the test runs the check itself, at a time it chooses."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from openprofiles.identity.schedule import run_due_matching_jobs


def test_a_scheduled_job_is_listed_and_readable(live_server: Any) -> None:
    client = live_server.client()
    name = f"sched-{uuid.uuid4().hex[:10]}"
    client.create_domain(
        DomainName=name,
        DefaultExpirationDays=30,
        Matching={"Enabled": True, "JobSchedule": {"DayOfTheWeek": "FRIDAY", "Time": "9:15"}},
    )
    assert client.get_domain(DomainName=name)["Matching"]["JobSchedule"] == {
        "DayOfTheWeek": "FRIDAY",
        "Time": "9:15",
    }
    client.create_profile(DomainName=name, FirstName="Ada", LastName="Lovelace")
    slot = datetime(2030, 1, 4, 9, 15, tzinfo=UTC)  # a Friday
    ran = [
        j
        for j in run_due_matching_jobs(live_server.services, now=slot + timedelta(minutes=1))
        if j.domain_name == name
    ]
    assert [j.scheduled_for for j in ran] == [slot]
    jobs = client.list_identity_resolution_jobs(DomainName=name)["IdentityResolutionJobsList"]
    assert [(j["JobId"], j["Status"]) for j in jobs] == [(ran[0].job_id, "COMPLETED")]
    got = client.get_identity_resolution_job(DomainName=name, JobId=ran[0].job_id)
    assert got["JobStats"]["NumberOfProfilesReviewed"] == 1
