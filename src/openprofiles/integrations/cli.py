"""`openprofiles instances`: associate contact-centre instances with domains, list them, and
replay contact records kept while an instance was associated with no domain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from openprofiles.cli_support import (
    HOW_VALUES_COMPARE,
    confirm_bulk_delete,
    gone_meanwhile,
    matching_value,
    open_services,
    settings_from_options,
    storage_options,
    yes_option,
)

# What each command that takes `--instance ''` says instead: an empty ARN names no instance,
# and read as one it matched no record (purge-unrouted said none were kept "without an
# instance", while `unrouted` counted some), or as a falsy "not given".
EMPTY_INSTANCE = {
    "associate": "give the ARN of the instance to associate",
    "unrouted": "to count the records kept without one, leave --instance out: they are "
    "listed as (no instance)",
    "purge-unrouted": "to delete the records kept without one, give --without-instance instead",
}


def _instance_arn_value(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> str | None:
    """The value of an `--instance ARN` option: an Amazon Connect instance ARN as the intake
    keeps records under (integrations.models.is_instance_arn), or None when not given. A usage
    error naming the option otherwise, before the database is opened: a malformed one matches
    no record, and was taken as a filter that found none."""
    from openprofiles.errors import shown_value
    from openprofiles.integrations.models import is_instance_arn

    if value is None:
        return None
    if not value.strip():
        hint = EMPTY_INSTANCE.get(ctx.info_name or "", "give an instance's ARN")
        raise click.BadParameter(f"an empty ARN names no instance; {hint}.", ctx=ctx, param=param)
    if not is_instance_arn(value):
        raise click.BadParameter(
            f"{shown_value(value)} is not an Amazon Connect instance ARN "
            "(arn:aws:connect:REGION:ACCOUNT:instance/ID).",
            ctx=ctx,
            param=param,
        )
    return value


# What `_name_value` says of an empty name, by the option's parameter name.
EMPTY_NAME = {
    "domain_name": "no domain has an empty name; give the domain's name.",
    "object_type_name": "no object type has an empty name; give one, or leave --object-type out "
    "for the default (the instance's object type in DOMAIN, CTR for a new association).",
}


def _name_value(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """The value of an option that names a domain or an object type, or None when not given: a
    usage error naming the option when it is empty or blank (no domain or object type has such
    a name), where `--object-type ''` was read as not given and silently chose CTR."""
    if value is not None and not value.strip():
        raise click.BadParameter(
            EMPTY_NAME.get(param.name or "", "the name cannot be empty."), ctx=ctx, param=param
        )
    return value


@click.group()
def instances() -> None:
    """Contact-centre instances and the domain each one's contact records go to."""


@instances.command("associate")
@storage_options
@click.option(
    "--instance",
    "instance_arn",
    required=True,
    callback=_instance_arn_value,
    help="arn:aws:connect:...:instance/ID",
)
@click.option(
    "--domain",
    "domain_name",
    required=True,
    callback=_name_value,
    help="The domain to associate it with.",
)
@click.option(
    "--move", is_flag=True, help="Move the instance if it is associated with another domain."
)
@click.option(
    "--object-type",
    "object_type_name",
    default=None,
    callback=_name_value,
    help="The object type its contact records are ingested as. Default: the one it has when "
    "it is associated with DOMAIN already, CTR otherwise.",
)
def instances_associate(
    data_dir: Path | None,
    database_url: str | None,
    instance_arn: str,
    domain_name: str,
    move: bool,
    object_type_name: str | None,
) -> None:
    """Send the instance's contact records to DOMAIN from now on, and the ones kept while it
    was associated with no domain. Run again without --object-type, it replays those and
    changes nothing else."""
    from openprofiles.contacts.service import connect_instance
    from openprofiles.contacts.sweep import send_kept_on
    from openprofiles.errors import ServiceError
    from openprofiles.store.conflicts import retrying

    services = open_services(settings_from_options(data_dir, database_url))

    def attempt() -> Any:
        with services.write() as tx:
            return connect_instance(
                tx,
                domain_name=domain_name,
                instance_arn=instance_arn,
                move=move,
                object_type_name=object_type_name,
            )

    try:
        # The replay may lose a race with another writer (PostgreSQL): it runs again.
        done, replayed = retrying(attempt)
        # The association committed with the first chunk of the kept records: the rest now.
        replayed = send_kept_on(services, instance_arns=[instance_arn], sent=replayed)
    except ServiceError as exc:
        raise click.ClickException(exc.message) from exc
    finally:
        services.database.dispose()
    click.echo(
        f"Instance {instance_arn} is associated with domain {domain_name}; its contact records "
        f"are ingested as {done.integration.object_type_name}."
    )
    if done.previous_domain:
        click.echo(
            f"It was moved from domain {done.previous_domain}. Its existing profiles and contact "
            f"history stay in {done.previous_domain}; only new contact records go to "
            f"{domain_name}."
        )
    if replayed.sent_on:
        click.echo(
            f"Replayed {replayed.sent_on} contact records kept while it was unassociated: "
            f"{replayed.accepted} accepted, {replayed.rejected_for_good} rejected."
        )
    if replayed.held > replayed.waiting:
        click.echo(
            f"{replayed.held - replayed.waiting} kept contact records wait for the domain's key "
            "to be usable; `openprofiles instances send-kept` (or the server, every minute) "
            "sends them on."
        )
    if replayed.waiting:
        click.echo(_waiting_text(replayed.waiting, "{n} of them"))


