"""Liveness of probabilistic matching jobs and their weekly limit (spec §0, §5.2), on both
backends: a job whose process stopped (heartbeat older than the lease) is marked FAILED by the
scheduler's check and its slot runs again exactly once, even with concurrent checkers; a job
with a fresh heartbeat is left alone; a process taken for dead drops its results; the heartbeat
thread; at most three jobs start in any 7 days. Times are passed in, never waited for: a job
"whose process stopped" is a job row left by a claim that nothing runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import update
from tests.support.concurrency import race

from openprofiles.app import build_services
from openprofiles.cli import main
from openprofiles.context import Services
from openprofiles.domains.service import update_domain
from openprofiles.errors import BadRequest
from openprofiles.identity import ml_jobs
from openprofiles.identity.schedule import run_due_matching_jobs
from openprofiles.settings import Settings
from openprofiles.store.schema import identity_job

from .conftest import DOMAIN, new_profile

WEDNESDAY_1230 = {"DayOfTheWeek": "WEDNESDAY", "Time": "12:30"}
SLOT = datetime(2030, 1, 2, 12, 30, tzinfo=UTC)  # a Wednesday
WEEK = timedelta(days=7)
LEASE = timedelta(seconds=Settings().matching_job_lease_seconds)
SECOND = timedelta(seconds=1)


def enable(services: Services, domain: str = DOMAIN, **matching: Any) -> None:
    with services.write() as tx:
        update_domain(tx, domain_name=domain, changes={"Matching": {"Enabled": True, **matching}})


def jobs_of(services: Services) -> list[ml_jobs.JobRecord]:
    with services.read() as tx:
        return ml_jobs.list_jobs(tx, domain_name=DOMAIN)[0]


def get(services: Services, job_id: str) -> ml_jobs.JobRecord:
    with services.read() as tx:
        return ml_jobs.get_job(tx, domain_name=DOMAIN, job_id=job_id)


def orphan(services: Services, *, claimed: datetime, last_beat: datetime) -> ml_jobs.JobRecord:
    """The slot's job as a process left it when it stopped during Splink: claimed at `claimed`,
    last heartbeat at `last_beat`, status FIND_MATCHING, and nothing running it any more."""
    with services.write() as tx:
        job = ml_jobs.claim_scheduled_job(tx, domain_name=DOMAIN, slot=SLOT, now=claimed)
        assert job is not None
        tx.conn.execute(
            update(identity_job)
            .where(identity_job.c.job_id == job.job_id)
            .values(status=ml_jobs.FIND_MATCHING, started_at=claimed, heartbeat_at=last_beat)
        )
    return get(services, job.job_id)


@pytest.fixture
def others(settings: Settings) -> Iterator[list[Services]]:
    """Services of their own (engine, pool, SQLite writer lock), as other processes have."""
    built = [build_services(settings, migrate=False) for _ in range(2)]
    yield built
    for services in built:
        services.database.dispose()


def test_a_dead_job_is_failed_and_its_slot_runs_again_once(
    services: Services, others: list[Services], domain: str
) -> None:
    enable(services, JobSchedule=WEDNESDAY_1230)
    new_profile(services, FirstName="Ada")
    last_beat = SLOT + timedelta(minutes=3)
    dead = orphan(services, claimed=SLOT + timedelta(minutes=1), last_beat=last_beat)
    # Within the lease the slot is taken: nothing runs, nothing is marked.
    assert run_due_matching_jobs(services, now=last_beat + LEASE) == []
    assert get(services, dead.job_id).status == ml_jobs.FIND_MATCHING

    now = last_beat + LEASE + SECOND
    ran = race(
        [
            (lambda s=s: run_due_matching_jobs(s, now=now))  # type: ignore[misc]
            for s in [services, *others]
        ]
    )
    assert len(ran) == 1
    (again,) = ran
    assert again.scheduled_for == SLOT and again.status == ml_jobs.COMPLETED
    assert again.profiles_reviewed == 1
    failed = get(services, dead.job_id)
    assert failed.status == ml_jobs.FAILED
    assert failed.message == (
        "The process running the job stopped: no heartbeat since 2030-01-02 12:33:00 UTC. "
        "The job did not finish."
    )
    assert failed.ended_at == failed.lease_expired_at == now
    assert failed.scheduled_for == SLOT  # the dead job's row still says which slot it was for
    assert [j.job_id for j in jobs_of(services)] == [again.job_id, dead.job_id]
    # The slot's new job holds it: later checks run nothing until the next slot.
    assert run_due_matching_jobs(services, now=now + timedelta(hours=1)) == []
    assert len(jobs_of(services)) == 2


def test_a_job_with_a_fresh_heartbeat_is_left_alone(services: Services, domain: str) -> None:
    enable(services, JobSchedule=WEDNESDAY_1230)
    last_beat = SLOT + timedelta(minutes=30)
    running = orphan(services, claimed=SLOT + timedelta(minutes=1), last_beat=last_beat)
    # Half an hour after the claim, but its last heartbeat is exactly one lease old.
    assert ml_jobs.expire_stale_jobs(services, now=last_beat + LEASE) == []
    assert run_due_matching_jobs(services, now=last_beat + LEASE) == []
    assert get(services, running.job_id) == running
    # A job run on demand is judged by its heartbeat alike, and only its own heartbeat counts.
    created = last_beat - timedelta(minutes=5)
    with services.write() as tx:
        on_demand = ml_jobs.create_job(tx, domain_name=DOMAIN, now=created)
    assert ml_jobs.expire_stale_jobs(services, now=created + LEASE) == []
    (expired,) = ml_jobs.expire_stale_jobs(services, now=created + LEASE + SECOND)
    assert expired.job_id == on_demand.job_id and expired.status == ml_jobs.FAILED
    assert get(services, running.job_id) == running


def test_a_finished_job_is_never_marked(services: Services, domain: str) -> None:
    enable(services, JobSchedule=WEDNESDAY_1230)
    (done,) = run_due_matching_jobs(services, now=SLOT + timedelta(minutes=1))
    assert ml_jobs.expire_stale_jobs(services, now=SLOT + 10 * WEEK) == []
    assert get(services, done.job_id) == done


def test_a_running_job_beats_at_each_step_on_the_checks_clock(
    services: Services, domain: str
) -> None:
    enable(services, JobSchedule=WEDNESDAY_1230)
    new_profile(services, FirstName="Ada")
    now = SLOT + timedelta(minutes=1)
    (job,) = run_due_matching_jobs(services, now=now)
    assert job.created_at >= now and job.started_at is not None and job.ended_at is not None
    # The last step, COMPLETED, was the last heartbeat; all on a clock that started at `now`.
    assert job.heartbeat_at == job.ended_at == job.updated_at
    assert now <= job.started_at <= job.ended_at < now + timedelta(minutes=5)
    assert job.lease_expired_at is None


def test_a_process_taken_for_dead_drops_its_results(services: Services, domain: str) -> None:
    """A process that stalled longer than the lease (not killed) finds the job FAILED at its
    next step and stops, instead of publishing beside the slot's new job."""
    enable(services)
    new_profile(services, FirstName="Ada")
    new_profile(services, FirstName="Ada")
    beat = datetime(2030, 1, 1, tzinfo=UTC)
    with services.write() as tx:
        job = ml_jobs.create_job(tx, domain_name=DOMAIN, now=beat)
    (expired,) = ml_jobs.expire_stale_jobs(services, now=beat + LEASE + SECOND)
    stalled = ml_jobs.run_job(services, job)
    assert stalled == expired
    assert stalled.status == ml_jobs.FAILED and stalled.profiles_reviewed == 0
    assert stalled.message is not None and "process running the job stopped" in stalled.message
    with services.read() as tx:
        assert ml_jobs.list_groups(tx, domain_name=DOMAIN).total == 0


