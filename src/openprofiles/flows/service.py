"""Running flows: read a flow's source, apply its Tasks, ingest each record through the one
pipeline as the integration's object type, dead-letter what fails, and record the run. The entry
points: `run_flow` runs a flow once, `run_due_flows` starts the automatic triggers' runs.

Triggers (spec: PutIntegration FlowDefinition.TriggerConfig):

* `OnDemand`: runs only when asked (`run_flow`, `openprofiles flows run`); reads every item.
* `Scheduled`: `run_due_flows` starts a run when the `rate(...)` interval has passed since the
  previous scheduled run (inside ScheduleStartTime/EndTime); DataPullMode Incremental (default)
  reads new or changed items only, Complete reads everything.
* `Event`: `run_due_flows` starts a run whenever the source lists an item that is new or changed
  since the last checkpoint (new file in the folder / new object in the bucket).

`openprofiles flows watch` calls `run_due_flows` in a loop. `run_due_flows` takes each domain's
flows, and each flow, on their own: every tenant's flows share the loop, and one domain whose key
cannot be used (disabled, KMS throttling) must not stop the others'. A domain whose flows cannot
be listed (their definitions are sealed with its key) is logged and passed over: nothing tells
which of its flows are due. A flow that cannot start (its domain's key, its source's settings)
is logged with its error code and recorded as a FAILED run (flows.triggers). What the process
keeps of a flow between checks (listings, item digests, checkpoints) is dropped by the first pass
that no longer finds the flow (`_drop_gone_flows`).

Each part is told where it is done:

* flows.claims: a flow runs once at a time (a run claims its flow, holds it, is stopped);
* flows.runner: a run of a claimed flow, item by item, and what it does with failed items;
* flows.batches: an item's records applied in batches, or dead-lettered;
* flows.crashes: an item that stops runs with an internal error, set aside;
* flows.listing: listing a source in a thread of its own, and which items have settled;
* flows.triggers: when a Scheduled or an Event flow is due;
* flows.runs: the runs as stored, their history and their sealed errors;
* flows.checkpoint_store: the item checkpoints as stored (flows.checkpoints: what they say).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Hashable
from datetime import datetime

from sqlalchemy import select

from openprofiles.context import Services
from openprofiles.domains.service import register_domain_table
from openprofiles.flows import check_cache
from openprofiles.flows.claims import claimed, load_flow
from openprofiles.flows.item_keys import drop as drop_item_digests
from openprofiles.flows.listing import drop as drop_listings
from openprofiles.flows.listing import listing_key
from openprofiles.flows.models import FlowRun, parse_flow_definition
from openprofiles.flows.runner import Progress, run_claimed
from openprofiles.flows.sources import FlowSource, source_for
from openprofiles.flows.triggers import drop_logged, log_failure, run_if_due
from openprofiles.integrations.models import Integration
from openprofiles.integrations.service import list_flow_integrations
from openprofiles.store.schema import flow_item, flow_run, integration

# DeleteDomain removes the flows' runs (flows.runs) and checkpoints (flows.checkpoint_store).
register_domain_table(flow_run)
register_domain_table(flow_item)


def run_flow(
    services: Services,
    *,
    domain_name: str,
    flow_name: str,
    trigger: str = "OnDemand",
    complete: bool | None = None,
    on_progress: Progress | None = None,
    source: FlowSource | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> FlowRun:
    """Run the flow once and return the finished run (COMPLETED or FAILED); RunInProgress when
    a run of the flow is in progress (flows.claims).

    `complete` reads every item (default: OnDemand runs and DataPullMode Complete do); otherwise
    only items new or changed since the checkpoint are read, an item begun by a run that stopped
    resumed after the records it applied. Only an OnDemand run (one asked for: `openprofiles flows
    run`, the admin pages' button) reads again an item that failed and has not changed since — an
    incremental one too, applying what of it was not applied, so that the run its dead letter asks
    for reads it once its cause is fixed — and only an OnDemand run reads an item that has not
    settled. `clock` (seconds) times the listing of the source (LISTING_LIMIT) and the renewals of
    the claim.
    """
    found, flow = load_flow(services, domain_name, flow_name)
    read = source or source_for(services.settings, flow)
    run = claimed(
        services,
        found,
        trigger,
        lambda held, stop: run_claimed(
            services,
            held,
            flow,
            read,
            stop=stop,
            complete=complete,
            on_progress=on_progress,
            clock=clock,
        ),
    )
    assert run is not None
    return run


def run_due_flows(
    services: Services, *, now: datetime, clock: Callable[[], float] = time.monotonic
) -> list[FlowRun]:
    """Start every Scheduled flow whose interval has passed and every Event flow whose source
    has new items; returns the runs made, the failed starts recorded among them. A domain or a
    flow that fails is logged and passed over; the other flows run (the module docstring).
    `clock` (seconds) times the listings of sources (LISTING_LIMIT), as `run_flow`'s does."""
    runs = []
    # What the process keeps of the flows listed, and the domains whose flows are not known.
    live: set[Hashable] = set()
    unknown: set[str] = set()
    for domain_name in _flow_domains(services):
        try:
            with services.read() as tx:
                flows = list_flow_integrations(tx, domain_name=domain_name)
        except Exception as exc:
            log_failure("The flows of domain %s were not checked", (domain_name,), exc)
            unknown.add(domain_name)
            continue
        live.update(key for found in flows for key in _kept_for(services, found))
        for found in flows:
            run = run_if_due(services, found, now, clock)
            if run is not None:
                runs.append(run)
    _drop_gone_flows(services, live, unknown)
    return runs


def _kept_for(services: Services, found: Integration) -> list[Hashable]:
    """What the process may keep of the flow between passes: its item digests and checkpoints
    (by flow), and its listings (by `listing_key`, when its definition can be read)."""
    assert found.flow_name is not None
    keys: list[Hashable] = [(id(services), found.domain_name, found.flow_name)]
    # One that cannot be read is logged by its check (`run_if_due`), not here. Read as that
    # check reads it (stored): a definition only PutIntegration would now refuse has listings
    # and warnings of its own to keep, which would else be dropped every pass.
    with contextlib.suppress(Exception):
        flow = parse_flow_definition(found.flow_definition or {}, stored=True)
        keys.append(listing_key(services, found.domain_name, flow))
    return keys


def _drop_gone_flows(services: Services, live: set[Hashable], unknown: set[str]) -> None:
    """Drop what the process keeps between passes (listings an Event check left to their thread,
    flows.listing `_LISTED`; its warnings of stuck listings; item digests; checkpoints,
    flows.check_cache; the start failures it logged, flows.triggers) for the flows of this
    Services that the pass did not find (deleted, renamed, or reading another source now), but
    those of a domain whose flows could not be listed (`unknown`: nothing says they are gone).
    No check of a flow deleted would take them: they were kept for ever."""
    mine = id(services)

    def gone(key: Hashable) -> bool:
        return (
            isinstance(key, tuple) and key[0] == mine and key[1] not in unknown and key not in live
        )

    check_cache.drop(gone)
    drop_item_digests(gone)
    drop_listings(gone)
    drop_logged(gone)


def _flow_domains(services: Services) -> list[str]:
    """The domains that have flows, read without their keys (each domain's flows are then
    listed on their own, with its key)."""
    with services.read() as tx:
        return list(
            tx.conn.execute(
                select(integration.c.domain_name)
                .where(integration.c.flow_name.is_not(None))
                .distinct()
                .order_by(integration.c.domain_name)
            ).scalars()
        )