def _waiting_text(count: int, who: str) -> str:
    """`count` records (`who`: "{n} of them", "{n} now") wait for the contact they continue,
    and what then (contacts.links), in the number's agreement: "1 now waits for the contact it
    continues, ...; it is applied ..."."""
    from openprofiles.contacts.links import WAIT_SECONDS

    one = count == 1
    return (
        f"{who.format(n=count)} "
        f"{'waits for the contact it continues' if one else 'wait for the contact they continue'}"
        f", whose record has not come; {'it' if one else 'each'} is applied when it comes, or "
        f"dead-lettered after {WAIT_SECONDS // 60} minutes without."
    )


@instances.command("list")
@storage_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def instances_list(data_dir: Path | None, database_url: str | None, as_json: bool) -> None:
    """Every associated instance with its domain, object type, and why it is disabled if it is."""
    from openprofiles.integrations.service import list_instances

    services = open_services(settings_from_options(data_dir, database_url))
    try:
        with services.read() as tx:
            items = list_instances(tx)
    finally:
        services.database.dispose()
    # DisabledReason: set while DeleteProfileObjectType has disabled the instance's integration
    # (its records go to the dead-letter queue); the API has no member for it.
    rows = [
        {
            "InstanceArn": i.uri,
            "DomainName": i.domain_name,
            "ObjectTypeName": i.object_type_name,
            "DisabledReason": i.disabled_reason,
        }
        for i in items
    ]
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo("No instance is associated with a domain.")
    for row in rows:
        line = f"{row['InstanceArn']}  {row['DomainName']}  {row['ObjectTypeName']}"
        if row["DisabledReason"]:
            line += f"  disabled: {row['DisabledReason']}"
        click.echo(line)


@instances.command("unrouted")
@storage_options
@click.option(
    "--instance",
    "instance_arn",
    default=None,
    callback=_instance_arn_value,
    help="Only this instance's records.",
)
def instances_unrouted(
    data_dir: Path | None, database_url: str | None, instance_arn: str | None
) -> None:
    """Count contact records kept because no domain could take them, and apart, those kept
    waiting for the contact they continue (their domain takes them once it comes)."""
    from openprofiles.contacts.kept import count_unrouted

    services = open_services(settings_from_options(data_dir, database_url))
    try:
        with services.read() as tx:
            kept = count_unrouted(tx, instance_arn=instance_arn, waiting=False)
            waiting = count_unrouted(tx, instance_arn=instance_arn, waiting=True)
    finally:
        services.database.dispose()
    counts = {arn or "(no instance)": count for arn, count in kept.items()}
    if not counts and not waiting:
        click.echo("No contact records are waiting for an instance association.")
    for arn, count in sorted(counts.items()):
        click.echo(f"{arn}  {count}")
    # A waiting record was routed: it always has its instance's ARN.
    for arn, count in sorted((str(arn), count) for arn, count in waiting.items()):
        click.echo(f"{arn}  {count} waiting for the contact they continue")