def test_the_heartbeat_thread_beats_until_the_job_is_no_longer_its(
    services: Services, domain: str
) -> None:
    enable(services)
    with services.write() as tx:
        job = ml_jobs.create_job(tx, domain_name=DOMAIN, now=SLOT)
    readings = iter(SLOT + n * SECOND for n in range(1, 10_000))
    with ml_jobs.Heartbeat(services, job, lambda: next(readings), interval=0.01) as heartbeat:
        assert heartbeat.wait_for_beats(3, timeout=30)
        assert heartbeat.alive
    beaten = get(services, job.job_id).heartbeat_at
    assert beaten is not None and beaten >= SLOT + 3 * SECOND
    # Taken for dead: the next beat finds the job FAILED and the thread stops on its own.
    ml_jobs.expire_stale_jobs(services, now=beaten + LEASE + SECOND)
    with ml_jobs.Heartbeat(services, job, lambda: next(readings), interval=0.01) as heartbeat:
        assert heartbeat.wait_for_beats(10_000, timeout=30)
        assert not heartbeat.alive and heartbeat.beats == 1
    assert get(services, job.job_id).heartbeat_at == beaten


def test_at_most_three_jobs_start_in_any_seven_days(
    settings: Settings, services: Services, domain: str
) -> None:
    enable(services, JobSchedule=WEDNESDAY_1230)
    (scheduled,) = run_due_matching_jobs(services, now=SLOT + timedelta(minutes=1))
    for day in (1, 2):
        with services.write() as tx:
            ml_jobs.create_job(tx, domain_name=DOMAIN, now=SLOT + timedelta(days=day))
    with services.write() as tx, pytest.raises(BadRequest) as refused:
        ml_jobs.create_job(tx, domain_name=DOMAIN, now=SLOT + timedelta(days=3))
    assert refused.value.message == (
        f"Domain {DOMAIN} has started 3 identity resolution jobs in the last 7 days; at most 3 "
        "jobs run a week. The next can start after 2030-01-09 12:31:00 UTC."
    )
    # A changed JobSchedule's slot waits too (the Friday's), until a job leaves the window.
    enable(services, JobSchedule={"DayOfTheWeek": "FRIDAY", "Time": "12:30"})
    friday = SLOT + timedelta(days=2)
    assert run_due_matching_jobs(services, now=friday + timedelta(hours=1)) == []
    (late,) = run_due_matching_jobs(services, now=scheduled.created_at + WEEK + SECOND)
    assert late.scheduled_for == friday and late.status == ml_jobs.COMPLETED
    assert len(jobs_of(services)) == 4


