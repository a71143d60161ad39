"""The `openprofiles` command: serve, credentials and keys here; the feature packages' groups
(users, dlq, domains, ingest, instances, flows, connectors, merges, matches) are attached below.

Every command takes --data-dir and --database-url (or OPENPROFILES_DATA_DIR /
OPENPROFILES_DATABASE_URL); the embedded SQLite database in the data dir is the default. Only
`serve` makes a new installation; the others refuse a data dir or database that holds none
(cli_support.require_installation). The commands that change state or print stored personal
data write an audit line when they end (cli_support.AUDITED_COMMANDS, openprofiles.audit), to
the audit log's file (OPENPROFILES_AUDIT_LOG, default DATA_DIR/audit.log).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from openprofiles import logging_setup
from openprofiles.cli_support import (
    EscapedErrors,
    Refused,
    audit_commands,
    chosen_scope,
    require_installation,
    scope_options,
    services_open,
    settings_from_options,
    storage_options,
    storage_options_given,
    text_options_utf8,
    warn_about_unknown_variables,
)
from openprofiles.connectors.cli import connectors
from openprofiles.contacts.cli import contact_records
from openprofiles.dlq.cli import dlq
from openprofiles.domains.cli import domains
from openprofiles.flows.cli import flows
from openprofiles.identity.cli import matches, merges
from openprofiles.ingest.cli import ingest
from openprofiles.integrations.cli import instances
from openprofiles.settings import MAX_WORKERS
from openprofiles.users.cli import users

if TYPE_CHECKING:
    from openprofiles.context import Services
    from openprofiles.crypto.keyring import Keyring, LocalKey
    from openprofiles.settings import Settings


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """--version: the installed version and the newest database schema it brings a database
    to, which tells two builds of one version apart (and says which build an upgraded database
    needs)."""
    if not value or ctx.resilient_parsing:
        return
    from importlib.metadata import version

    from openprofiles.store.migrate import head_revision

    schema = head_revision()
    click.echo(f"openprofiles, version {version('openprofiles')} (database schema {schema})")
    ctx.exit()


@click.group(cls=EscapedErrors)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and the database schema it upgrades to, and exit.",
)
def main() -> None:
    """OpenProfiles: customer profiles for contact centres, with the Customer Profiles API."""
    # Before anything can log: no exception message or local variable reaches a log line.
    logging_setup.install()
    logging_setup.log_to_stderr()
    warn_about_unknown_variables()


@main.command()
@storage_options
@click.option("--host", default=None, help="Address to bind (default 127.0.0.1).")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Port to listen on (default 8000).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, MAX_WORKERS),
    default=None,
    help=(
        f"Server processes sharing the port, 1 to {MAX_WORKERS} (default 1); one per core for "
        "a busy server."
    ),
)
@click.option(
    "--first-run-admin",
    is_flag=True,
    help=(
        "Create an admin credential when none exists and write it to DATA_DIR/credentials, and "
        "the web user admin, its password written to DATA_DIR/admin-password (never printed)."
    ),
)
def serve(
    data_dir: Path | None,
    database_url: str | None,
    host: str | None,
    port: int | None,
    workers: int | None,
    first_run_admin: bool,
) -> None:
    """Start the API server (and the web pages) after bringing the schema up to date."""
    from openprofiles import serving

    settings = settings_from_options(data_dir, database_url, host=host, port=port, workers=workers)
    # What the server does is logged from INFO (OPENPROFILES_LOG_LEVEL), from the start (the
    # schema, the keyring).
    logging_setup.log_to_stderr(serving=True, level=settings.log_level)
    try:
        # Bound first, so that a port in use stops it before anything is done or said; listened
        # on by `prepare`, before it says so.
        listeners = serving.bind(settings)
    except serving.AddressUnusable as exc:
        raise Refused(str(exc), error="AddressUnusable") from None
    with listeners:
        # The commands its lines name carry the data dir and database it was given: else, run
        # from another directory, they would find no installation.
        storage = storage_options_given(data_dir, database_url)
        for line in serving.prepare(
            settings, listeners, first_run_admin=first_run_admin, storage=storage
        ):
            click.echo(line)
        serving.run(settings, listeners)


@main.group()
def credentials() -> None:
    """API credentials (access keys for boto3, the AWS CLI and the SDKs)."""


_DOMAIN_OPTION_HELP = (
    "A domain the key may act on (repeat for several); the API refuses it every other domain "
    "(AccessDeniedException)."
)


def _scope_json(scope: frozenset[str] | None) -> list[str] | None:
    """A scope as the commands' --json prints it: the domains, or null for every domain."""
    return None if scope is None else sorted(scope)