@instances.command("send-kept")
@storage_options
def instances_send_kept(data_dir: Path | None, database_url: str | None) -> None:
    """Send on the kept contact records that a domain can take now: those of an association
    whose process stopped before it sent them all, and those held while their domain's key
    could not be used. The server does it every minute as well."""
    from openprofiles.contacts.sweep import send_kept_on

    services = open_services(settings_from_options(data_dir, database_url))
    try:
        sent = send_kept_on(services)
    finally:
        services.database.dispose()
    click.echo(
        f"Sent on {sent.sent_on} kept contact records: {sent.accepted} accepted, "
        f"{sent.rejected_for_good} rejected; {sent.held - sent.waiting} kept again (their "
        "domain's key cannot be used now)."
    )
    if sent.waiting:
        click.echo(_waiting_text(sent.waiting, "{n} now"))


@instances.command("purge-unrouted")
@storage_options
@click.option(
    "--instance",
    "instance_arn",
    default=None,
    callback=_instance_arn_value,
    help="Delete this instance's records.",
)
@click.option(
    "--without-instance",
    is_flag=True,
    help="Delete the records kept without an instance ARN (no association can route them).",
)
@click.option(
    "--matching",
    "matching",
    default=None,
    metavar="VALUE",
    callback=matching_value,
    help="A customer's email address, phone number or other value: delete the kept records "
    f"holding it, every instance's, waiting ones too. {HOW_VALUES_COMPARE} Never printed. `-` "
    "reads it from standard input, out of the shell's history.",
)
@click.option(
    "--dry-run", is_flag=True, help="With --matching: list what would be deleted, delete nothing."
)
@click.option("--json", "as_json", is_flag=True, help="With --matching: print JSON.")
@yes_option
def instances_purge_unrouted(
    data_dir: Path | None,
    database_url: str | None,
    instance_arn: str | None,
    without_instance: bool,
    matching: str | None,
    dry_run: bool,
    as_json: bool,
    yes: bool,
) -> None:
    """Delete contact records kept because no domain could take them (they are personal data
    kept until their instance is associated; see `instances unrouted`). Records kept waiting
    for the contact they continue are left: their domain takes them within the hour.

    --instance and --without-instance ask for confirmation first, saying how many would go
    (they cannot be brought back), and delete those counted: one kept since stays, and is said
    so. --yes does not ask, and is needed when standard input is not a terminal (a script).

    With --matching VALUE, to erase a customer: the kept records (every instance's, waiting
    ones too) whose record holds the value, each opened to tell (a kept record names no
    profile, so DeleteProfile leaves it, and a replay would bring the customer back)."""
    from openprofiles.contacts.kept import count_unrouted, purge_unrouted, purgeable_unrouted

    if matching is not None:
        if instance_arn is not None or without_instance:
            raise click.UsageError(
                "Give --matching VALUE alone, not with --instance or --without-instance."
            )
        _purge_matching(data_dir, database_url, matching, dry_run, as_json)
        return
    if dry_run or as_json:
        raise click.UsageError("--dry-run and --json go with --matching VALUE.")
    if (instance_arn is None) == (not without_instance):
        raise click.UsageError("Give either --instance ARN, --without-instance or --matching.")
    whose = f"for {instance_arn}" if instance_arn else "without an instance"
    purged: int | None = None
    arrived = 0
    services = open_services(settings_from_options(data_dir, database_url))
    try:
        # Every record kept for the instance (or without one), none of them looked at: asked
        # about first. --matching deletes one customer's, as an erasure asks.
        with services.read() as tx:
            counted = purgeable_unrouted(tx, instance_arn=instance_arn)
        what = f"{_records(len(counted))} kept {whose}"
        if confirm_bulk_delete(what, len(counted), yes=yes):
            with services.write() as tx:
                # Those counted alone: a record kept while the question waited (personal data
                # not applied yet) was not asked about, and stays.
                purged = purge_unrouted(tx, instance_arn=instance_arn, message_ids=counted)
                arrived = count_unrouted(tx, instance_arn=instance_arn, waiting=False).get(
                    instance_arn, 0
                )
        with services.read() as tx:
            left = (
                count_unrouted(tx, instance_arn=instance_arn, waiting=True).get(instance_arn)
                if instance_arn
                else None
            )
    finally:
        services.database.dispose()
    # The records waiting for their contact (`left`) are routed to the instance's domain: not
    # the operator's to drop here (see the help). With none deleted, they are the reason: "no
    # records are kept" before "1 kept for it" said two things of one instance.
    if purged is None:
        if left:
            click.echo(f"No contact records to delete {whose}: the {_left_waiting(left)}")
        else:
            click.echo(f"No contact records are kept {whose}: nothing was deleted.")
    else:
        click.echo(f"Deleted {_records(purged)} kept {whose}.")
        gone = gone_meanwhile(len(counted), purged, "sent on or deleted meanwhile")
        if gone:
            click.echo(gone)
        if left:
            click.echo(f"The {_left_waiting(left, other=True)}")
    if arrived:
        click.echo(
            f"{arrived} more arrived {whose} since the count and "
            f"{'was' if arrived == 1 else 'were'} kept."
        )


