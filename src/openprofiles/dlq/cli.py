"""`openprofiles dlq list|show|retry|resend|purge --domain NAME`: the local dead-letter store,
and sending its records to the domain's SQS queue again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from openprofiles.cli_support import (
    HOW_VALUES_COMPARE,
    confirm_bulk_delete,
    gone_meanwhile,
    matching_value,
    open_services,
    settings_from_options,
    storage_options,
    storage_options_given,
    yes_option,
)
from openprofiles.dlq.models import DeadLetter


def _summary(letter: DeadLetter) -> dict[str, Any]:
    """A letter as listed. Its origin (where its record came from: "Flow crm", "File
    customers.jsonl, line 3") is also the start of its reason, so the text listing shows it."""
    from openprofiles.dlq.service import delivery_status

    return {
        "MessageId": letter.message_id,
        "ObjectTypeName": letter.object_type_name,
        "Origin": letter.origin,
        "Category": letter.category,
        "Reason": letter.reason,
        "Attempts": letter.attempts,
        "CreatedAt": letter.created_at.isoformat(),
        "LastAttemptAt": letter.last_attempt_at.isoformat(),
        "SinkError": letter.sink_error,
        "Delivery": delivery_status(letter),
    }


def _existing_domain(tx: Any, domain_name: str) -> None:
    """NotFound (an error message, not an empty list) for a domain that does not exist."""
    from openprofiles.domains.service import get_domain

    get_domain(tx, domain_name=domain_name)


def _run(data_dir: Path | None, database_url: str | None, work: Any, *, write: bool) -> Any:
    from openprofiles.errors import ServiceError
    from openprofiles.store.conflicts import retrying

    services = open_services(settings_from_options(data_dir, database_url))

    def attempt() -> Any:
        with services.write() if write else services.read() as tx:
            return work(tx)

    try:
        # A write that lost a race with a server's writes (PostgreSQL) runs again.
        return retrying(attempt)
    except ServiceError as exc:
        raise click.ClickException(exc.message) from exc
    finally:
        services.database.dispose()


domain_option = click.option("--domain", "domain_name", required=True, help="The domain.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group()
def dlq() -> None:
    """The dead-letter queue: records ingestion could not apply, with the reason."""


# Dead letters `dlq list` shows at once: a bulk load may leave tens of thousands.
LIST_LIMIT = 100
# Records `dlq resend` sends unless --limit says: dlq.resend.DEFAULT_LIMIT, which the server's
# periodic resend uses (a test checks that they agree); that module is not imported for --help,
# as it takes seconds to.
RESEND_LIMIT = 1000
# The most `dlq list --limit` and `dlq resend --limit` take: a number the databases can compare
# with (a larger one overflows SQLite's and PostgreSQL's integers) and a resend can count to (one
# past sys.maxsize stopped it with a traceback); `dlq list --all` shows every one.
MAX_LIMIT = 1_000_000


@dlq.command("list")
@storage_options
@domain_option
@json_option
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_LIMIT),
    default=LIST_LIMIT,
    show_default=True,
    help="Show at most this many (--json too).",
)
@click.option(
    "--after",
    "after",
    default=None,
    metavar="MESSAGE_ID",
    help="Start after this dead letter: the last one a previous page showed.",
)
@click.option("--all", "show_all", is_flag=True, help="Show every one (not with --limit).")
@click.pass_context
def dlq_list(
    ctx: click.Context,
    data_dir: Path | None,
    database_url: str | None,
    domain_name: str,
    as_json: bool,
    limit: int,
    after: str | None,
    show_all: bool,
) -> None:
    """List the domain's dead letters, oldest first, --limit at a time (100): the next ones
    with --after the last one shown, every one with --all. With --json the list is paged alike,
    and what follows is said on stderr."""
    from openprofiles.dlq.service import count, list_messages

    # --all with a --limit given is refused, not read as "the first LIMIT": the two ask for
    # different things (every one, a page), and obeying either one silently drops what the
    # other asked for. A page is --limit alone; --all goes with --after (every one after it).
    if show_all and ctx.get_parameter_source("limit") is not ParameterSource.DEFAULT:
        raise click.UsageError(
            f"Give --all or --limit, not both: --all shows every dead letter, --limit {limit} "
            f"shows {limit} at a time (the next ones with --after)."
        )

    def load(tx: Any) -> tuple[list[DeadLetter], int]:
        _existing_domain(tx, domain_name)
        # One more than shown, to know whether more follow.
        page = None if show_all else limit + 1
        letters = list_messages(tx, domain_name=domain_name, limit=page, after=after)
        return letters, count(tx, domain_name=domain_name)

    letters, total = _run(data_dir, database_url, load, write=False)
    more = not show_all and len(letters) > limit
    letters = letters if show_all else letters[:limit]
    summaries = [_summary(x) for x in letters]
    if as_json:
        click.echo(json.dumps(summaries))
    else:
        for x, summary in zip(letters, summaries, strict=True):
            click.echo(
                f"{x.message_id}  {x.created_at:%Y-%m-%d %H:%M}  {x.object_type_name:<20} "
                f"{x.category:<13} x{x.attempts}  {x.reason}  [SQS: {summary['Delivery']}]"
            )
        if not letters:
            click.echo(
                f"No dead letters in domain {domain_name}{' after ' + after if after else ''}."
            )
    if more:
        # On stderr with --json, whose stdout a script parses.
        following = f"{total - len(letters)} more" if after is None else "more"
        storage = storage_options_given(data_dir, database_url)
        click.echo(
            f"{_count(len(letters), 'dead letter')} shown of {total} in domain {domain_name}; "
            f"{following} follow. Next page: openprofiles dlq list{storage} --domain "
            f"{domain_name} --after {letters[-1].message_id}; every one: --all.",
            err=as_json,
        )