@credentials.command("create")
@storage_options
@click.option("--role", type=click.Choice(["admin", "agent"]), required=True)
@click.option(
    "--domain",
    "domains",
    multiple=True,
    metavar="NAME",
    help=f"{_DOMAIN_OPTION_HELP} Without it, every domain.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def credentials_create(
    data_dir: Path | None,
    database_url: str | None,
    role: str,
    domains: tuple[str, ...],
    as_json: bool,
) -> None:
    """Create an access key and print its secret (shown only this once)."""
    from openprofiles.auth.credentials import create_credential
    from openprofiles.auth.scope import shown_scope
    from openprofiles.errors import ServiceError

    try:
        with (
            services_open(settings_from_options(data_dir, database_url)) as services,
            services.write() as tx,
        ):
            issued = create_credential(tx, role=role, domains=domains or None)
    except ServiceError as exc:
        raise click.ClickException(exc.message) from exc
    if as_json:
        click.echo(
            json.dumps(
                {
                    "AccessKeyId": issued.access_key_id,
                    "SecretAccessKey": issued.secret_access_key,
                    "Role": issued.role,
                    "Domains": _scope_json(issued.scope),
                }
            )
        )
    else:
        click.echo(f"AccessKeyId:     {issued.access_key_id}")
        click.echo(f"SecretAccessKey: {issued.secret_access_key}")
        click.echo(f"Role:            {issued.role}")
        click.echo(f"Domains:         {shown_scope(issued.scope)}")
        click.echo("The secret is shown only now; store it safely.")


@credentials.command("list")
@storage_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def credentials_list(data_dir: Path | None, database_url: str | None, as_json: bool) -> None:
    """List access key ids, their roles and the domains each may act on (* for every domain;
    never the secrets)."""
    from openprofiles.auth.credentials import list_credentials
    from openprofiles.auth.scope import shown_scope

    with (
        services_open(settings_from_options(data_dir, database_url)) as services,
        services.read() as tx,
    ):
        items = list_credentials(tx)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "AccessKeyId": c.access_key_id,
                        "Role": c.role,
                        "CreatedAt": c.created_at.isoformat(),
                        "Domains": _scope_json(c.scope),
                    }
                    for c in items
                ]
            )
        )
        return
    for c in items:
        click.echo(
            f"{c.access_key_id}  {c.role:<6} {c.created_at:%Y-%m-%d %H:%M}  {shown_scope(c.scope)}"
        )


@credentials.command("scope")
@storage_options
@click.argument("access_key_id")
@scope_options(_DOMAIN_OPTION_HELP, "Let the key act on every domain (no scope).")
def credentials_scope(
    data_dir: Path | None,
    database_url: str | None,
    access_key_id: str,
    domains: tuple[str, ...],
    all_domains: bool,
) -> None:
    """Limit an access key to some domains (--domain, repeated), replacing its scope, or let it
    act on every domain (--all-domains). Running servers apply it within about a second."""
    from openprofiles.auth.credentials import set_credential_scope
    from openprofiles.auth.scope import shown_scope
    from openprofiles.errors import ServiceError

    wanted = chosen_scope(domains, all_domains)
    try:
        with (
            services_open(settings_from_options(data_dir, database_url)) as services,
            services.write() as tx,
        ):
            scope = set_credential_scope(tx, access_key_id=access_key_id, domains=wanted)
    except ServiceError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(
        f"{access_key_id} may act on: {shown_scope(scope)}. Running servers apply it within "
        "about a second."
    )


@credentials.command("delete")
@storage_options
@click.argument("access_key_id")
def credentials_delete(data_dir: Path | None, database_url: str | None, access_key_id: str) -> None:
    """Revoke an access key (running servers refuse it within about a second)."""
    from openprofiles.auth.credentials import delete_credential
    from openprofiles.errors import ServiceError

    try:
        with (
            services_open(settings_from_options(data_dir, database_url)) as services,
            services.write() as tx,
        ):
            delete_credential(tx, access_key_id=access_key_id)
    except ServiceError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"Deleted {access_key_id}. Running servers refuse it within about a second.")


@main.group()
def keys() -> None:
    """Local encryption keys (the `local` key provider's keyring)."""


