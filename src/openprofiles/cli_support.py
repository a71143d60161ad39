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
    """The application's services (database brought up to date, key manager) for a command; a
    data dir, database or keyring that cannot be used stops it with a message saying which and
    why (a traceback's message would be withheld by the logging rules)."""
    from sqlalchemy import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from openprofiles.app import build_services
    from openprofiles.crypto.errors import KeyringError, KeyUnusable

    try:
        return build_services(settings)
    except (KeyringError, KeyUnusable) as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(
            f"Cannot use {exc.filename or settings.data_dir}: {exc.strerror or type(exc).__name__}."
        ) from None
    except (SQLAlchemyError, ModuleNotFoundError) as exc:
        try:
            where = _shown_url(make_url(settings.effective_database_url))
        except SQLAlchemyError:
            where = "(the database URL is not one: dialect://user@host/database)"
        if isinstance(exc, ModuleNotFoundError):
            reason = f"its driver is not installed (no module {exc.name})"
        else:
            # At start no statement carries data: the driver's first line says what failed.
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise click.ClickException(f"Cannot open the database {where}: {reason}") from None


# Query parameters of a database URL that carry a secret (libpq's password and sslpassword,
# drivers' tokens and keys); matched by part of the name, so a new one is hidden too.
_SECRET_QUERY_WORDS = ("pass", "secret", "token", "key")


def _shown_url(url: Any) -> str:
    """A database URL fit to print: its password hidden, in the user part or the query."""
    from urllib.parse import urlencode

    shown = url.set(query={}).render_as_string(hide_password=True)
    pairs = [
        (name, "***" if any(word in name.lower() for word in _SECRET_QUERY_WORDS) else value)
        for name, values in url.query.items()
        for value in (values if isinstance(values, tuple) else (values,))
    ]
    return f"{shown}?{urlencode(pairs, safe='*')}" if pairs else str(shown)
