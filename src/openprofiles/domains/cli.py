"""`openprofiles domains drop-unreadable NAME`: delete a domain whose key is gone for good, at
whatever schema revision the database is at, so that an upgrade that needs the domain's key can
go on without it (domains.unreadable says why and how)."""

from __future__ import annotations

from pathlib import Path

import click

from openprofiles.cli_support import (
    Refused,
    settings_from_options,
    shown_database,
    storage_options,
)


@click.group()
def domains() -> None:
    """Domains, beyond what the API does with them."""


@domains.command("drop-unreadable")
@storage_options
@click.option(
    "--confirm",
    is_flag=True,
    help="Delete it. Without it, only say what would be deleted.",
)
@click.option(
    "--key-lost",
    metavar="KEY",
    default=None,
    help="The key you know to be lost for good. A local key (its ARN, id or alias/NAME): no "
    "copy of keyring.json holding it (or the version of it the domain's data key needs) is "
    "left, on any server or in any backup; no keyring can prove that, since an older copy "
    "lacks every key made or rotated after it. A KMS alias that is gone: the ARN of the key it "
    "named, which must be the one the server saw it name, and which KMS must answer does not "
    "exist.",
)
@click.argument("name")
def drop_unreadable_command(
    data_dir: Path | None, database_url: str | None, name: str, confirm: bool, key_lost: str | None
) -> None:
    """Delete the domain NAME and every row of its data, when its key is gone for good (a KMS
    key deleted; a local key missing from the data dir's keyring, which --key-lost names);
    without --confirm, say what would be deleted.

    For an upgrade that stops because a domain's key cannot be used, when the key is gone for
    good: it works before the upgrade, at the schema the database is at. It cannot be undone,
    though without its key the domain's data cannot be read anyway. A domain whose key works is
    not dropped (DeleteDomain deletes it), nor one whose key is disabled, pending deletion,
    cannot be reached for now, or cannot be used with this shell's AWS set-up, nor any domain
    when the keyring cannot be proven to be the database's: the refusal says what to do."""
    from sqlalchemy.exc import SQLAlchemyError

    from openprofiles.crypto.errors import KeyringError
    from openprofiles.domains.unreadable import DropRefused, drop_unreadable

    settings = settings_from_options(data_dir, database_url)
    click.echo(f"Database: {shown_database(settings)}")
    try:
        dropped = drop_unreadable(settings, name, confirm=confirm, key_lost=key_lost)
    except (DropRefused, KeyringError) as exc:
        why = "DropRefused" if isinstance(exc, DropRefused) else "KeyringUnusable"
        raise Refused(str(exc), error=why) from None
    except SQLAlchemyError as exc:
        # The driver's first line says what failed; the statements carry no customer's value.
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise Refused(f"The domain {name} was not dropped: {reason}", error="DropFailed") from None
    click.echo(f"The key of domain {name} cannot be used: {dropped.problem}")
    total = sum(dropped.rows.values())
    tables = ", ".join(f"{table} {count}" for table, count in sorted(dropped.rows.items()))
    held = f"{total} row(s) of data ({tables})" if total else "no row of data"
    if dropped.deleted:
        click.echo(
            f"Dropped the domain {name} and its {held}. Start OpenProfiles again: an upgrade "
            "that stopped for the domain's key goes on without it."
        )
    else:
        click.echo(
            f"The domain {name} holds {held}. Nothing was deleted: give --confirm to delete the "
            "domain and all of it, which cannot be undone."
        )
