"""`openprofiles flows`: run a flow now, run due flows in a loop, and show a flow's runs."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path

import click

from openprofiles.cli_support import (
    MAX_EVERY_SECONDS,
    FiniteFloatRange,
    open_services,
    settings_from_options,
    storage_options,
)

logger = logging.getLogger(__name__)


@click.group()
def flows() -> None:
    """Flows pulling external applications' records (PutIntegration FlowDefinition)."""


@flows.command("run")
@storage_options
@click.argument("name")
@click.option("--domain", "domain_name", required=True)
@click.option(
    "--incremental",
    is_flag=True,
    help="Read only new or changed items, and what items that failed (dead-lettered whole, or "
    "with records set aside) left unapplied, which a run asked for reads again.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
def flows_run(
    data_dir: Path | None,
    database_url: str | None,
    name: str,
    domain_name: str,
    incremental: bool,
    as_json: bool,
) -> None:
    """Run flow NAME of DOMAIN once, now.

    An OnDemand flow (or a Scheduled one with DataPullMode Complete) reads every item; another
    the items new or changed since its last run, and of an item that failed, unchanged, the
    records not applied (those set aside, those after where its reading stopped): this is the
    run its dead letter asks for once the cause is fixed. A run that fails on it again leaves
    it failed.
    """
    from openprofiles.errors import ServiceError
    from openprofiles.flows.models import FlowRun
    from openprofiles.flows.service import run_flow

    services = open_services(settings_from_options(data_dir, database_url))

    def progress(run: FlowRun) -> None:
        if not as_json:
            click.echo(
                f"  {run.items_read} items, {run.records_read} records: "
                f"{run.records_ingested} ingested, {run.records_filtered} filtered, "
                f"{run.records_dead_lettered} dead-lettered",
                err=True,
            )

    try:
        run = run_flow(
            services,
            domain_name=domain_name,
            flow_name=name,
            complete=False if incremental else None,
            on_progress=progress,
        )
    except ServiceError as exc:
        raise click.ClickException(exc.message) from exc
    finally:
        services.database.dispose()
    summary = {
        "RunId": run.run_id,
        "Status": run.status,
        "ItemsRead": run.items_read,
        "RecordsRead": run.records_read,
        "RecordsIngested": run.records_ingested,
        "RecordsFiltered": run.records_filtered,
        "RecordsDeadLettered": run.records_dead_lettered,
        "Error": run.error,
    }
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(
            f"Flow {name}: {run.status}. {run.records_ingested} records ingested, "
            f"{run.records_filtered} filtered, {run.records_dead_lettered} dead-lettered "
            f"from {run.items_read} items."
        )
        if run.error:
            click.echo(f"Error: {run.error}")
    if run.status == "FAILED":
        raise SystemExit(1)


@flows.command("watch")
@storage_options
@click.option(
    "--every",
    type=FiniteFloatRange(0.1, MAX_EVERY_SECONDS),
    default=10.0,
    show_default=True,
    help="Seconds between checks for due Scheduled runs and new Event items.",
)
def flows_watch(data_dir: Path | None, database_url: str | None, every: float) -> None:
    """Run Scheduled and Event flows of every domain as they become due (until Ctrl-C)."""
    from openprofiles.flows.service import run_due_flows

    services = open_services(settings_from_options(data_dir, database_url))
    stop = threading.Event()
    try:
        while not stop.is_set():
            try:
                runs = run_due_flows(services, now=datetime.now(UTC))
            except Exception as exc:
                # A pass that fails as a whole (the database unreachable for a moment) ends
                # no watch: the next pass tries again. Its type and frames only (logging_setup).
                logger.error(
                    "A pass over the due flows failed: %s; the next starts in %g s.",
                    type(exc).__name__,
                    every,
                    exc_info=exc,
                )
                runs = []
            for run in runs:
                click.echo(
                    f"{run.domain_name}/{run.flow_name} ({run.trigger}): {run.status}, "
                    f"{run.records_ingested} ingested, {run.records_dead_lettered} dead-lettered"
                )
            stop.wait(every)
    except KeyboardInterrupt:
        pass
    finally:
        services.database.dispose()
