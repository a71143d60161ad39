"""Sending dead letters to SQS again: records whose send after commit failed (the queue refused
it, the endpoint did not answer) or never happened (the process stopped between the commit and
the send) stay marked in their sink error; `resend_pending` sends them until they get through.

It runs in the server every `Settings.dlq_resend_interval_seconds` (`resend_task`) and on demand
(`openprofiles dlq resend`). Rules:

* Only the mark changes: the local record is never removed or written twice, whatever the
  outcome. Sends go through dlq.sinks (`deliver`, `settle`), with the message of spec §6.1.
* A record `SQS_PENDING` for less than `SEND_GRACE_SECONDS` is left alone: the send after its
  commit is about to claim it.
* A record is claimed before it is sent (its mark becomes `SQS_RESENDING` with the run's start,
  compared and set in one UPDATE), so several server processes resending at once — on
  PostgreSQL or SQLite — never send one record twice; the send after a commit claims its
  records the same way (`SQS_SENDING`), so a slow one and a resend never send a record both. A
  claim older than `CLAIM_EXPIRY_SECONDS` belongs to a sender that stopped, and is taken over:
  no sender starts a request after half that time (the send after a commit, after
  dlq.sinks.SEND_AFTER_COMMIT_SECONDS), and what it did not try is pending again, so a claim
  never expires under a sender still at work.
* A domain without a DeadLetterQueueUrl (never had one, or had it removed) is not looked at: its
  undelivered records keep their mark. That mark stays true — they never reached a queue — and
  if the administrator sets a queue again, they go to it then, which is what "reach SQS
  eventually" means to whoever set it; one who does not want them purges them.
* A record dead-lettered while its domain had no queue (`NO_QUEUE`) was never bound for one and
  is never sent, whatever queue the domain gets later. Nor is one whose delivery was not
  recorded (`NOT_RECORDED`, stored by a version that left it empty both when the record was sent
  and when there was no queue): it may be in a queue already, and it never was resent before.
* A run tries the SQS endpoint even when the send after a commit leaves it alone for not
  answering lately (dlq.sinks): it is what finds the endpoint back. One that does not answer is
  not tried again in the run.
* A domain whose key cannot be used now (disabled, KMS out of reach) cannot open its records:
  a run over every domain logs it with how many of its records wait, and goes on with the next
  domain (`ResendOutcome.skipped`); a run of that domain alone raises its error.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from openprofiles.background import PeriodicTask
from openprofiles.context import Services
from openprofiles.dlq import service
from openprofiles.dlq.sinks import Deadline, deliver, settle, sqs_endpoint
from openprofiles.domains.service import get_domain, list_domains
from openprofiles.errors import BadRequest, ServiceError

# How long a record may stay `SQS_PENDING` before a resend takes it: the send after its commit
# claims it within moments, unless its process stopped first.
SEND_GRACE_SECONDS = 60
# How long a claim holds a record: the send after a commit's, or a resend run's.
CLAIM_EXPIRY_SECONDS = 600
# How long a run may go on starting SQS requests: what is not tried then is pending again (for
# the next run), so its claims, dated from its start, never expire while it sends. (The send
# after a commit stops far sooner: dlq.sinks.SEND_AFTER_COMMIT_SECONDS.)
RUN_SEND_SECONDS = CLAIM_EXPIRY_SECONDS // 2
# Records looked at, claimed and sent at a time.
CHUNK = 100
# Records sent per call, by default: a large backlog goes over a few runs.
DEFAULT_LIMIT = 1000
DOMAIN_PAGE = 100

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResendOutcome:
    # Message ids delivered to SQS, and those tried and still not delivered (the record says
    # why), across the domains looked at.
    sent: list[str]
    failed: list[str]
    # Records not delivered that were left alone: just committed (`SEND_GRACE_SECONDS`) or held
    # by another resend run.
    waiting: int
    # Whether `limit` (or `RUN_SEND_SECONDS`) stopped the run with records due still to send.
    more: bool
    # Domains not resent, their key unusable now: domain name → the error's code.
    skipped: dict[str, str] = field(default_factory=dict)


def resend_pending(
    services: Services,
    *,
    domain_name: str | None = None,
    limit: int = DEFAULT_LIMIT,
    now: datetime | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> ResendOutcome:
    """Send the records of the domain (every domain with a queue when None) whose SQS delivery is
    pending or failed, oldest first, up to `limit`; record each outcome. `now` is the clock
    reading the grace period and claims are measured from; `clock` the one `RUN_SEND_SECONDS`
    is."""
    now = now or datetime.now(UTC)
    run = _Run(
        services,
        deadline=Deadline.after(RUN_SEND_SECONDS, clock),
        pending_before=now - timedelta(seconds=SEND_GRACE_SECONDS),
        resending_before=now - timedelta(seconds=CLAIM_EXPIRY_SECONDS),
        mark=service.resend_mark(now),
        limit=limit,
    )
    for name, queue_url in _queues(services, domain_name):
        try:
            run.resend(name, queue_url)
        except ServiceError as exc:
            if domain_name is not None:
                raise
            # Its key cannot be used now: the domains after it are not held up. Its name and
            # a count, never what the error quotes.
            with services.read() as tx:
                waiting = service.count_undelivered(tx, domain_name=name)
            logger.warning(
                "Domain %s: %d dead letters not resent to SQS (%s); the next run tries again.",
                name,
                waiting,
                exc.code,
            )
            run.skipped[name] = exc.code
    return ResendOutcome(
        sent=run.sent, failed=run.failed, waiting=run.waiting, more=run.more, skipped=run.skipped
    )


@dataclass
class _Run:
    """One `resend_pending` call: its bounds, and what it did so far."""

    services: Services
    # After which the run starts no SQS request.
    deadline: Deadline
    pending_before: datetime
    resending_before: datetime
    mark: str
    limit: int
    sent: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    waiting: int = 0
    more: bool = False
    skipped: dict[str, str] = field(default_factory=dict)
    # An endpoint that did not answer is not tried again in this run (dlq.sinks.deliver).
    unreachable: dict[str, str] = field(default_factory=dict)

    def resend(self, name: str, queue_url: str) -> None:
        """Send the domain's due records to its queue, CHUNK at a time."""
        services = self.services
        endpoint = sqs_endpoint(services.settings, queue_url)
        after: str | None = None
        while not self.more and endpoint not in self.unreachable:
            if self.deadline.passed():
                # Out of time: what is due waits for the next run.
                self.more = True
                break
            with services.read() as tx:
                scan = service.due_sends(
                    tx,
                    domain_name=name,
                    pending_before=self.pending_before,
                    resending_before=self.resending_before,
                    after=after,
                    limit=CHUNK,
                )
            self.waiting += scan.waiting
            room = self.limit - len(self.sent) - len(self.failed)
            due = dict(itertools.islice(scan.due.items(), room))
            self.more = len(due) < len(scan.due)
            if due:
                with services.write() as tx:
                    letters = service.claim_sends(tx, domain_name=name, marks=due, claim=self.mark)
                delivery = deliver(
                    services.settings,
                    [(x, queue_url) for x in letters],
                    self.unreachable,
                    self.deadline,
                )
                unsettled = settle(services, delivery, marked=self.mark)
                self.sent += delivery.sent.get(name, [])
                self.failed += [m for ids in delivery.failed.get(name, {}).values() for m in ids]
                if name in unsettled:
                    # Its key became unusable: those sent are marked so, the others pending.
                    raise unsettled[name]
                if delivery.left:
                    # Out of time: those not tried are pending again, for the next run.
                    self.more = True
            if scan.next_after is None:
                break
            after = scan.next_after


