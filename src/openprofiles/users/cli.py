"""The `openprofiles users` commands: web users who sign in to the admin and agent pages."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from openprofiles.cli_support import open_services, settings_from_options, storage_options


@click.group()
def users() -> None:
    """Web users: administrators and agents who sign in to the web pages."""


@users.command("create")
@storage_options
@click.option("--username", required=True)
@click.option("--role", type=click.Choice(["admin", "agent"]), required=True)
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input instead of prompting.",
)
def users_create(
    data_dir: Path | None,
    database_url: str | None,
    username: str,
    role: str,
    password_stdin: bool,
) -> None:
    """Create a web user; the password is prompted for twice (or read from stdin)."""
    from openprofiles.errors import ServiceError
    from openprofiles.users.service import create_user

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    services = open_services(settings_from_options(data_dir, database_url))
    try:
        with services.write() as tx:
            user = create_user(tx, username=username, password=password, role=role)
    except ServiceError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"Created the {user.role} user {user.username}.")


@users.command("list")
@storage_options
def users_list(data_dir: Path | None, database_url: str | None) -> None:
    """List web users and their roles."""
    from openprofiles.users.service import list_users

    services = open_services(settings_from_options(data_dir, database_url))
    with services.read() as tx:
        for user in list_users(tx):
            click.echo(f"{user.username:<32} {user.role:<6} {user.created_at:%Y-%m-%d %H:%M}")
