"""`openprofiles ingest contact-records FILE`: load a file of contact records (JSON lines or a
JSON array) into the domains their instances are associated with, with a progress bar. The
file is read as `openprofiles ingest FILE` reads one (ingest.bulk.read_records): JSON lines a
batch at a time, so a file of any size loads in the memory of a batch. A rejected record's dead
letter says which line (or array index) of which file it came from, as that command's do."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from openprofiles.cli_support import (
    MAX_BATCH_SIZE,
    Refused,
    end_stopped_load,
    open_services,
    settings_from_options,
    storage_options,
)
from openprofiles.ingest import DEFAULT_BATCH_SIZE, MAX_OBJECT_CHARS
from openprofiles.store.chunks import PG_RECORDS_PER_TRANSACTION, transaction_chunks

if TYPE_CHECKING:
    from openprofiles.contacts.records import Item


@click.command("contact-records")
@storage_options
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--batch-size",
    type=click.IntRange(1, MAX_BATCH_SIZE),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Records read at a time, one transaction on SQLite; on PostgreSQL at most "
    f"{PG_RECORDS_PER_TRANSACTION} records a transaction.",
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
    from openprofiles.errors import ServiceError

    # The file is looked at before anything is stored or opened: one that is not records (a
    # malformed pretty-printed array) is refused whole, not cut into line fragments, as is one
    # that is not UTF-8 throughout.
    total, items = read_contact_records(file)
    services = open_services(settings_from_options(data_dir, database_url).for_bulk_load())
    read = accepted = rejected = 0
    # Where the rejected went (BatchOutcome.dead_lettered, .unrouted), summed over the batches.
    dead_lettered: Counter[str] = Counter()
    unrouted: Counter[str | None] = Counter()
    waiting = 0
    # Records kept waiting (by an earlier batch of the file, or before) that a batch sent on
    # because it brought the contact they continue (BatchOutcome.woken): accepted, rejected.
    woken: Counter[str] = Counter()
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
            task = progress.add_task("contacts", total=total)
            # A batch at a time: the file is never held whole (ingest.bulk.read_records). On
            # PostgreSQL each part of a batch (store.chunks) is committed, and counted, before
            # the next: a load stopped part-way says truthfully what it applied.
            while batch := list(islice(items, batch_size)):
                for part in transaction_chunks(batch, is_sqlite=services.database.is_sqlite):
                    try:
                        outcome = process_batch(
                            services, [item for item, _ in part], [origin for _, origin in part]
                        )
                    except ServiceError as exc:
                        # A domain that cannot take records (its key disabled): the transaction
                        # is rolled back whole. Loading the file again after the fix is safe:
                        # the records already applied are repeats, which change nothing.
                        raise click.ClickException(
                            f"{exc.message} Stopped after {read} of {total} records "
                            f"({accepted} accepted, {rejected} rejected); the rest was not "
                            "loaded."
                        ) from exc
                    read += len(part)
                    accepted += outcome.accepted
                    rejected += len(outcome.rejected)
                    dead_lettered.update(outcome.dead_lettered)
                    unrouted.update(outcome.unrouted)
                    waiting += outcome.waiting
                    if outcome.woken is not None:
                        woken.update(
                            accepted=outcome.woken.accepted,
                            rejected=len(outcome.woken.rejected),
                        )
                    progress.advance(task, len(part))
    except BaseException as exc:
        # Ctrl-C, SIGTERM, a full disk: the transaction under way was rolled back (the batch on
        # SQLite, its part on PostgreSQL); those before it are committed, and counted.
        end_stopped_load(
            exc,
            file=file,
            loaded=f"{read} of {total} contact records of {file} were loaded ({accepted} "
            f"accepted, {rejected} rejected)",
            why_safe="a record already applied is a repeat, which changes nothing, and a "
            "rejected one is not dead-lettered or kept twice",
        )
        raise
    finally:
        services.database.dispose()
    seconds = time.perf_counter() - started
    where = _where_rejected(dead_lettered, unrouted, waiting)
    if as_json:
        # PascalCase keys, as every command's JSON (and AWS's) has them.
        summary = {
            "Read": read,
            "Accepted": accepted,
            "Rejected": rejected,
            # The rejected by where they are: each kind with its count and the command to see it.
            "RejectedTo": [{k: v for k, v in w.items() if k != "Text"} for w in where],
            "WaitingSentOn": {
                "Count": woken.total(),
                "Accepted": woken["accepted"],
                "Rejected": woken["rejected"],
            },
            "Seconds": round(seconds, 3),
            "RecordsPerSecond": round(read / seconds, 1) if seconds else 0.0,
        }
        click.echo(json.dumps(summary))
        return
    if not read:
        click.echo(f"{file} holds no contact records: nothing was loaded.")
        return
    click.echo(
        f"Read {read} contact records in {seconds:.1f}s: {accepted} accepted, {rejected} rejected"
        + (":" if where else ".")
    )
    for kind in where:
        click.echo(f"  {kind['Text']}")
    if woken.total():
        click.echo(
            f"Sent on {woken.total()} records kept waiting (by this load or before) when the "
            f"contact they continue came: {woken['accepted']} accepted, {woken['rejected']} "
            "rejected."
        )


def _where_rejected(
    dead_lettered: Counter[str], unrouted: Counter[str | None], waiting: int = 0
) -> list[dict[str, Any]]:
    """The rejected records by where they are kept, each with its count, the command that
    shows them and (for "Text", which --json leaves out) a line that says it: a domain's
    dead-letter queue, kept for an instance associated with no domain yet (ingested once it
    is), kept without an instance, kept waiting for the contact they continue
    (contacts.links). Keys in PascalCase: --json prints them."""
    from openprofiles.contacts.links import WAIT_SECONDS

    where: list[dict[str, Any]] = []
    for domain_name, count in sorted(dead_lettered.items()):
        see = f"openprofiles dlq list --domain {domain_name}"
        where.append(
            {
                "KeptIn": "dead_letter_queue",
                "DomainName": domain_name,
                "Count": count,
                "See": see,
                "Text": f"{count} in the dead-letter queue of domain {domain_name}: see them with "
                f"`{see}`.",
            }
        )
    for instance_arn, count in sorted(unrouted.items(), key=lambda kept: kept[0] or ""):
        if instance_arn is None:
            see = "openprofiles instances unrouted"
            text = (
                f"{count} kept without an instance (no InstanceARN could be read, so no "
                f"association can route them): count them with `{see}`, delete them with "
                "`openprofiles instances purge-unrouted --without-instance`."
            )
        else:
            see = f"openprofiles instances unrouted --instance {instance_arn}"
            text = (
                f"{count} kept for instance {instance_arn}, which is associated with no domain "
                f"yet: `openprofiles instances associate --instance {instance_arn} --domain D` "
                f"sends them to domain D; count them with `{see}`."
            )
        where.append(
            {
                "KeptIn": "unrouted",
                "InstanceArn": instance_arn,
                "Count": count,
                "See": see,
                "Text": text,
            }
        )
    if waiting:
        see = "openprofiles instances unrouted"
        where.append(
            {
                "KeptIn": "waiting",
                "Count": waiting,
                "See": see,
                "Text": f"{waiting} kept waiting for the contact they continue, whose record had "
                "not come: each is applied once it comes (with the batch that brings it, later "
                f"in this file or in another), or dead-lettered after {WAIT_SECONDS // 60} "
                f"minutes without; count them with `{see}`.",
            }
        )
    return where


def read_contact_records(file: Path) -> tuple[int, Iterator[tuple[Item, str | None]]]:
    """(number of records, each record as the intake takes it with its origin, "File x.jsonl,
    line 3"), read by the one file reader, ingest.bulk.read_records: JSON lines a line at a
    time, a line too long to be a record not read into memory; a JSON array, or a small file
    that is not JSON lines (one pretty-printed record), whole. ClickException, saying why, for
    a file that cannot be loaded: nothing of it is then loaded."""
    from openprofiles.contacts.models import ContactRecordInvalid
    from openprofiles.contacts.records import read_record
    from openprofiles.ingest.bulk import check_utf8, read_records

    try:
        check_utf8(file)
        total, records = read_records(file)
    except UnicodeDecodeError:
        raise Refused(
            f"{file} is not UTF-8 text; nothing was loaded.", error="NotRecords"
        ) from None
    except OSError as exc:
        raise Refused(
            f"Cannot read {file}: {exc.strerror or exc}.", error="FileUnreadable"
        ) from None
    except ValueError as exc:
        problem = _not_records(str(exc))
        raise Refused(f"{file} {problem}. Nothing was loaded.", error="NotRecords") from None

    def items() -> Iterator[tuple[Item, str | None]]:
        for record in records:
            if record.dropped is None:
                yield read_record(record.text), record.origin
                continue
            # Its text was not read: neither its ContactId nor its instance is known.
            too_long = ContactRecordInvalid(
                f"The line is {record.dropped} bytes long, more than a record of at most "
                f"{MAX_OBJECT_CHARS} characters can be; it was not kept."
            )
            yield ("", too_long), record.origin

    return total, items()


def _not_records(problem: str) -> str:
    """The reason ingest.bulk.read_records gives for a file that is neither JSON lines, an array
    nor one JSON value, said of contact records (what a body of them is told, contacts.http)."""
    _, colon, where = problem.partition(": ")
    if not (problem.startswith("is neither") and colon):
        return problem
    return (
        "is neither a JSON contact record, a JSON array of records nor JSON lines (one record a "
        f"line): {where[:1].upper()}{where[1:]}"
    )
