"""A flow runs once at a time: a run claims its flow, holds it while it makes progress, and is
ended when it stops holding it.

A flow runs once at a time, across every process (several `flows watch` workers, servers whose
admin pages have a run button): a run claims its flow when it starts (`claim`), in a transaction
that locks the flow's integration row (PostgreSQL; SQLite's one writer serialises the claims
already) and finds no other RUNNING run of the flow holding it (the partial index
ix_flow_run_running finds it among all the flow's runs). A run holds its flow for as long as it
makes progress: every batch and every item renews its claim (its `progress_at`), and where it
commits nothing for a while — listing its source, which can take minutes on a huge bucket,
passing over items gone since, and reading an item without applying any of it (a resumed
item's records applied before, passed over; a line too long to keep, flows.items) — it renews
it at most every `RENEW_EVERY` (`Renewal`: while the listing goes on in a thread of its own,
flows.listing `list_source`; after each chunk of an item read). One silent for
`STALE_AFTER` no longer holds its flow (its process may have ended, or be stalled): the next run
to claim the flow closes it FAILED, naming itself as the run that took the flow over, and if its
process is still alive it stops at its next transaction. A run stopped by Ctrl-C or SIGTERM (a
service manager stopping `flows watch`) does not wait for that: it ends FAILED at once
(INTERRUPTED; recorded within INTERRUPTED_WAIT, as best it can), its checkpoints as its
committed transactions left them, and the flow is free for the next run — wherever the stop
lands from its claim's transaction to its end's (`claimed`). An automatic trigger passes a flow
held by a run over; a run asked for (OnDemand: `openprofiles flows run`, the admin pages'
button) is refused with `RunInProgress`.

Every transaction of a run that applies a batch or checkpoints an item first checks that the
run still holds its flow (`hold`), taking the object type's lock as the pipeline does, then
the integration's row (shared, on PostgreSQL: DeleteIntegration waits for the transaction, and
it for DeleteIntegration). The run ends FAILED, without checkpointing the item it was reading,
when its flow was deleted (DeleteIntegration deletes the flow's runs and checkpoints with it:
a flow put again under the same name starts afresh) or renamed (PutIntegration of its Uri with
another FlowName: another flow, which reads its source afresh; the old name's runs and
checkpoints are deleted as by DeleteIntegration), when the flow was changed (PutIntegration
of the same flow, an update, with another definition or object type: the run claimed it as a
digest of both, `_flow_digest`, so the same definition put again changes nothing; the items
left are read by the next run, as the flow now says, and none is ingested as a type the flow
left, perhaps deleted since), when the flow was disabled (its object type deleted: the item
waits in the source until the type is defined again), or when it lost its claim (silent for
STALE_AFTER, another run took the flow over). A checkpoint is therefore only ever written by
the one run that holds the flow, as the flow is, after the records it read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import select, update

from openprofiles.context import Services, Tx
from openprofiles.errors import BadRequest, NotFound
from openprofiles.flows import listing
from openprofiles.flows.models import Flow, parse_flow_definition
from openprofiles.flows.runs import (
    FLOW_DELETED,
    STALE_AFTER,
    Held,
    duration,
    finish_run,
    insert_run,
    no_counts,
    sealed_error,
    stopped,
)
from openprofiles.flows.sources import FlowSource, SourceItem
from openprofiles.integrations.models import Integration
from openprofiles.integrations.service import find_flow_integration
from openprofiles.object_types.service import lock_object_type
from openprofiles.store.conflicts import retrying
from openprofiles.store.schema import flow_run, integration

logger = logging.getLogger(__name__)


FLOW_CHANGED = (
    "The flow was changed (PutIntegration) while the run was going: the run stopped, so that "
    "no item is read or checkpointed under the definition it no longer has. What it had "
    "applied stays applied; run it again."
)
# The integration is there, under another FlowName or none (integrations.service.put_integration
# deleted the flow's runs and checkpoints, as DeleteIntegration does).
FLOW_RENAMED = (
    "The flow was renamed or removed from its integration (PutIntegration with another "
    "FlowName, or none) while the run was going: the run stopped. What it had applied stays "
    "applied; the flow under its new name reads its source afresh."
)
TAKEN_OVER = (
    "The run stopped: it made no progress for {stale}, so it no longer held its flow, and "
    "another run took the flow over. What it had applied stays applied."
)
# The error of a run stopped by its process being asked to end (Ctrl-C, SIGTERM).
INTERRUPTED = (
    "The run was stopped: its process was asked to end (Ctrl-C or SIGTERM, as a service "
    "manager stops it). What it applied stays applied; the flow's next run reads the rest."
)
# How long a run stopped so waits for its end to be recorded: a database that does not answer
# must not turn the stop into a hang (the run is then closed after STALE_AFTER, as before).
INTERRUPTED_WAIT = timedelta(seconds=10)


class RunInProgress(BadRequest):
    """A run of the flow is in progress (it holds the flow): a run asked for is refused."""


class Terminated(Exception):
    """The run cannot go on: it stopped holding its flow (`hold`), the domain or the object type
    is gone, or a record's TerminateFlow ended it. The run ends FAILED with `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _flow_digest(definition: Mapping[str, Any] | None, type_name: str | None) -> str:
    """A digest of what the run reads the flow as: its definition and its object type. Of the
    content, not of its updated_at: the same definition put again changes nothing."""
    text = json.dumps([definition, type_name], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def load_flow(services: Services, domain_name: str, flow_name: str) -> tuple[Integration, Flow]:
    """The flow's integration, to claim, and its definition; NotFound when there is no such
    flow, BadRequest when it is disabled."""
    with services.read() as tx:
        tx.cipher(domain_name)
        found = find_flow_integration(tx, domain_name=domain_name, flow_name=flow_name)
    if found is None or found.flow_definition is None:
        raise NotFound(f"The flow {flow_name} does not exist in domain {domain_name}.")
    if found.disabled_reason is not None:
        # DeleteProfileObjectType disabled it: nothing is read, the items wait in the source.
        raise BadRequest(found.disabled_reason)
    return found, parse_flow_definition(found.flow_definition)


@dataclass
class Stop:
    """What a run stopped by Ctrl-C or SIGTERM is ended with (`claimed`): its claim (as the
    claim makes it, until the claim has returned it) and its counts as the run last knew them."""

    held: Held
    counts: dict[str, int] = field(default_factory=lambda: no_counts())


_R = TypeVar("_R")


def claimed(
    services: Services,
    found: Integration,
    trigger: str,
    then: Callable[[Held, Stop], _R],
    due: Callable[[Tx], bool] | None = None,
) -> _R | None:
    """Claim the flow (`claim`) and hand the claim to `then` (the run, or a failed start's
    record); None when `due` says the flow is not due.

    A stop (Ctrl-C, or SIGTERM: cli_support.Terminated, both KeyboardInterrupt) landing anywhere
    from the claim's transaction to the run's end recorded ends the run FAILED at once
    (INTERRUPTED, `_finish_stopped`): not only while it reads, but between its claim and its
    start, and during its final write (its end's transaction rolled back), where it was left
    RUNNING, holding the flow for STALE_AFTER. The run's id is chosen before the claim, so a
    stop landing as the claim commits, before the claim is returned, still ends the run it may
    have inserted; ending a run the claim did not insert (rolled back), or one whose end was
    recorded already (the stop landed just after), changes no run."""
    run_id = uuid.uuid4().hex
    stop = Stop(_held_as_claimed(found, trigger, run_id, datetime.now(UTC)))
    try:
        held = retrying(lambda: _claim_in(services, found, trigger, due, run_id))
        if held is None:
            return None
        stop.held = held
        return then(held, stop)
    except KeyboardInterrupt:
        # The stop goes on to the caller (the command ends as Ctrl-C ends it).
        _finish_stopped(services, stop.held, stop.counts)
        raise


def _claim_in(
    services: Services,
    found: Integration,
    trigger: str,
    due: Callable[[Tx], bool] | None,
    run_id: str,
) -> Held | None:
    with services.write() as tx:
        return claim(tx, found, trigger, due, run_id)


def claim(
    tx: Tx,
    found: Integration,
    trigger: str,
    due: Callable[[Tx], bool] | None = None,
    run_id: str | None = None,
) -> Held | None:
    """Claim the flow for a new run, `run_id` (else a new id), and insert the run, RUNNING (the
    module docstring); the claim, or None when `due` says the flow is not due. RunInProgress
    when a run of the flow holds it, NotFound when the flow is gone. A RUNNING run that stopped
    holding it (silent for STALE_AFTER: its process ended) is closed FAILED."""
    domain_name, flow_name = found.domain_name, found.flow_name
    assert flow_name is not None
    # Claims of the flow queue on its integration's row (PostgreSQL): each finds the run the
    # one before it inserted. DeleteIntegration deletes the row, so it and a claim queue too.
    row = tx.conn.execute(
        select(integration.c.uri, integration.c.created_at)
        .where(integration.c.domain_name == domain_name, integration.c.flow_name == flow_name)
        .with_for_update()
    ).first()
    if row is None or (row.uri, row.created_at) != (found.uri, found.created_at):
        raise NotFound(f"The flow {flow_name} does not exist in domain {domain_name}.")
    running = tx.conn.execute(
        select(flow_run.c.run_id, flow_run.c.started_at, flow_run.c.progress_at).where(
            flow_run.c.domain_name == domain_name,
            flow_run.c.flow_name == flow_name,
            flow_run.c.status == "RUNNING",
        )
    ).all()
    stale: list[tuple[str, datetime]] = []
    for other in running:
        last = other.progress_at or other.started_at
        if last > tx.now - STALE_AFTER:
            raise RunInProgress(
                f"A run of the flow {flow_name} is in progress in domain {domain_name} (run "
                f"{other.run_id}, started {other.started_at.isoformat(timespec='seconds')}, "
                f"last progress {last.isoformat(timespec='seconds')}): a flow runs once at a "
                "time. Run it again when that run has ended; a run whose process was stopped "
                f"is closed once it has made no progress for {duration(STALE_AFTER)}."
            )
        stale.append((other.run_id, last))
    if due is not None and not due(tx):
        for other_id, last in stale:
            _close_stopped(tx, domain_name, other_id, stopped(last))
        return None
    run_id = run_id or uuid.uuid4().hex
    for other_id, last in stale:
        _close_stopped(tx, domain_name, other_id, stopped(last, by=run_id))
    insert_run(tx, domain_name, flow_name, trigger, run_id)
    return _held_as_claimed(found, trigger, run_id, tx.now)


def _held_as_claimed(found: Integration, trigger: str, run_id: str, started_at: datetime) -> Held:
    """The claim of `found` for the run `run_id` (`claim`)."""
    assert found.flow_name is not None
    return Held(
        domain_name=found.domain_name,
        flow_name=found.flow_name,
        run_id=run_id,
        trigger=trigger,
        started_at=started_at,
        uri=found.uri,
        created_at=found.created_at,
        type_name=found.object_type_name or "",
        digest=_flow_digest(found.flow_definition, found.object_type_name),
    )


def _close_stopped(tx: Tx, domain_name: str, run_id: str, error: str) -> None:
    """End FAILED, with `error` (`stopped`), a RUNNING run that stopped holding its flow. Its
    reason is sealed when the domain's key can be used (else it shows UNSEALED_ERROR): the
    claim goes on."""
    sealed = sealed_error(tx, domain_name, run_id, error)
    # Only while it is still silent: a run that made progress meanwhile renewed its claim
    # (on PostgreSQL this waits for that transaction, then looks again).
    tx.conn.execute(
        update(flow_run)
        .where(
            flow_run.c.domain_name == domain_name,
            flow_run.c.run_id == run_id,
            flow_run.c.status == "RUNNING",
            flow_run.c.progress_at.is_(None) | (flow_run.c.progress_at <= tx.now - STALE_AFTER),
        )
        .values(status="FAILED", error_sealed=sealed, finished_at=tx.now)
    )


def hold(tx: Tx, held: Held) -> None:
    """Go on only if the run still holds its flow, renewing its claim; Terminated with the
    reason otherwise: the flow was deleted, disabled, or the run lost its claim (the module
    docstring). First in every transaction of the run that applies or checkpoints."""
    domain_name = held.domain_name
    if held.type_name:
        # Before the integration is read, as the pipeline takes it before reading the type: a
        # DeleteProfileObjectType waited for has committed, and disabled the integration.
        lock_object_type(tx, domain_name=domain_name, name=held.type_name, shared=True)
    # Shared: DeleteIntegration, which deletes the row, waits for this transaction to end.
    tx.conn.execute(
        select(integration.c.uri)
        .where(integration.c.domain_name == domain_name, integration.c.flow_name == held.flow_name)
        .with_for_update(read=True)
    )
    found = find_flow_integration(tx, domain_name=domain_name, flow_name=held.flow_name)
    if found is None or (found.uri, found.created_at) != (held.uri, held.created_at):
        renamed = (
            found is None
            and tx.conn.execute(
                select(integration.c.uri).where(
                    integration.c.domain_name == domain_name,
                    integration.c.uri == held.uri,
                    integration.c.created_at == held.created_at,
                )
            ).first()
        )
        raise Terminated(FLOW_RENAMED if renamed else FLOW_DELETED)
    if found.disabled_reason is not None:
        raise Terminated(found.disabled_reason)
    if _flow_digest(found.flow_definition, found.object_type_name) != held.digest:
        raise Terminated(FLOW_CHANGED)
    renewed = tx.conn.execute(
        update(flow_run)
        .where(
            flow_run.c.domain_name == domain_name,
            flow_run.c.run_id == held.run_id,
            flow_run.c.status == "RUNNING",
        )
        .values(progress_at=tx.now)
    )
    if renewed.rowcount == 0:
        raise Terminated(TAKEN_OVER.format(stale=duration(STALE_AFTER)))


class Renewal:
    """Renews a run's claim (`hold`, in a short transaction of its own) at most every
    RENEW_EVERY, where the run commits nothing for a while: while it lists its source
    (`listing`: one listing call can take long), before it opens an item and after each chunk
    of one it reads (called). What `hold` raises (the run lost its flow) is raised in the
    run."""

    def __init__(self, services: Services, held: Held, clock: Callable[[], float]) -> None:
        self.services = services
        self.held = held
        self.clock = clock
        self.at = clock()

    def __call__(self) -> None:
        if self.clock() - self.at >= listing.RENEW_EVERY.total_seconds():
            self.renew()

    def renew(self) -> None:
        def attempt() -> None:
            with self.services.write() as tx:
                hold(tx, self.held)

        retrying(attempt)
        self.at = self.clock()

    def listing(self, source: FlowSource, key: Hashable) -> list[SourceItem]:
        """The source's items, the claim renewed while they are listed; SourceError when the
        listing does not end within LISTING_LIMIT, or an earlier one of `key` still goes on
        (`list_source`)."""
        return listing.list_source(source, clock=self.clock, waiting=self.renew, key=key)


def _finish_stopped(services: Services, held: Held, counts: dict[str, int]) -> None:
    """End the run FAILED (INTERRUPTED), as best it can within INTERRUPTED_WAIT: in a thread
    of its own, left to itself past that (the process is ending), its failure logged."""

    def finish() -> None:
        try:
            retrying(lambda: finish_run(services, held, counts, INTERRUPTED))
        except Exception as exc:
            logger.error(
                "A run of flow %s of domain %s was stopped and could not be recorded as "
                "ended (%s); it is closed after %s.",
                held.flow_name,
                held.domain_name,
                type(exc).__name__,
                duration(STALE_AFTER),
                exc_info=exc,
            )

    ending = threading.Thread(target=finish, name="flow-run-stopped", daemon=True)
    ending.start()
    ending.join(INTERRUPTED_WAIT.total_seconds())
    if ending.is_alive():
        logger.warning(
            "A run of flow %s of domain %s was stopped, and its end was not recorded within "
            "%s: it is closed after %s.",
            held.flow_name,
            held.domain_name,
            duration(INTERRUPTED_WAIT),
            duration(STALE_AFTER),
        )