def _count(number: int, noun: str) -> str:
    """'1 dead letter', '2 dead letters'."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


@dlq.command("show")
@storage_options
@domain_option
@json_option
@click.argument("message_id")
def dlq_show(
    data_dir: Path | None,
    database_url: str | None,
    domain_name: str,
    as_json: bool,
    message_id: str,
) -> None:
    """Show one dead letter with its object."""
    from openprofiles.dlq.service import get

    def load(tx: Any) -> DeadLetter:
        _existing_domain(tx, domain_name)
        return get(tx, domain_name=domain_name, message_id=message_id)

    letter = _run(data_dir, database_url, load, write=False)
    out = {**_summary(letter), "Object": letter.object_json}
    if letter.not_retryable is not None:
        out["NotRetryable"] = letter.not_retryable
    if as_json:
        click.echo(json.dumps(out))
        return
    for name, value in out.items():
        # A member it does not have (no origin, sent to SQS) is left out, not shown as None.
        if value is not None:
            click.echo(f"{name + ':':<15} {value}")


@dlq.command("retry")
@storage_options
@domain_option
@json_option
@click.argument("message_ids", nargs=-1)
def dlq_retry(
    data_dir: Path | None,
    database_url: str | None,
    domain_name: str,
    as_json: bool,
    message_ids: tuple[str, ...],
) -> None:
    """Run dead letters (all, or MESSAGE_IDS) through ingestion again; remove what succeeds.

    A contact record is applied only when it is newer than the version of its contact already
    applied; an older one is removed as superseded. A letter that holds no record a retry can
    ingest (a flow file that could not be read as records, say) is left as it is, with why and
    what to do instead. In --json, Succeeded lists every letter removed, Superseded those of
    them that changed nothing, Failed every letter still here, NotRetried those of them not
    tried (message id: why)."""
    from openprofiles.dlq.service import retry_in_batches
    from openprofiles.errors import ServiceError

    services = open_services(settings_from_options(data_dir, database_url))
    try:
        with services.read() as tx:
            _existing_domain(tx, domain_name)
        # A batch per transaction: a server on the same SQLite database writes in between.
        outcome = retry_in_batches(
            services, domain_name=domain_name, message_ids=list(message_ids) or None
        )
    except ServiceError as exc:
        raise click.ClickException(exc.message) from exc
    finally:
        services.database.dispose()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "Succeeded": outcome.succeeded,
                    "Superseded": outcome.superseded,
                    "Failed": outcome.failed,
                    "NotRetried": outcome.not_retried,
                }
            )
        )
        return
    ingested = len(outcome.succeeded) - len(outcome.superseded)
    click.echo(f"{ingested} ingested, {len(outcome.failed)} still failing.")
    if outcome.superseded:
        click.echo(
            f"{len(outcome.superseded)} removed as superseded: records older than what is "
            "stored (a contact's later version, or an object written after the record's last "
            "attempt); nothing was changed."
        )
    if outcome.not_retried:
        click.echo(f"{len(outcome.not_retried)} of them cannot be retried from here:")
        for message_id, why in outcome.not_retried.items():
            click.echo(f"  {message_id}: {why}")


@dlq.command("resend")
@storage_options
@domain_option
@json_option
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_LIMIT),
    default=RESEND_LIMIT,
    show_default=True,
    help="Send at most this many records.",
)
def dlq_resend(
    data_dir: Path | None,
    database_url: str | None,
    domain_name: str,
    as_json: bool,
    limit: int,
) -> None:
    """Send the dead letters whose SQS send failed or never happened to the domain's queue."""
    from openprofiles.dlq.resend import resend_pending
    from openprofiles.errors import ServiceError

    services = open_services(settings_from_options(data_dir, database_url))
    try:
        outcome = resend_pending(services, domain_name=domain_name, limit=limit)
    except ServiceError as exc:
        raise click.ClickException(exc.message) from exc
    finally:
        services.database.dispose()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "Sent": outcome.sent,
                    "Failed": outcome.failed,
                    "Waiting": outcome.waiting,
                    "More": outcome.more,
                }
            )
        )
        return
    click.echo(f"{len(outcome.sent)} sent to SQS, {len(outcome.failed)} still failing.")
    if outcome.waiting:
        click.echo(
            f"{outcome.waiting} left for later: just dead-lettered (their send may still be "
            "under way) or being sent by another process."
        )
    if outcome.more:
        click.echo("More records wait: run the command again.")
    if outcome.failed:
        storage = storage_options_given(data_dir, database_url)
        click.echo(f"Why: see `openprofiles dlq list{storage} --domain {domain_name}`.")