def _queues(services: Services, domain_name: str | None) -> list[tuple[str, str]]:
    """(domain name, queue URL) of the domain, or of every domain that has a queue."""
    with services.read() as tx:
        if domain_name is not None:
            url = get_domain(tx, domain_name=domain_name).dead_letter_queue_url
            if not url:
                raise BadRequest(
                    f"Domain {domain_name} has no DeadLetterQueueUrl: its dead letters are kept "
                    "in the local store only."
                )
            return [(domain_name, url)]
        queues: list[tuple[str, str]] = []
        after: str | None = None
        while True:
            page, has_more = list_domains(tx, after=after, limit=DOMAIN_PAGE)
            queues += [(d.name, d.dead_letter_queue_url) for d in page if d.dead_letter_queue_url]
            if not has_more:
                return queues
            after = page[-1].name


def resend_once(services: Services, *, now: datetime | None = None) -> ResendOutcome:
    """One run of the server's task: every domain, counts logged (no personal data)."""
    outcome = resend_pending(services, now=now)
    if outcome.sent or outcome.failed:
        logger.info(
            "resent %d dead letters to SQS; %d still not delivered",
            len(outcome.sent),
            len(outcome.failed),
        )
    return outcome


def resend_task(
    services: Services, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> PeriodicTask:
    """The server's background task sending undelivered dead letters every
    `Settings.dlq_resend_interval_seconds` (0 turns it off)."""
    return PeriodicTask(
        "resend dead letters to SQS",
        lambda: resend_once(services, now=clock()),
        services.settings.dlq_resend_interval_seconds,
    )
