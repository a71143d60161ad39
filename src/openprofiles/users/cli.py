"""The `openprofiles users` commands: web users who sign in to the admin and agent pages.

A password is never an argument (argv shows in `ps` and the shell's history): it is prompted
for, without echo, or read from the first line of standard input.

An agent may be limited to some domains (`create --domain NAME`, `scope`), as an API key may be
(`credentials create --domain`, `credentials scope`): its agent pages then offer and open only
those domains' customers (users.service)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from openprofiles.cli_support import (
    chosen_scope,
    scope_options,
    services_open,
    settings_from_options,
    storage_options,
)

if TYPE_CHECKING:
    from openprofiles.context import Tx

T = TypeVar("T")


@click.group()
def users() -> None:
    """Web users: administrators and agents who sign in to the web pages."""


_DOMAIN_OPTION_HELP = (
    "A domain whose customers the agent may see (repeat for several); the agent pages answer "
    "every other domain as one that does not exist. Agents only: administrators see every "
    "domain."
)


def _shown_scope(domains: frozenset[str] | None) -> str:
    """A user's scope as the commands print it (* for every domain, as `credentials list`)."""
    from openprofiles.auth.scope import shown_scope

    return shown_scope(domains)


PASSWORD_STDIN = click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input instead of prompting.",
)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


def _write(data_dir: Path | None, database_url: str | None, work: Callable[[Tx], T]) -> T:
    """`work` in one write transaction; a service error becomes the command's error."""
    from openprofiles.errors import ServiceError

    try:
        with (
            services_open(settings_from_options(data_dir, database_url)) as services,
            services.write() as tx,
        ):
            return work(tx)
    except ServiceError as exc:
        raise click.ClickException(exc.message) from exc


@users.command("create")
@storage_options
@click.option("--username", required=True)
@click.option("--role", type=click.Choice(["admin", "agent"]), required=True)
@click.option(
    "--domain",
    "domains",
    multiple=True,
    metavar="NAME",
    help=f"{_DOMAIN_OPTION_HELP} Without it, every domain.",
)
@PASSWORD_STDIN
def users_create(
    data_dir: Path | None,
    database_url: str | None,
    username: str,
    role: str,
    domains: tuple[str, ...],
    password_stdin: bool,
) -> None:
    """Create a web user; the password is prompted for twice (or read from stdin)."""
    from openprofiles.users.service import create_user

    if domains and role == "admin":
        # Before the password is asked for: it would be typed twice for nothing.
        raise click.UsageError(
            "--domain is for agents: administrators see every domain (they manage the users, "
            "their own scope included). Leave --domain out, or use --role agent."
        )
    password = _read_password(password_stdin)
    user = _write(
        data_dir,
        database_url,
        lambda tx: create_user(
            tx, username=username, password=password, role=role, domains=domains or None
        ),
    )
    click.echo(
        f"Created the {user.role} user {user.username}; domains: {_shown_scope(user.domains)}."
    )


@users.command("list")
@storage_options
def users_list(data_dir: Path | None, database_url: str | None) -> None:
    """List web users, their roles, the names the audit log gives them and, once some user is
    limited to domains, the domains each may see (* for every domain)."""
    from openprofiles.users.service import audit_name, list_users

    with (
        services_open(settings_from_options(data_dir, database_url)) as services,
        services.read() as tx,
    ):
        listed = list_users(tx)
        cipher = services.keys.system_cipher()
        if not listed:
            click.echo("There are no web users.")
            return
        # The DOMAINS column only once some user is limited to domains: until then every user
        # sees every domain, and the list (which scripts read) stays as it was.
        scoped = any(user.domains is not None for user in listed)
        # A header: the audit name, a digest, means nothing to a reader without one.
        header = f"{'USERNAME':<32} {'ROLE':<6} {'CREATED':<16}  AUDIT NAME"
        click.echo(f"{header:<76} DOMAINS" if scoped else header)
        for user in listed:
            line = (
                f"{user.username:<32} {user.role:<6} {user.created_at:%Y-%m-%d %H:%M}  "
                f"{audit_name(cipher, user.username)}"
            )
            click.echo(f"{line:<76} {_shown_scope(user.domains)}" if scoped else line)


