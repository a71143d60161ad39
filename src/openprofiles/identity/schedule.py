"""Scheduled probabilistic matching jobs (`Matching.JobSchedule`, spec §5.2).

A domain with Matching enabled runs a job every week at its JobSchedule (DayOfTheWeek and Time
"HH:MM", UTC) or, without one, at the cloud service's default, Saturday 00:00 UTC.
`run_due_matching_jobs(services, now=...)` — called by the server's background task every
`Settings.matching_schedule_check_seconds`, and by `openprofiles matches run-due` — looks at each
such domain's latest slot (the last scheduled time at or before `now`) and runs a job for it
when no job holds that slot yet:

* Only the latest slot counts: a server that was down over one or more slots runs one job at its
  next check, not one per missed slot.
* A domain that was just enabled has not run its latest slot, so its first job runs at the next
  check (the cloud service's "first run within 24 hours", spec §5.2); a changed JobSchedule
  likewise runs its latest slot at the next check when no job had that slot.
* Jobs run on demand hold no slot and do not stand in for a scheduled one.
* Several server processes may check at once, on PostgreSQL or SQLite: a scheduled job's row
  carries its slot, unique per domain, and only the process whose insert writes that row runs
  the job (`ml_jobs.claim_scheduled_job`); the others find the slot taken.
* A domain that has started `Settings.matching_jobs_per_week` (3) jobs in the last 7 days
  (scheduled, on demand, or a changed JobSchedule's) runs no more: its slot waits for a later
  check.

A process that stops while a job runs (killed, crashed, redeployed) stops writing the job's
heartbeat. Each check first marks FAILED the jobs whose heartbeat is older than
`Settings.matching_job_lease_seconds` (`ml_jobs.expire_stale_jobs`); a scheduled job so marked
lets go of its slot, which runs again in the same check, once, however many processes check.
A check at `now` runs its jobs on a clock that starts at `now` (`ml_jobs.clock_from`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from openprofiles.context import Services, Tx
from openprofiles.domains.service import list_domains
from openprofiles.errors import BadRequest, NotFound, ServiceError
from openprofiles.identity import ml_jobs
from openprofiles.store.schema import identity_job

logger = logging.getLogger(__name__)

# Spec §5.2: without a JobSchedule the job runs weekly, Saturday 00:00 UTC.
DEFAULT_SCHEDULE = {"DayOfTheWeek": "SATURDAY", "Time": "00:00"}
# In datetime.weekday() order.
DAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
DOMAIN_PAGE = 100


@dataclass(frozen=True)
class WeeklySlot:
    weekday: int
    hour: int
    minute: int

    def latest(self, now: datetime) -> datetime:
        """The last time at or before `now` (timezone-aware) this weekly slot falls on."""
        now = now.astimezone(UTC)
        slot = now.replace(hour=self.hour, minute=self.minute, second=0, microsecond=0)
        slot -= timedelta(days=(now.weekday() - self.weekday) % 7)
        return slot if slot <= now else slot - timedelta(days=7)


def job_schedule(config: Mapping[str, Any]) -> WeeklySlot | None:
    """A domain's weekly job slot when Matching is enabled, else None. The API model checks
    JobSchedule's enum and "H:MM"/"HH:MM" pattern on the way in."""
    matching = config.get("Matching") or {}
    if not matching.get("Enabled"):
        return None
    schedule = matching.get("JobSchedule") or DEFAULT_SCHEDULE
    hour, minute = (int(part) for part in str(schedule["Time"]).split(":"))
    return WeeklySlot(DAYS.index(schedule["DayOfTheWeek"]), hour, minute)


@dataclass(frozen=True)
class DueJob:
    domain_name: str
    slot: datetime


def due_jobs(tx: Tx, *, now: datetime) -> list[DueJob]:
    """The domains whose latest slot at `now` no job holds yet, with that slot."""
    due = []
    after = None
    while True:
        page, more = list_domains(tx, after=after, limit=DOMAIN_PAGE)
        for record in page:
            try:
                weekly = job_schedule(record.config)
            except (KeyError, ValueError):
                logger.warning("domain %s has an unreadable Matching.JobSchedule", record.name)
                continue
            if weekly is None:
                continue
            slot = weekly.latest(now)
            taken = tx.conn.execute(
                select(identity_job.c.job_id)
                .where(
                    identity_job.c.domain_name == record.name,
                    identity_job.c.scheduled_for == slot,
                    # A job taken for dead no longer holds its slot.
                    identity_job.c.lease_expired_at.is_(None),
                )
                .limit(1)
            ).first()
            if taken is None:
                due.append(DueJob(record.name, slot))
        if not more or not page:
            return due
        after = page[-1].name


def run_due_matching_jobs(services: Services, *, now: datetime) -> list[ml_jobs.JobRecord]:
    """Mark FAILED the jobs whose process stopped, then run a job for every domain whose latest
    slot at `now` is not taken; returns the jobs this call ran (a slot another process claimed
    first is left to it)."""
    clock = ml_jobs.clock_from(now)
    ml_jobs.expire_stale_jobs(services, now=now)
    with services.read() as tx:
        due = due_jobs(tx, now=now)
    ran = []
    for item in due:
        try:
            with services.write() as tx:
                job = ml_jobs.claim_scheduled_job(
                    tx, domain_name=item.domain_name, slot=item.slot, now=clock()
                )
        except (BadRequest, NotFound) as exc:
            # The domain was deleted, or Matching turned off, since the read; or the domain has
            # started its jobs for the week, and the slot waits for a later check.
            logger.debug("slot of domain %s not claimed: %s", item.domain_name, exc.code)
            continue
        except ServiceError as exc:
            # Its key cannot be used (disabled, KMS unreachable): the operator must see why the
            # domain's scheduled jobs do not run. The code only: the message may name the key.
            logger.warning(
                "scheduled identity resolution job of domain %s not started: %s",
                item.domain_name,
                exc.code,
            )
            continue
        if job is not None:
            result = ml_jobs.run_job(services, job, clock=clock)
            if result is not None:  # None: Matching turned off before it started
                ran.append(result)
    return ran


def run_due_now(services: Services) -> None:
    """The server's background task: run what is due at the current time."""
    for job in run_due_matching_jobs(services, now=datetime.now(UTC)):
        logger.info(
            "scheduled identity resolution job %s of domain %s: %s",
            job.job_id,
            job.domain_name,
            job.status,
        )
