"""What every `openprofiles` subcommand shares: the storage options and opening the services.

Feature packages define their command groups next to their services (e.g. dlq/cli.py) and
build on these helpers; cli.py assembles the groups into the `openprofiles` command.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from openprofiles.settings import Settings

if TYPE_CHECKING:
    from openprofiles.context import Services

F = TypeVar("F", bound=Callable[..., Any])


def storage_options(command: F) -> F:
    """--data-dir and --database-url, on every command that touches stored state."""
    command = click.option(
        "--database-url",
        default=None,
        help="postgresql://... to use PostgreSQL (default: SQLite in the data dir).",
    )(command)
    command = click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Where the SQLite database and the local keyring live (default: .data).",
    )(command)
    return command


def settings_from_options(data_dir: Path | None, database_url: str | None, **more: Any) -> Settings:
    """The environment's settings with the command line's options on top; a setting that is
    not valid stops the command with its message (not a traceback whose message the logs
    withhold)."""
    try:
        return Settings.from_env().with_overrides(
            data_dir=data_dir, database_url=database_url, **more
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def open_services(settings: Settings) -> Services:
    """The application's services (database brought up to date, key manager) for a command."""
    from openprofiles.app import build_services

    return build_services(settings)