def _left_waiting(left: int, *, other: bool = False) -> str:
    """What `purge-unrouted --instance` says of the `left` records it kept for the instance
    that wait for their contact, in the number's agreement: "1 kept for it waits for the
    contact it continues, ... and was left in place; ..." (`other`: "1 other kept ...", after
    some were deleted)."""
    from openprofiles.contacts.links import WAIT_SECONDS

    one = left == 1
    return (
        f"{left}{' other' if other else ''} kept for it "
        f"{'waits for the contact it continues' if one else 'wait for the contact they continue'}"
        f", whose record has not come, and {'was' if one else 'were'} left in place; "
        f"{'it' if one else 'each'} is applied when it comes, or dead-lettered after "
        f"{WAIT_SECONDS // 60} minutes without."
    )


def _records(number: int) -> str:
    """'1 contact record', '2 contact records'."""
    return f"{number} contact record{'' if number == 1 else 's'}"


def _purge_matching(
    data_dir: Path | None, database_url: str | None, matching: str, dry_run: bool, as_json: bool
) -> None:
    """`instances purge-unrouted --matching`: the kept records holding the value are found in
    a read (each opened), then deleted by id in a write, so a server on the same SQLite
    database is not held off while they are opened. Prints their ids, never the value."""
    from openprofiles.cli_support import held_value
    from openprofiles.contacts.kept import purge_unrouted_ids, unrouted_holding
    from openprofiles.contacts.shared_endpoint import held_endpoints, purge_holding

    services = open_services(settings_from_options(data_dir, database_url))
    try:
        value = held_value(matching, services.settings)
        with services.read() as tx:
            found = unrouted_holding(tx, value=value)
        purged = 0
        if found and not dry_run:
            with services.write() as tx:
                purged = purge_unrouted_ids(tx, message_ids=found)
        # A caller's number or address kept for a screen pop (contacts.shared_endpoint): the
        # profiles that held it may have been erased or changed since. Its digests are made
        # in a read (a domain's key may be unwrapped, with KMS), deleted in a short write.
        with services.read() as tx:
            held, unreadable = held_endpoints(tx, value=value)
        with services.read() if dry_run else services.write() as tx:
            endpoints = purge_holding(tx, held, dry_run=dry_run)
    finally:
        services.database.dispose()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "Matching": found,
                    "Purged": purged,
                    "CallerEndpoints": endpoints,
                    "DryRun": dry_run,
                }
            )
        )
        return
    records = f"kept contact record{'' if len(found) == 1 else 's'}"
    callers = f"caller endpoint{'' if endpoints == 1 else 's'} kept for a screen pop"
    if dry_run:
        click.echo(f"--dry-run: would delete {len(found)} {records} holding the value.")
    else:
        click.echo(f"Deleted {purged} of {len(found)} {records} holding the value.")
    for message_id in found:
        click.echo(f"  {message_id}")
    would = "--dry-run: would delete" if dry_run else "Deleted"
    click.echo(f"{would} {endpoints} {callers} that are the value.")
    if unreadable:
        click.echo(
            f"Not looked at (their key cannot be used now): {', '.join(unreadable)}; what they "
            "keep for a screen pop goes within the hour."
        )
