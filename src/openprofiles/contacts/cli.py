"""`openprofiles ingest contact-records FILE`: load a file of contact records (JSON lines or a
JSON array) into the domains their instances are associated with, with a progress bar. A
rejected record's dead letter says which line (or array index) of which file it came from, as
`openprofiles ingest FILE`'s do (ingest.bulk)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from openprofiles.cli_support import open_services, settings_from_options, storage_options
from openprofiles.ingest import DEFAULT_BATCH_SIZE


@click.command("contact-records")
@storage_options
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Records per transaction.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def contact_records(
    data_dir: Path | None, database_url: str | None, file: Path, batch_size: int, as_json: bool
) -> None:
    """Ingest FILE's contact records; each goes to the domain its InstanceARN is associated with.

    Rejected records are in the domain's dead-letter queue (`openprofiles dlq`), each saying
    which line (or array index) of FILE it came from, or, when their instance is associated
    with no domain, kept until it is (`openprofiles instances unrouted`).
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from openprofiles.contacts.http import process_batch
    from openprofiles.contacts.models import BodyInvalid
    from openprofiles.contacts.records import split_records
    from openprofiles.errors import ServiceError
    from openprofiles.ingest.bulk import file_origin, places

    # The file is read whole before anything is stored: one that is not records (a malformed
    # pretty-printed array) is refused, not cut into line fragments. A byte order mark (as
    # Windows tools write) is not part of the first record.
    try:
        text = file.read_text(encoding="utf-8-sig")
        items = split_records(text)
    except UnicodeDecodeError:
        raise click.ClickException(f"{file} is not UTF-8 text; nothing was loaded.") from None
    except OSError as exc:
        raise click.ClickException(f"Cannot read {file}: {exc.strerror or exc}.") from None
    except BodyInvalid as exc:
        raise click.ClickException(f"{file} is {exc.what}. Nothing was loaded.") from None
    origins = [file_origin(file, place) for place in places(text, [raw for raw, _ in items])]
    services = open_services(settings_from_options(data_dir, database_url).for_bulk_load())
    accepted = rejected = 0
    started = time.perf_counter()
    progress = Progress(
        TextColumn("[bold]contact records"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        disable=as_json,
    )
    try:
        with progress:
            task = progress.add_task("contacts", total=len(items))
            for start in range(0, len(items), batch_size):
                batch = items[start : start + batch_size]
                try:
                    outcome = process_batch(
                        services, batch, list(origins[start : start + batch_size])
                    )
                except ServiceError as exc:
                    # A domain that cannot take records (its key disabled): the batch is rolled
                    # back whole. Loading the file again after the fix is safe: the records
                    # already applied are repeats, which change nothing.
                    raise click.ClickException(
                        f"{exc.message} Stopped after {accepted + rejected} of {len(items)} "
                        f"records ({accepted} accepted, {rejected} rejected); the rest was not "
                        "loaded."
                    ) from None
                accepted += outcome.accepted
                rejected += len(outcome.rejected)
                progress.advance(task, len(batch))
    finally:
        services.database.dispose()
    seconds = time.perf_counter() - started
    summary = {
        "read": len(items),
        "accepted": accepted,
        "rejected": rejected,
        "seconds": round(seconds, 3),
        "records_per_second": round(len(items) / seconds, 1) if seconds else 0.0,
    }
    if as_json:
        click.echo(json.dumps(summary))
        return
    if not items:
        click.echo(f"{file} holds no contact records: nothing was loaded.")
        return
    click.echo(
        f"Read {len(items)} contact records in {seconds:.1f}s: {accepted} accepted, "
        f"{rejected} rejected."
    )