matching_option = click.option(
    "--matching",
    "matching",
    default=None,
    metavar="VALUE",
    callback=matching_value,
    help="A customer's email address, phone number or other value: the records holding it. "
    f"{HOW_VALUES_COMPARE} Never printed. `-` reads it from standard input, out of the shell's "
    "history.",
)
dry_run_option = click.option(
    "--dry-run", is_flag=True, help="With --matching: list what would be purged, purge nothing."
)


@dlq.command("purge")
@storage_options
@domain_option
@json_option
@click.option("--all", "purge_all", is_flag=True, help="Purge every dead letter of the domain.")
@matching_option
@dry_run_option
@yes_option
@click.argument("message_ids", nargs=-1)
def dlq_purge(
    data_dir: Path | None,
    database_url: str | None,
    domain_name: str,
    as_json: bool,
    purge_all: bool,
    matching: str | None,
    dry_run: bool,
    yes: bool,
    message_ids: tuple[str, ...],
) -> None:
    """Delete dead letters: the given MESSAGE_IDS, all of them with --all, or with --matching
    VALUE those whose record holds a customer's value (to erase a customer: a dead letter names
    no profile, so DeleteProfile leaves it). --dry-run lists the ids --matching would purge.

    --all asks for confirmation first, saying how many would go (their records were never
    ingested, and cannot be brought back), and purges those it counted: one dead-lettered
    since is kept, and said so. --yes does not ask, and is needed when standard input is not a
    terminal (a script).

    Exits with status 1 when a given MESSAGE_ID is not a dead letter of the domain (the others
    are purged); --json then lists them in NotFound."""
    from openprofiles.dlq.service import missing, purge
    from openprofiles.errors import NotFound

    if matching is not None:
        if message_ids or purge_all:
            raise click.UsageError("Give MESSAGE_IDS, --all or --matching VALUE, not several.")
        _purge_matching(data_dir, database_url, domain_name, matching, dry_run, as_json)
        return
    if dry_run:
        raise click.UsageError("--dry-run goes with --matching VALUE.")
    if message_ids and purge_all:
        # Either could be what was meant: purging the named ones alone would drop the --all.
        raise click.UsageError("Give MESSAGE_IDS or --all, not both. Nothing was purged.")
    if purge_all:
        _purge_all(data_dir, database_url, domain_name, as_json, yes)
        return
    if not message_ids:
        raise click.UsageError(
            "Give MESSAGE_IDS, --all to purge every dead letter, or --matching VALUE."
        )
    given = list(dict.fromkeys(message_ids))

    def work(tx: Any) -> tuple[int, list[str]]:
        _existing_domain(tx, domain_name)
        absent = missing(tx, domain_name=domain_name, message_ids=given)
        return purge(tx, domain_name=domain_name, message_ids=given), absent

    purged, absent = _run(data_dir, database_url, work, write=True)
    if as_json:
        click.echo(json.dumps({"Purged": purged, "NotFound": absent}))
    else:
        click.echo(f"Purged {_count(purged, 'dead letter')}.")
    if absent:
        message = (
            f"The dead-letter message {absent[0]} does not exist in domain {domain_name}."
            if len(absent) == 1
            else f"The dead-letter messages {', '.join(absent)} do not exist in domain "
            f"{domain_name}."
        )
        # As the API names it, in the audit line too (cli_support._how_it_ended).
        raise click.ClickException(message) from NotFound(message)