@keys.command("create")
@storage_options
@click.option("--alias", required=True, help="A name for the key, unique in the keyring.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def keys_create(data_dir: Path | None, database_url: str | None, alias: str, as_json: bool) -> None:
    """Create a local key and print its identifier (usable as DefaultEncryptionKey)."""
    from sqlalchemy.exc import SQLAlchemyError

    from openprofiles.crypto.keyring import Keyring
    from openprofiles.domains.unreadable import record_local_key
    from openprofiles.store.database import Database

    settings = settings_from_options(data_dir, database_url)
    # Into the installation's keyring only: a keyring made here would be no server's.
    require_installation(settings, keyring_only=True)
    # And recorded in its database (domains.unreadable.record_local_key): a copy of keyring.json
    # from before the key is then told from one that lost it. The database is checked first
    # (reached, on PostgreSQL), so that a key is seldom made where it cannot be recorded.
    require_installation(settings)
    keyring = Keyring(settings.keyring_path)
    try:
        key = keyring.create_key(alias)
    except ValueError as exc:
        raise Refused(str(exc), error="AliasUnusable") from exc
    database = Database.from_settings(settings)
    try:
        record_local_key(database, key)
    except SQLAlchemyError as exc:
        # Unrecorded, the key is no worse off than one made before the record: a keyring copy
        # without it is only not shown to be older. The statement's text has no personal data,
        # but its type is enough.
        raise Refused(
            f"Created the local key {key.arn(settings.region, settings.account_id)}, but could "
            f"not record it in the database ({type(exc).__name__}).",
            error="KeyNotRecorded",
        ) from None
    finally:
        database.dispose()
    arn = key.arn(settings.region, settings.account_id)
    if as_json:
        click.echo(json.dumps({"KeyId": key.key_id, "Arn": arn, "Alias": key.alias}))
    else:
        click.echo(arn)
        # Not with --json: a script reads its output (and test runners mix stderr into it).
        _remind_backup(settings)


def _remind_backup(settings: Settings) -> None:
    """Say to back up keyring.json, which changed (docs/operations.md, "Backup and restore"): a
    restored database is unreadable without a keyring holding every key and version made since.
    On stderr, so that stdout stays what scripts read (`keys create`: the key's ARN)."""
    click.echo(
        f"Back up {settings.keyring_path} now, to where the database backups are not: without "
        "a copy holding this key, data under it cannot be read after a restore.",
        err=True,
    )


def _set_key_enabled(
    data_dir: Path | None, database_url: str | None, key: str, enabled: bool, force: bool = False
) -> None:
    from openprofiles.crypto.keyring import DEFAULT_ALIAS, Keyring

    settings = settings_from_options(data_dir, database_url)
    # The keyring only: disabling a key must work while the database is out of reach.
    require_installation(settings, keyring_only=True)
    keyring = Keyring(settings.keyring_path)
    default = keyring.find_by_alias(DEFAULT_ALIAS)
    chosen = keyring.lookup(key)
    if not enabled and not force and default is not None and chosen == default:
        raise Refused(
            f"{key} is the default local key: the server's own secrets (API credentials, web "
            "users' sign-in, page tokens) come from it, so disabling it stops every request "
            "and sign-in, not only the domains under it. Give --force to disable it anyway.",
            error="DefaultKeyNeedsForce",
        )
    try:
        found = keyring.enable(key) if enabled else keyring.disable(key)
    except LookupError as exc:
        _no_such_key(keyring, key, exc)
    state = "enabled" if enabled else "disabled"
    click.echo(f"{found.arn(settings.region, settings.account_id)}  {found.alias}  {state}")


def _no_such_key(keyring: Keyring, key: str, exc: LookupError) -> NoReturn:
    """Stop with the keyring's "There is no key KEY", suggesting alias/KEY when KEY is a key's
    alias given bare: a bare name is read as a key id, never as an alias. Its audit line names
    the error as the API would (ResourceNotFoundException)."""
    from openprofiles.crypto.arns import ALIAS_PREFIX, alias_name
    from openprofiles.errors import NotFound

    message = str(exc)
    if alias_name(key) is None and keyring.find_by_alias(key) is not None:
        message += f" Did you mean {ALIAS_PREFIX}{key}? An alias is given as {ALIAS_PREFIX}NAME."
    raise click.ClickException(message) from NotFound(message)


@keys.command("disable")
@storage_options
@click.option("--force", is_flag=True, help="Disable the default key too (stops every request).")
@click.argument("key")
def keys_disable(data_dir: Path | None, database_url: str | None, key: str, force: bool) -> None:
    """Disable a local key (key id, ARN or alias/NAME): the data of domains under it cannot be
    read until it is enabled again (servers notice within the data-key cache time)."""
    _set_key_enabled(data_dir, database_url, key, enabled=False, force=force)


@keys.command("enable")
@storage_options
@click.argument("key")
def keys_enable(data_dir: Path | None, database_url: str | None, key: str) -> None:
    """Enable a local key again (key id, ARN or alias/NAME)."""
    _set_key_enabled(data_dir, database_url, key, enabled=True)


@keys.command("rotate")
@storage_options
@click.option(
    "--no-rewrap",
    is_flag=True,
    help="Only add the new version to the keyring, pending: it unwraps but wraps nothing, so "
    "keyring.json can be copied to the servers on other machines first; then run --rewrap-only.",
)
@click.option(
    "--rewrap-only",
    is_flag=True,
    help="Make no new version: activate a pending one (from --no-rewrap) and re-wrap the "
    "domains still under an older one, or wrapped before versions (without a fingerprint); "
    "also finishes an interrupted rotation.",
)
@click.argument("key")
def keys_rotate(
    data_dir: Path | None, database_url: str | None, key: str, no_rewrap: bool, rewrap_only: bool
) -> None:
    """Rotate a local key (key id, ARN or alias/NAME): give it new key material, then re-wrap
    under it the data key of every domain under the key, one domain at a time.

    The earlier material is kept (data keys not re-wrapped yet, and those in database backups,
    are unwrapped with it). The domains' data keys stay the same: customer data is not
    re-encrypted. Running servers go on without a restart. Run it again with --rewrap-only if
    it was interrupted. With servers on several machines: --no-rewrap, copy keyring.json to
    every one, then --rewrap-only. AWS KMS keys are rotated by KMS itself (EnableKeyRotation).
    """
    from openprofiles.crypto.arns import is_aws_kms_arn
    from openprofiles.crypto.keyring import Keyring
    from openprofiles.domains.unreadable import record_local_key

    if no_rewrap and rewrap_only:
        raise click.UsageError("Give --no-rewrap or --rewrap-only, not both.")
    if is_aws_kms_arn(key):
        raise Refused(
            f"{key} is an AWS KMS key: AWS KMS rotates its own key material (turn on automatic "
            "rotation with EnableKeyRotation, or use RotateKeyOnDemand) and unwraps data keys "
            "wrapped under earlier material itself, so nothing needs re-wrapping. `openprofiles "
            "keys rotate` is for local keys.",
            error="NotALocalKey",
        )
    settings = settings_from_options(data_dir, database_url)
    # What a command it says to run next must be given to work on this installation.
    storage = storage_options_given(data_dir, database_url)
    if no_rewrap:
        require_installation(settings, keyring_only=True)
        # Pending: until --rewrap-only activates it, no server wraps a data key under it, so a
        # server whose keyring.json has not been copied yet still opens every domain.
        _rotate_local_key(Keyring(settings.keyring_path), key, settings, activate=False)
        click.echo(
            "It is pending: servers unwrap with it but wrap nothing under it yet, and domains' "
            "data keys were not re-wrapped. Copy keyring.json to every server, then run "
            f"`openprofiles keys rotate{storage} {key} --rewrap-only` to activate it and re-wrap "
            "them."
        )
        _remind_backup(settings)
        return
    # The database is opened (and checked against the keyring) before the keyring changes.
    with services_open(settings) as services:
        keyring = services.keys.resolver.keyring
        if rewrap_only:
            target = _activate_local_key(keyring, key, settings)
        else:
            target = _rotate_local_key(keyring, key, settings, activate=True)
        try:
            # Its versions, recorded: a keyring copy with fewer is older than the database
            # (domains.unreadable.record_local_key).
            record_local_key(services.database, target)
            _rewrap_domains(
                services, target, f"openprofiles keys rotate{storage} {key} --rewrap-only"
            )
        finally:
            if not rewrap_only:
                # The keyring holds the new version from here on, whether or not the re-wrap
                # that follows stops partway (its --rewrap-only makes no new version, so it
                # would never say it). (--rewrap-only: the keyring's material is what it was.)
                _remind_backup(settings)


def _rotate_local_key(
    keyring: Keyring, key: str, settings: Settings, *, activate: bool
) -> LocalKey:
    try:
        rotated = keyring.rotate(key, activate=activate)
    except LookupError as exc:
        _no_such_key(keyring, key, exc)
    except ValueError as exc:
        raise Refused(str(exc), error="KeyNotRotatable") from None
    newest = rotated.versions[-1].number
    click.echo(
        f"Rotated {rotated.arn(settings.region, settings.account_id)} ({rotated.alias}) to "
        f"version {newest}; the earlier versions are kept."
    )
    return rotated


def _activate_local_key(keyring: Keyring, key: str, settings: Settings) -> LocalKey:
    """The key with its pending version (if any) made the one new wraps use, saying so."""
    try:
        pending = keyring.lookup(key)
        activated = keyring.activate(key)
    except LookupError as exc:
        _no_such_key(keyring, key, exc)
    if pending is not None and pending.pending is not None:
        click.echo(
            f"Activated version {activated.current.number} of "
            f"{activated.arn(settings.region, settings.account_id)} ({activated.alias}): new "
            "data keys are wrapped under it."
        )
    return activated


def _rewrap_domains(services: Services, target: LocalKey, finish: str) -> None:
    """Re-wrap the data keys of the domains under `target`, saying how many it re-wrapped;
    `finish` is the command that finishes after a stop."""
    from sqlalchemy.exc import SQLAlchemyError

    from openprofiles.crypto.errors import KeyUnusable
    from openprofiles.domains.key_rotation import domains_under_key, rewrap_domain
    from openprofiles.errors import ServiceError

    names = domains_under_key(services, target)
    done = 0
    try:
        for name in names:
            done += rewrap_domain(services, name, target)
    except (KeyUnusable, ServiceError, SQLAlchemyError) as exc:
        # A database error's text may quote the statement's parameters: its type only.
        reason = exc.message if isinstance(exc, KeyUnusable | ServiceError) else type(exc).__name__
        raise Refused(
            f"Re-wrapping stopped after {done} domain(s): {reason} Run `{finish}` to finish; it "
            "makes no new version.",
            error="RewrapStopped",
        ) from None
    click.echo(
        f"Re-wrapped the data keys of {done} domain(s) under version {target.current.number} "
        f"({len(names) - done} already were). Customer data was not re-encrypted: each domain "
        "keeps its data key."
    )


@keys.command("list")
@storage_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def keys_list(data_dir: Path | None, database_url: str | None, as_json: bool) -> None:
    """List local keys (identifiers, aliases, versions; never key material). A key's active
    version and its date show when it was last rotated; a version added by `keys rotate
    --no-rewrap` and not activated yet is shown as pending. Each version's fingerprint (the one
    wrapped data keys record) tells whether two hosts' keyrings hold the same material."""
    from openprofiles.crypto.keyring import Keyring, format_timestamp, material_state

    settings = settings_from_options(data_dir, database_url)
    # An empty list for a data dir with no keyring would look like an installation's.
    require_installation(settings, keyring_only=True)
    items: list[dict[str, Any]] = [
        {
            "KeyId": k.key_id,
            "Arn": k.arn(settings.region, settings.account_id),
            "Alias": k.alias,
            "Enabled": k.enabled,
            "Versions": len(k.versions),
            "ActiveVersion": k.current.number,
            "CurrentVersionCreatedAt": format_timestamp(k.current.created_at),
            "PendingVersion": k.pending.number if k.pending else None,
            "KeyVersions": [
                {
                    "Version": v.number,
                    "CreatedAt": format_timestamp(v.created_at),
                    "Fingerprint": v.fingerprint.hex(),
                    "KeyMaterialState": material_state(k, v),
                }
                for v in k.versions
            ],
        }
        for k in Keyring(settings.keyring_path).list_keys()
    ]
    if as_json:
        click.echo(json.dumps(items))
        return
    for item in items:
        state = "" if item["Enabled"] else "  (disabled)"
        if item["PendingVersion"] is not None:
            state += (
                f"  (version {item['PendingVersion']} pending: activate it with "
                "`keys rotate --rewrap-only`)"
            )
        click.echo(
            f"{item['Arn']}  {item['Alias']}  version {item['ActiveVersion']} since "
            f"{item['CurrentVersionCreatedAt']}{state}"
        )
        for version in item["KeyVersions"]:
            shown_state = _SHOWN_MATERIAL_STATES[version["KeyMaterialState"]]
            click.echo(
                f"  version {version['Version']}  fingerprint {version['Fingerprint']}  "
                f"{shown_state}  made {version['CreatedAt']}"
            )


# How `keys list` names a version's state (KeyMaterialState, as AWS KMS's ListKeyRotations).
_SHOWN_MATERIAL_STATES = {
    "CURRENT": "active",
    "PENDING_ROTATION": "pending",
    "NON_CURRENT": "earlier",
}


# Feature packages define their command groups next to their services.
for group in (users, dlq, domains, ingest, instances, flows, connectors, merges, matches):
    main.add_command(group)
ingest.add_command(contact_records)
# Once the tree is whole: the commands that change state or print personal data write their
# audit line (openprofiles.audit), whichever group they are in.
audit_commands(main)
# Every name or id given as text reaches the store as it is: one that is not UTF-8 is refused.
text_options_utf8(main)

if __name__ == "__main__":
    main()