@users.command("set-password")
@storage_options
@click.argument("username")
@PASSWORD_STDIN
@click.option(
    "--temporary/--no-temporary",
    default=False,
    show_default=True,
    help="The user must choose a password of their own when they next sign in (the web pages "
    "then offer only the password page): for a password you set for someone else.",
)
def users_set_password(
    data_dir: Path | None,
    database_url: str | None,
    username: str,
    password_stdin: bool,
    temporary: bool,
) -> None:
    """Give a web user a new password (prompted for twice, or read from stdin); every session
    of theirs ends. Setting the first run's `admin`'s deletes DATA_DIR/admin-password, which no
    longer opens it."""
    from openprofiles.first_run import ADMIN_PASSWORD_FILE
    from openprofiles.users.service import set_password

    password = _read_password(password_stdin)
    # set_password deletes it after its commit when it no longer opens the account (first_run.
    # retire_first_password); said here when it did.
    first = settings_from_options(data_dir, database_url).data_dir / ADMIN_PASSWORD_FILE
    had_first = first.exists()
    ended = _write(
        data_dir,
        database_url,
        lambda tx: set_password(tx, username=username, password=password, temporary=temporary),
    )
    click.echo(f"Set a new password for {username}; ended {ended} session(s).")
    if temporary:
        click.echo(f"{username} must choose a password of their own at their next sign-in.")
    if had_first and not first.exists():
        click.echo(f"Deleted {first}: the first password it held no longer opens the account.")


@users.command("set-role")
@storage_options
@click.argument("username")
@click.argument("role", type=click.Choice(["admin", "agent"]))
def users_set_role(
    data_dir: Path | None, database_url: str | None, username: str, role: str
) -> None:
    """Make a web user an admin or an agent (never the last admin an agent, nor an agent
    limited to some domains an admin: lift its scope first with `users scope --all-domains`)."""
    from openprofiles.users.service import set_role

    _write(data_dir, database_url, lambda tx: set_role(tx, username=username, role=role))
    click.echo(f"{username} is now an {role}.")


@users.command("scope")
@storage_options
@click.argument("username")
@scope_options(_DOMAIN_OPTION_HELP, "Let the agent see every domain (no scope).")
def users_scope(
    data_dir: Path | None,
    database_url: str | None,
    username: str,
    domains: tuple[str, ...],
    all_domains: bool,
) -> None:
    """Limit an agent to some domains (--domain, repeated), replacing its scope, or let it see
    every domain (--all-domains). It applies from the agent's next page; no new sign-in."""
    from openprofiles.users.service import set_scope

    scope = chosen_scope(domains, all_domains)
    user = _write(
        data_dir, database_url, lambda tx: set_scope(tx, username=username, domains=scope)
    )
    click.echo(
        f"{username} may see: {_shown_scope(user.domains)}. It applies from their next page."
    )


@users.command("delete")
@storage_options
@click.argument("username")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def users_delete(data_dir: Path | None, database_url: str | None, username: str, yes: bool) -> None:
    """Delete a web user and end their sessions at once (never the last admin)."""
    from openprofiles.users.service import delete_user, find_user

    if not yes:
        # Before asking: a name that is no user's (a typo) was asked about, then refused.
        with (
            services_open(settings_from_options(data_dir, database_url)) as services,
            services.read() as tx,
        ):
            found = find_user(tx, username=username)
        if found is None:
            raise click.ClickException(f"There is no user named {username}; nothing was deleted.")
        click.confirm(f"Delete the web user {username} and end their sessions?", abort=True)
    _write(data_dir, database_url, lambda tx: delete_user(tx, username=username))
    click.echo(f"Deleted the user {username}; their sessions have ended.")


@users.command("unlock")
@storage_options
@click.argument("username", required=False)
@click.option("--all", "everything", is_flag=True, help="Forget every count: names and addresses.")
def users_unlock(
    data_dir: Path | None, database_url: str | None, username: str | None, everything: bool
) -> None:
    """End the sign-in locks of USERNAME (failures from every address), or with --all of every
    name and client address: how an administrator locked out by someone guessing gets back in.
    """
    from openprofiles.users.service import unlock_user
    from openprofiles.users.throttle import forget_all

    if everything == (username is not None):
        raise click.UsageError("Give a USERNAME or --all (not both).")
    if username is not None:
        _write(data_dir, database_url, lambda tx: unlock_user(tx, username=username))
        click.echo(f"Forgot the failed sign-ins of {username}; it may sign in again.")
        return
    forgot = _write(data_dir, database_url, forget_all)
    click.echo(f"Forgot every failed sign-in ({forgot} counts and locks).")