def _purge_all(
    data_dir: Path | None, database_url: str | None, domain_name: str, as_json: bool, yes: bool
) -> None:
    """`dlq purge --all`: the letters are counted in a read, their ids kept, and only those
    are purged once the operator says yes (or with --yes). A server may dead-letter more while
    the question waits: records not ingested yet, which no one agreed to delete, so they stay,
    and are counted in the output (on stderr with --json, whose stdout a script parses)."""
    from openprofiles.dlq.service import GONE_BEFORE_PURGE, count, letter_ids, purge

    def counted(tx: Any) -> list[str]:
        _existing_domain(tx, domain_name)
        return letter_ids(tx, domain_name=domain_name)

    # Named ids are the operator's own list, and --matching one customer's: only --all
    # deletes what no one has looked at.
    ids = _run(data_dir, database_url, counted, write=False)
    what = f"{_count(len(ids), 'dead letter')} of domain {domain_name}"
    if not confirm_bulk_delete(what, len(ids), yes=yes):
        if as_json:
            click.echo(json.dumps({"Purged": 0, "NotFound": []}))
        else:
            click.echo(f"No dead letters in domain {domain_name}: nothing was purged.")
        return

    def work(tx: Any) -> tuple[int, int]:
        _existing_domain(tx, domain_name)
        purged = purge(tx, domain_name=domain_name, message_ids=ids)
        # Every counted letter still here went above: those left came after the count.
        return purged, count(tx, domain_name=domain_name)

    purged, arrived = _run(data_dir, database_url, work, write=True)
    if as_json:
        click.echo(json.dumps({"Purged": purged, "NotFound": []}))
    else:
        click.echo(f"Purged {_count(purged, 'dead letter')}.")
    gone = gone_meanwhile(len(ids), purged, GONE_BEFORE_PURGE)
    if gone:
        click.echo(gone, err=as_json)
    if arrived:
        click.echo(
            f"{_count(arrived, 'more dead letter')} arrived since the count and "
            f"{'was' if arrived == 1 else 'were'} kept.",
            err=as_json,
        )


def _purge_matching(
    data_dir: Path | None,
    database_url: str | None,
    domain_name: str,
    matching: str,
    dry_run: bool,
    as_json: bool,
) -> None:
    """`dlq purge --matching`: the letters holding the value are found in a read (each opened),
    then purged by id in a write, so a server on the same SQLite database is not held off while
    they are opened. Prints their ids, never the value."""
    from openprofiles.cli_support import held_value
    from openprofiles.dlq.service import holding, purge

    def find(tx: Any) -> list[str]:
        _existing_domain(tx, domain_name)
        value = held_value(matching, tx.settings)
        return holding(tx, domain_name=domain_name, value=value)

    found = _run(data_dir, database_url, find, write=False)
    purged = 0
    if found and not dry_run:
        purged = _run(
            data_dir,
            database_url,
            lambda tx: purge(tx, domain_name=domain_name, message_ids=found),
            write=True,
        )
    if as_json:
        click.echo(json.dumps({"Matching": found, "Purged": purged, "DryRun": dry_run}))
        return
    if dry_run:
        click.echo(f"--dry-run: would purge {_count(len(found), 'dead letter')} holding the value.")
    else:
        click.echo(f"Purged {_count(purged, 'dead letter')} holding the value.")
    for message_id in found:
        click.echo(f"  {message_id}")
