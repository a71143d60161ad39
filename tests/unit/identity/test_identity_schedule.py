"""Scheduled probabilistic matching jobs (Matching.JobSchedule, spec §5.2) on both backends: a
due slot runs one job, a taken or disabled one none, missed slots run once, the default weekly
slot, concurrent callers (threads of one process, and separate Services as separate processes
would have) run exactly one job per slot, the CLI, and the server's background task loop. The
time is passed in, never waited for."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from tests.support.concurrency import race

from openprofiles.app import background_tasks, build_services
from openprofiles.background import PeriodicTask, background_lifespan
from openprofiles.cli import main
from openprofiles.context import Services
from openprofiles.domains.service import update_domain
from openprofiles.identity import ml_jobs
from openprofiles.identity.schedule import (
    DEFAULT_SCHEDULE,
    WeeklySlot,
    job_schedule,
    run_due_matching_jobs,
)
from openprofiles.settings import Settings

from .conftest import DOMAIN, make_domain, new_profile

WEDNESDAY_1230 = {"DayOfTheWeek": "WEDNESDAY", "Time": "12:30"}
# 2030-01-02 is a Wednesday.
SLOT = datetime(2030, 1, 2, 12, 30, tzinfo=UTC)
WEEK = timedelta(days=7)


def enable(services: Services, domain: str = DOMAIN, **matching: Any) -> None:
    with services.write() as tx:
        update_domain(tx, domain_name=domain, changes={"Matching": {"Enabled": True, **matching}})


def jobs_of(services: Services, domain: str = DOMAIN) -> list[ml_jobs.JobRecord]:
    with services.read() as tx:
        return ml_jobs.list_jobs(tx, domain_name=domain)[0]


def test_latest_slot_is_the_last_scheduled_time_at_or_before_now() -> None:
    wednesday = WeeklySlot(weekday=2, hour=12, minute=30)
    assert wednesday.latest(SLOT) == SLOT
    assert wednesday.latest(SLOT + timedelta(seconds=59)) == SLOT
    assert wednesday.latest(SLOT - timedelta(minutes=1)) == SLOT - WEEK
    assert wednesday.latest(SLOT + timedelta(days=4)) == SLOT  # the Sunday after
    assert wednesday.latest(SLOT + WEEK - timedelta(microseconds=1)) == SLOT
    # A clock in another zone reads as UTC.
    tokyo = SLOT.astimezone(datetime.fromisoformat("2030-01-01T00:00:00+09:00").tzinfo)
    assert wednesday.latest(tokyo) == SLOT


def test_schedule_comes_from_matching_and_defaults_to_saturday_midnight() -> None:
    assert job_schedule({}) is None
    assert job_schedule({"Matching": {"Enabled": False, "JobSchedule": WEDNESDAY_1230}}) is None
    assert job_schedule({"Matching": {"Enabled": True, "JobSchedule": WEDNESDAY_1230}}) == (
        WeeklySlot(2, 12, 30)
    )
    assert DEFAULT_SCHEDULE == {"DayOfTheWeek": "SATURDAY", "Time": "00:00"}
    assert job_schedule({"Matching": {"Enabled": True}}) == WeeklySlot(5, 0, 0)
    assert job_schedule(
        {"Matching": {"Enabled": True, "JobSchedule": {"DayOfTheWeek": "MONDAY", "Time": "7:05"}}}
    ) == WeeklySlot(0, 7, 5)


def test_a_due_slot_runs_one_job_and_then_nothing_until_the_next(
    services: Services, domain: str
) -> None:
    enable(services, JobSchedule=WEDNESDAY_1230)
    new_profile(services, FirstName="Ada")
    (job,) = run_due_matching_jobs(services, now=SLOT + timedelta(minutes=1))
    assert job.domain_name == DOMAIN and job.scheduled_for == SLOT
    assert job.status == ml_jobs.COMPLETED and job.profiles_reviewed == 1
    # The same slot, later, by the same or another caller: already run.
    assert run_due_matching_jobs(services, now=SLOT + timedelta(minutes=2)) == []
    assert run_due_matching_jobs(services, now=SLOT + WEEK - timedelta(minutes=1)) == []
    (following,) = run_due_matching_jobs(services, now=SLOT + WEEK)
    assert following.scheduled_for == SLOT + WEEK
    assert [j.job_id for j in jobs_of(services)] == [following.job_id, job.job_id]


def test_missed_slots_run_once_at_the_next_check(services: Services, domain: str) -> None:
    enable(services, JobSchedule=WEDNESDAY_1230)
    (job,) = run_due_matching_jobs(services, now=SLOT + timedelta(minutes=1))
    # The server was down for three slots: one job, for the latest of them.
    later = SLOT + 3 * WEEK + timedelta(days=2)
    (caught_up,) = run_due_matching_jobs(services, now=later)
    assert caught_up.scheduled_for == SLOT + 3 * WEEK
    assert run_due_matching_jobs(services, now=later + timedelta(hours=1)) == []
    assert len(jobs_of(services)) == 2


def test_default_schedule_and_on_demand_jobs(services: Services, domain: str) -> None:
    enable(services)
    saturday = datetime(2030, 1, 5, tzinfo=UTC)
    # A job run on demand holds no slot: the scheduled one still runs.
    ml_jobs.run_matching_job(services, domain_name=DOMAIN)
    (job,) = run_due_matching_jobs(services, now=saturday + timedelta(hours=3))
    assert job.scheduled_for == saturday
    assert run_due_matching_jobs(services, now=saturday + timedelta(days=6)) == []


def test_disabled_or_missing_matching_runs_nothing(services: Services, domain: str) -> None:
    other = make_domain(services, "ident-off")
    with services.write() as tx:
        update_domain(
            tx,
            domain_name=other,
            changes={"Matching": {"Enabled": False, "JobSchedule": WEDNESDAY_1230}},
        )
    assert run_due_matching_jobs(services, now=SLOT + timedelta(minutes=1)) == []
    with services.read() as tx:
        from openprofiles.store.schema import identity_job

        assert tx.conn.execute(identity_job.select()).first() is None


def test_concurrent_threads_run_one_job_per_slot(services: Services, domain: str) -> None:
    enable(services, JobSchedule=WEDNESDAY_1230)
    now = SLOT + timedelta(minutes=1)
    ran = race([lambda: run_due_matching_jobs(services, now=now) for _ in range(4)])
    assert len(ran) == 1 and ran[0].scheduled_for == SLOT
    assert len(jobs_of(services)) == 1


def test_separate_services_on_one_database_run_one_job_per_slot(
    settings: Settings, services: Services, domain: str
) -> None:
    """Each Services has its own engine and pool (and, on SQLite, its own writer lock), as
    separate server processes would: only the database decides who claims the slot."""
    enable(services, JobSchedule=WEDNESDAY_1230)
    others = [build_services(settings, migrate=False) for _ in range(3)]
    try:
        now = SLOT + timedelta(minutes=1)
        ran = race(
            [
                (lambda s=s: run_due_matching_jobs(s, now=now))  # type: ignore[misc]
                for s in [services, *others]
            ]
        )
    finally:
        for other in others:
            other.database.dispose()
    assert len(ran) == 1 and ran[0].scheduled_for == SLOT
    assert [j.job_id for j in jobs_of(services)] == [ran[0].job_id]


def test_a_taken_slot_cannot_be_claimed_again(
    settings: Settings, services: Services, domain: str
) -> None:
    enable(services, JobSchedule=WEDNESDAY_1230)
    other = build_services(settings, migrate=False)
    try:
        with services.write() as tx:
            first = ml_jobs.claim_scheduled_job(tx, domain_name=DOMAIN, slot=SLOT)
        with other.write() as tx:
            assert ml_jobs.claim_scheduled_job(tx, domain_name=DOMAIN, slot=SLOT) is None
            assert ml_jobs.claim_scheduled_job(tx, domain_name=DOMAIN, slot=SLOT + WEEK)
    finally:
        other.database.dispose()
    assert first is not None and first.status == ml_jobs.PENDING


def test_cli_run_due(settings: Settings, services: Services, domain: str) -> None:
    storage = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        storage += ["--database-url", settings.database_url]
    idle = CliRunner().invoke(main, ["matches", "run-due", *storage])
    assert idle.exit_code == 0 and "No matching job is due" in idle.output
    # Just enabled: the latest slot has not run, so the first job runs at the next check.
    enable(services)
    ran = CliRunner().invoke(main, ["matches", "run-due", *storage, "--json"])
    assert ran.exit_code == 0, ran.output
    (job,) = json.loads(ran.output)
    assert job["DomainName"] == DOMAIN and job["Status"] == "COMPLETED"
    again = CliRunner().invoke(main, ["matches", "run-due", *storage])
    assert again.exit_code == 0 and "No matching job is due" in again.output


def test_the_server_runs_the_scheduler_in_the_background(
    settings: Settings, services: Services, domain: str
) -> None:
    tasks = {t.name: t for t in background_tasks(services)}
    scheduler = tasks["scheduled matching jobs"]
    assert scheduler.interval_seconds == settings.matching_schedule_check_seconds == 60.0
    enable(services)
    scheduler.run()  # what the server's loop calls, at the current time
    assert len(jobs_of(services)) == 1
    scheduler.run()
    assert len(jobs_of(services)) == 1
    off = build_services(settings.with_overrides(matching_schedule_check_seconds=0), migrate=False)
    try:
        assert {t.name: t.interval_seconds for t in background_tasks(off)}[
            "scheduled matching jobs"
        ] == 0
    finally:
        off.database.dispose()


def test_background_lifespan_runs_tasks_and_survives_failures() -> None:
    import asyncio

    ran = threading.Event()
    failures = threading.Semaphore(0)

    def fail() -> None:
        failures.release()
        raise RuntimeError("broken")

    tasks = [
        PeriodicTask("fails", fail, 0.001),
        PeriodicTask("works", ran.set, 3600),
        PeriodicTask("off", lambda: pytest.fail("a task with interval 0 must not run"), 0),
    ]

    async def serve() -> None:
        async with background_lifespan(tasks)(None):
            # A failing task keeps running at its interval.
            for _ in range(3):
                assert await asyncio.to_thread(failures.acquire, True, 10)
            assert await asyncio.to_thread(ran.wait, 10)

    # On a thread of its own: a test before this one in the same worker (Playwright's sync API)
    # may leave an event loop running on the main thread, where asyncio.run refuses to start.
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(60)
    assert not worker.is_alive()
    if errors:
        raise errors[0]


def test_settings_read_the_check_interval() -> None:
    env = {"OPENPROFILES_MATCHING_SCHEDULE_CHECK_SECONDS": "5"}
    assert Settings.from_env(env).matching_schedule_check_seconds == 5.0
    assert Settings.from_env({}).matching_schedule_check_seconds == 60.0


@pytest.mark.parametrize("bad", [{"DayOfTheWeek": "FUNDAY", "Time": "12:30"}, {"Time": "1:00"}])
def test_an_unreadable_schedule_skips_that_domain_only(
    services: Services, domain: str, bad: dict[str, str]
) -> None:
    enable(services, JobSchedule=bad)
    other = make_domain(services, "ident-ok")
    enable(services, other, JobSchedule=WEDNESDAY_1230)
    ran = run_due_matching_jobs(services, now=SLOT + timedelta(minutes=1))
    assert [j.domain_name for j in ran] == [other]


def test_a_domain_whose_key_cannot_be_used_is_reported_and_stops_no_other(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A scheduled job that cannot start because its domain's key is disabled was skipped with
    a DEBUG line only: the operator never learned why the domain's jobs did not run."""
    from dataclasses import replace

    from openprofiles.crypto.keyring import Keyring

    # No cache: the disabled key is felt at once, as it is once a cached data key expires.
    services = build_services(replace(settings, data_key_cache_seconds=0))
    try:
        keyring = Keyring(settings.keyring_path)
        key = keyring.create_key("tenant-a")
        wrapped = services.keys.new_domain_key(
            "keyless", key.arn(settings.region, settings.account_id)
        )
        from openprofiles.domains.service import create_domain

        with services.write() as tx:
            create_domain(
                tx,
                domain_name="keyless",
                config={"DefaultExpirationDays": 30},
                key_id=wrapped.key_id,
                wrapped_key=wrapped.wrapped,
            )
        make_domain(services)
        for name in ("keyless", DOMAIN):
            enable(services, name, JobSchedule=WEDNESDAY_1230)
        new_profile(services, FirstName="Ada")
        keyring.disable(key.key_id)

        with caplog.at_level(logging.WARNING, logger="openprofiles.identity"):
            ran = run_due_matching_jobs(services, now=SLOT + timedelta(minutes=1))

        assert [job.domain_name for job in ran] == [DOMAIN]
        [line] = [r for r in caplog.records if "keyless" in r.getMessage()]
        assert line.levelno == logging.WARNING
        assert "AccessDeniedException" in line.getMessage()
    finally:
        services.database.dispose()
