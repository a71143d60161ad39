"""A matching job whose process stopped reads as FAILED through a real boto3 client against a
live server (both backends), once the scheduler's check has found its heartbeat older than the
lease; its slot's new job is listed beside it. The test passes the check's time itself."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from openprofiles.identity import ml_jobs
from openprofiles.identity.schedule import run_due_matching_jobs


def test_a_dead_job_reads_as_failed(live_server: Any) -> None:
    client = live_server.client()
    services = live_server.services
    name = f"dead-{uuid.uuid4().hex[:10]}"
    client.create_domain(
        DomainName=name,
        DefaultExpirationDays=30,
        Matching={"Enabled": True, "JobSchedule": {"DayOfTheWeek": "FRIDAY", "Time": "9:15"}},
    )
    client.create_profile(DomainName=name, FirstName="Ada", LastName="Lovelace")
    slot = datetime(2030, 1, 4, 9, 15, tzinfo=UTC)  # a Friday
    # A process claimed the slot and stopped before it could run the job.
    with services.write() as tx:
        dead = ml_jobs.claim_scheduled_job(tx, domain_name=name, slot=slot, now=slot)
    assert dead is not None
    pending = client.get_identity_resolution_job(DomainName=name, JobId=dead.job_id)
    assert pending["Status"] == "PENDING" and "JobEndTime" not in pending

    lease = timedelta(seconds=services.settings.matching_job_lease_seconds)
    now = slot + lease + timedelta(seconds=1)
    ran = [j for j in run_due_matching_jobs(services, now=now) if j.domain_name == name]
    assert [j.scheduled_for for j in ran] == [slot]

    got = client.get_identity_resolution_job(DomainName=name, JobId=dead.job_id)
    assert got["Status"] == "FAILED"
    assert got["Message"] == (
        "The process running the job stopped: no heartbeat since 2030-01-04 09:15:00 UTC. "
        "The job did not finish."
    )
    assert got["JobEndTime"] == now
    jobs = client.list_identity_resolution_jobs(DomainName=name)["IdentityResolutionJobsList"]
    assert [(j["JobId"], j["Status"]) for j in jobs] == [
        (ran[0].job_id, "COMPLETED"),
        (dead.job_id, "FAILED"),
    ]
