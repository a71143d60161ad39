"""`openprofiles ingest`: load files of records through the ingestion pipeline.

`openprofiles ingest objects FILE --domain D --object-type T` (also spelt
`openprofiles ingest FILE ...`: a first argument that is not a subcommand is read as the FILE of
`objects`). Other record kinds add their own subcommands to the `ingest` group.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from openprofiles.cli_support import (
    MAX_BATCH_SIZE,
    Refused,
    end_stopped_load,
    open_services,
    settings_from_options,
    storage_options,
)
from openprofiles.ingest import DEFAULT_BATCH_SIZE
from openprofiles.store.chunks import PG_RECORDS_PER_TRANSACTION

if TYPE_CHECKING:
    from openprofiles.ingest.bulk import BulkSummary


class _DefaultObjectsGroup(click.Group):
    """A group whose default subcommand is `objects`, so `ingest FILE` keeps working."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["objects", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultObjectsGroup)
def ingest() -> None:
    """Load records from files through the ingestion pipeline."""


@ingest.command("objects")
@storage_options
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--domain", "domain_name", required=True, help="The domain to load into.")
@click.option("--object-type", "object_type_name", required=True, help="The records' type.")
@click.option(
    "--batch-size",
    type=click.IntRange(1, MAX_BATCH_SIZE),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Records read at a time, one transaction on SQLite; on PostgreSQL at most "
    f"{PG_RECORDS_PER_TRANSACTION} records a transaction.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def ingest_objects(
    data_dir: Path | None,
    database_url: str | None,
    file: Path,
    domain_name: str,
    object_type_name: str,
    batch_size: int,
    as_json: bool,
) -> None:
    """Ingest FILE (JSON lines, a JSON array of objects, or one JSON object) as objects of one
    object type.

    Records the pipeline rejects go to the domain's dead-letter queue (`openprofiles dlq`),
    each saying which line (or array index) of which file it came from. Safe to run again: a
    record with the same UNIQUE key replaces itself.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from openprofiles.errors import ServiceError
    from openprofiles.ingest.bulk import check_target, check_utf8, ingest_records, read_records

    # The file is looked at before anything is opened: one that cannot be loaded changes
    # nothing (not even a new data dir's database). One that is not UTF-8 throughout (a UTF-16
    # export, a binary file) is refused whole, as `ingest contact-records` refuses it, rather
    # than cut into "lines" of garbage dead-lettered for reasons that mislead.
    try:
        check_utf8(file)
        total, records = read_records(file)
    except UnicodeDecodeError:
        raise Refused(
            f"{file} is not UTF-8 text; nothing was loaded.", error="NotRecords"
        ) from None
    except ValueError as exc:
        raise Refused(f"{file} {exc}. Nothing was loaded.", error="NotRecords") from None
    except OSError as exc:
        raise Refused(
            f"Cannot read {file}: {exc.strerror or exc}.", error="FileUnreadable"
        ) from None
    services = open_services(settings_from_options(data_dir, database_url).for_bulk_load())
    try:
        # Before the progress bar: an unknown domain or type is the command's one line.
        check_target(services, domain_name=domain_name, object_type_name=object_type_name)
    except ServiceError as exc:
        services.database.dispose()
        raise click.ClickException(exc.message) from exc
    progress = Progress(
        TextColumn("[bold]ingest"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>8.0f} records/s"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=as_json or not total,
    )
    committed = 0  # records of the batches committed so far, for an interrupted load
    try:
        with progress:
            task = progress.add_task("ingest", total=total, rate=0.0)

            def advance(count: int) -> None:
                nonlocal committed
                committed += count
                progress.advance(task, count)
                elapsed = progress.tasks[task].elapsed or 0.0
                done = progress.tasks[task].completed
                progress.update(task, rate=done / elapsed if elapsed else 0.0)

            summary = ingest_records(
                services,
                domain_name=domain_name,
                object_type_name=object_type_name,
                records=records,
                batch_size=batch_size,
                on_progress=advance,
            )
    except BaseException as exc:
        # Ctrl-C, SIGTERM, a full disk: a transaction is committed before its records are
        # counted; the one under way was rolled back.
        loaded = f"{committed} of {total} records of {file} were loaded (ingested or dead-lettered)"
        why_safe = (
            "a record with the same UNIQUE key replaces itself, and a rejected one counts "
            "another attempt on its dead letter instead of adding one"
        )
        end_stopped_load(exc, file=file, loaded=loaded, why_safe=why_safe)
        if isinstance(exc, ServiceError):
            # A batch given up on (store.conflicts: it kept meeting concurrent writes, say):
            # the batches before it are committed, which the operator needs to know as much
            # as after an interruption.
            raise click.ClickException(
                f"{exc.message} {loaded[:1].upper()}{loaded[1:]}; the batch under way is not "
                f"counted. Loading {file} again is safe: {why_safe}."
            ) from exc
        raise
    finally:
        services.database.dispose()
    if as_json:
        click.echo(json.dumps(_json_summary(summary)))
        return
    if not summary.read:
        click.echo(f"{file} holds no records: nothing was loaded.")
        return
    click.echo(
        f"Read {summary.read} records in {summary.seconds:.1f}s "
        f"({summary.per_second:.0f} records/s): {summary.ingested} ingested, "
        f"{summary.created_profiles} new profiles, {summary.dead_lettered} dead-lettered."
    )
    if summary.dead_lettered:
        click.echo(f"See them with: openprofiles dlq list --domain {domain_name}")


def _json_summary(summary: BulkSummary) -> dict[str, float | int]:
    """What `--json` prints: PascalCase keys, as every command's JSON (and AWS's) has them."""
    return {
        "Read": summary.read,
        "Ingested": summary.ingested,
        "CreatedProfiles": summary.created_profiles,
        "DeadLettered": summary.dead_lettered,
        "Seconds": round(summary.seconds, 3),
        "RecordsPerSecond": round(summary.per_second, 1),
    }
