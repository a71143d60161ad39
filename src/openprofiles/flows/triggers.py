"""The automatic triggers: whether a Scheduled or an Event flow is due, in a pass of the watcher
(flows.service `run_due_flows`), and its run or its failed start.

* `Scheduled`: a run starts when the `rate(...)` interval has passed since the previous
  scheduled run (inside ScheduleStartTime/EndTime). A Scheduled flow is found due
  (`_schedule_due`) in a read first — most watcher passes find it not due, and make no source
  and take no lock — and again under the claim (flows.claims), so two watchers do not both start
  its run.
* `Event`: a run starts whenever the source lists an item that is new or changed since the last
  checkpoint (`pending_items`), waiting for the listing EVENT_CHECK_WAIT at most (flows.listing);
  an Event run lists its source again once it holds the flow, and is dropped, unrecorded, when
  another run read the new items meanwhile.

An automatic trigger passes a flow held by a run over. A flow that cannot start (its domain's
key, its source's settings) is logged with its error code and recorded as a FAILED run, so its
runs show it: a Scheduled flow once per interval, as any scheduled run; an Event flow, checked
every pass, once, and not again while that failed run is its newest. So is an Event flow whose
source cannot be listed (a folder that does not exist, a bucket missing, credentials refused:
a Scheduled flow's run fails with it), logged when its FAILED run is recorded; a listing that
hangs records no run (its check warns, flows.listing `warn_stuck`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from datetime import datetime, timedelta

from sqlalchemy import select

from openprofiles.context import Services, Tx
from openprofiles.crypto.errors import KeyUnusable
from openprofiles.errors import NotFound, ServiceError
from openprofiles.flows.checkpoint_store import Checkpoints
from openprofiles.flows.checkpoints import is_pending
from openprofiles.flows.claims import RunInProgress, claimed, load_flow
from openprofiles.flows.listing import (
    ListingBusy,
    ListingPending,
    ListingStuck,
    list_source,
    listing_key,
    settled,
    warn_stuck,
)
from openprofiles.flows.models import Flow, FlowRun, parse_flow_definition
from openprofiles.flows.runner import run_claimed
from openprofiles.flows.runs import finish_run, no_counts
from openprofiles.flows.sources import FlowSource, SourceError, SourceItem, source_for
from openprofiles.integrations.models import Integration
from openprofiles.store.schema import flow_run

logger = logging.getLogger(__name__)


# The longest an Event check waits for its source's listing (`list_source`'s patience): the
# watcher checks every flow in turn, so a source that hangs must not hold the others up for
# LISTING_LIMIT. A listing not ended by then goes on in its thread, and what it lists is what the
# flow's next check takes (a large bucket that lists in minutes is still checked); a folder or
# a bucket that answers lists well within it.
EVENT_CHECK_WAIT = timedelta(seconds=5)
# Why each flow's start failed when it was last logged (the error's message, which the log does
# not show: it can quote a value), by (id of its Services, domain, flow), as flows.service keeps
# what it keeps of a flow (dropped with the flow: `drop_logged`).
_START_FAILURES_LOGGED: dict[Hashable, str] = {}


def pending_items(
    services: Services,
    domain_name: str,
    flow: Flow,
    source: FlowSource,
    *,
    settled_only: bool = False,
    patience: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> list[SourceItem]:
    """Items new or changed since the flow's checkpoint; `settled_only`: those of them that
    have settled (an automatic run's). `patience` and `clock`: `list_source`'s."""
    done = Checkpoints(services, domain_name, flow.name, reuse=True)
    key = listing_key(services, domain_name, flow)
    listed = list_source(source, key=key, patience=patience, clock=clock)
    items = settled(services, listed) if settled_only else listed
    pending = [i for i in items if is_pending(done(i), i)]
    done.keep()
    return pending


def run_if_due(
    services: Services, found: Integration, now: datetime, clock: Callable[[], float]
) -> FlowRun | None:
    """The flow's run when it is due (or its failed start, `_failed_start`), else None: also
    when a run of the flow holds it (the module docstring)."""
    assert found.flow_definition is not None and found.flow_name is not None
    trigger: str | None = None
    due: Callable[[Tx], bool] | None = None
    try:
        # Stored: a definition put before a check of it was added (an interval beyond the
        # limit, cut to it; several ConnectorOperator members, none the source's) is read, not
        # refused on every pass (models.parse_flow_definition); the run's own reading
        # (claims.load_flow) refuses it, so the flow, once due, fails saying why.
        flow = parse_flow_definition(found.flow_definition, stored=True)
        if flow.trigger_type == "Scheduled":
            if not _in_schedule(flow, now):
                return None
            trigger = "Scheduled"
            listed = flow
            due = lambda tx: _schedule_due(tx, found.domain_name, listed, now)  # noqa: E731
            # Most passes find it not due: asked in a read first, with no source made and no
            # lock taken; the claim asks again under its lock.
            with services.read() as tx:
                if not due(tx):
                    return None
            loaded, flow = load_flow(services, found.domain_name, flow.name)
            source = source_for(services.settings, flow)
            return _started(
                services,
                found,
                claimed(
                    services,
                    loaded,
                    "Scheduled",
                    lambda held, stop: run_claimed(
                        services, held, flow, source, stop=stop, clock=clock
                    ),
                    due,
                ),
            )
        if flow.trigger_type != "Event":
            return None
        trigger = "Event"
        source = source_for(services.settings, flow)
        try:
            # Not waited for long (EVENT_CHECK_WAIT): the other flows wait for this check.
            pending = pending_items(
                services,
                found.domain_name,
                flow,
                source,
                settled_only=True,
                patience=EVENT_CHECK_WAIT.total_seconds(),
                clock=clock,
            )
        except ListingStuck:
            # No run to fail, so say it in the log: else a hung source would stop the flow
            # without a word.
            warn_stuck(services, found.domain_name, flow)
            return None
        except ListingPending:
            # Its listing goes on in its thread: the flow's next check takes what it lists.
            return None
        except ListingBusy:
            # Listed by another thread of this process (a run, which holds the flow, or a
            # listing this check left, within its time): nothing is known yet.
            return None
        except SourceError as exc:
            return _source_failed(services, found, exc)
        if not pending:
            return None
        loaded, flow = load_flow(services, found.domain_name, flow.name)
        # Listed again under the claim: a run that held the flow meanwhile may have read them.
        return _started(
            services,
            found,
            claimed(
                services,
                loaded,
                "Event",
                lambda held, stop: run_claimed(
                    services, held, flow, source, stop=stop, drop_if_empty=True, clock=clock
                ),
            ),
        )
    except RunInProgress:
        return None
    except Exception as exc:
        where = (found.flow_name, found.domain_name)
        if trigger is None or not isinstance(exc, ServiceError):
            # Not known to be due, or no reason to show (a database error, a bug): a run it
            # stopped ended FAILED already (run_flow).
            log_failure("Flow %s of domain %s could not run", where, exc)
            return None
        failed = _failed_start(services, found, trigger, exc, due)
        # Logged when its FAILED run is recorded, and once for each other reason the flow
        # cannot start while that run is the newest: an Event flow's is recorded once, not
        # every pass (`_failed_start`), and a new reason (its key disabled since) is recorded
        # by no run.
        key = _logged_key(services, found)
        if failed is not None or _START_FAILURES_LOGGED.get(key) != exc.message:
            log_failure("Flow %s of domain %s could not run", where, exc)
        _START_FAILURES_LOGGED[key] = exc.message
        return failed


def _logged_key(services: Services, found: Integration) -> Hashable:
    return (id(services), found.domain_name, found.flow_name)


def _started(services: Services, found: Integration, run: FlowRun | None) -> FlowRun | None:
    """`run`, the flow's run the watcher started (None: none was); once one was, the flow's
    start failure logged before is forgotten (`_START_FAILURES_LOGGED`), as a run came after
    it: the same failure again is news."""
    if run is not None:
        _START_FAILURES_LOGGED.pop(_logged_key(services, found), None)
    return run


def drop_logged(gone: Callable[[Hashable], bool]) -> None:
    """Forget the logged start failures of the flows `gone` says are gone."""
    for key in [key for key in _START_FAILURES_LOGGED if gone(key)]:
        del _START_FAILURES_LOGGED[key]


def log_failure(what: str, args: tuple[str, ...], exc: Exception) -> None:
    """Log a domain or flow that failed in `run_due_flows`: a ServiceError by its code (its
    message can quote a value: a source's object key, a task's field), anything else by its
    type with its traceback (logging_setup withholds its message)."""
    if isinstance(exc, ServiceError):
        logger.warning(what + " (%s); the other flows go on.", *args, exc.code)
    else:
        logger.error(what + ": %s; the other flows go on.", *args, type(exc).__name__, exc_info=exc)


def _source_failed(services: Services, found: Integration, exc: SourceError) -> FlowRun | None:
    """The failed start of an Event flow whose source cannot be listed (a folder that does not
    exist, a bucket missing, credentials refused): recorded as a FAILED run, as a Scheduled
    flow's run records it, once (`_failed_start`: not again while that run is the newest, so
    not every watcher pass), and logged when recorded, by the flow and its domain only (the
    error names a folder or an object key, which can be personal data; flows.sources). Its
    next check that lists new items runs it as before."""
    failed = _failed_start(services, found, "Event", exc, None)
    if failed is not None:
        # The newest run says why now: a start failure logged before is news again.
        _START_FAILURES_LOGGED.pop(_logged_key(services, found), None)
        logger.warning(
            "Flow %s of domain %s could not list its source: recorded as a FAILED run, whose "
            "error says why; its source is checked again every pass.",
            found.flow_name,
            found.domain_name,
        )
    return failed


def _failed_start(
    services: Services,
    found: Integration,
    trigger: str,
    exc: ServiceError | SourceError,
    due: Callable[[Tx], bool] | None,
) -> FlowRun | None:
    """Record a run of the flow that could not start, FAILED with `exc`'s message (the module
    docstring), under a claim of the flow, when `due` (a Scheduled flow's) says it is due; None
    when none is recorded: not due, the flow was deleted meanwhile, a run of it holds it, or it
    is an Event flow whose newest run failed already."""
    domain_name, flow_name = found.domain_name, found.flow_name
    assert flow_name is not None

    def not_failed_before(tx: Tx) -> bool:
        newest = tx.conn.execute(
            select(flow_run.c.status)
            .where(flow_run.c.domain_name == domain_name, flow_run.c.flow_name == flow_name)
            .order_by(flow_run.c.started_at.desc(), flow_run.c.run_id.desc())
            .limit(1)
        ).first()
        return newest is None or newest.status != "FAILED"

    # domains.service.domain_cipher raises the key's failure with the KeyUnusable as its cause.
    from_key = isinstance(exc.__cause__, KeyUnusable)
    if trigger == "Event":
        # Asked in a read first, as a Scheduled flow's `due` is (run_if_due): an Event flow
        # whose source stays unlisted fails every pass, and the claim takes the writer's lock.
        with services.read() as tx:
            if not not_failed_before(tx):
                return None
    try:
        return claimed(
            services,
            found,
            trigger,
            lambda held, _: finish_run(services, held, no_counts(), exc.message, seal=not from_key),
            not_failed_before if trigger == "Event" else due,
        )
    except (NotFound, RunInProgress):
        return None


def _in_schedule(flow: Flow, now: datetime) -> bool:
    """Whether `now` is inside the flow's ScheduleStartTime/EndTime."""
    if flow.schedule_start is not None and now < flow.schedule_start:
        return False
    return flow.schedule_end is None or now <= flow.schedule_end


def _schedule_due(tx: Tx, domain_name: str, flow: Flow, now: datetime) -> bool:
    """Whether the Scheduled flow's interval has passed since its previous scheduled run:
    asked under the claim (`claim`), so that of two watchers only one starts the run."""
    if not _in_schedule(flow, now):
        return False
    last = tx.conn.execute(
        select(flow_run.c.started_at)
        .where(
            flow_run.c.domain_name == domain_name,
            flow_run.c.flow_name == flow.name,
            flow_run.c.trigger == "Scheduled",
        )
        .order_by(flow_run.c.started_at.desc())
        .limit(1)
    ).first()
    # At most models.MAX_INTERVAL_SECONDS, a stored definition's too (`run_if_due` reads it
    # `stored`): the sum stays a date.
    assert flow.interval_seconds is not None
    return last is None or now >= last.started_at + timedelta(seconds=flow.interval_seconds)