def test_the_cli_refuses_a_fourth_job_in_a_week(
    settings: Settings, services: Services, domain: str
) -> None:
    enable(services)
    storage = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        storage += ["--database-url", settings.database_url]
    command = ["matches", "run-job", *storage, "--domain", DOMAIN, "--json"]
    for _ in range(3):
        ran = CliRunner().invoke(main, command)
        assert ran.exit_code == 0 and json.loads(ran.output)["Status"] == "COMPLETED", ran.output
    refused = CliRunner().invoke(main, command)
    assert refused.exit_code == 1
    assert "has started 3 identity resolution jobs in the last 7 days" in refused.output


def test_the_weekly_limit_is_a_setting(settings: Settings, domain: str) -> None:
    unlimited = build_services(settings.with_overrides(matching_jobs_per_week=0), migrate=False)
    try:
        enable(unlimited)
        for day in range(5):
            with unlimited.write() as tx:
                ml_jobs.create_job(tx, domain_name=DOMAIN, now=SLOT + timedelta(hours=day))
    finally:
        unlimited.database.dispose()


def test_settings_read_the_lease_and_the_weekly_limit() -> None:
    env = {
        "OPENPROFILES_MATCHING_JOB_LEASE_SECONDS": "120",
        "OPENPROFILES_MATCHING_JOBS_PER_WEEK": "0",
    }
    assert Settings.from_env(env).matching_job_lease_seconds == 120.0
    assert Settings.from_env(env).matching_jobs_per_week == 0
    assert Settings.from_env({}).matching_job_lease_seconds == 600.0
    assert Settings.from_env({}).matching_jobs_per_week == 3
