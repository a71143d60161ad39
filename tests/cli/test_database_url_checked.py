"""A database URL that is not one OpenProfiles can use is a usage error (exit status 2) naming
where it came from (--database-url, or OPENPROFILES_DATABASE_URL) and what is wrong with it,
whichever command it is given to, before the command does anything; never quoting the URL,
which may hold a password.

A fuzz run found `keys list --database-url nonsense` listing the keys (exit 0): the URL was
ignored by the commands that need only the keyring, and refused by the others only once they
opened the database (exit 1). An empty --database-url (an unset shell variable, `--database-url
"$PG_URL"`) meant the SQLite database in the data dir: a command then read or wrote another
database than the one meant. OPENPROFILES_DATABASE_URL set but empty is refused the same way
(settings.Settings.from_env says why); unset, it means that SQLite database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from tests.support.installation import install
from tests.support.ports import bound_loopback_socket

from openprofiles.cli import main
from openprofiles.cli_support import commands_of, storage_options
from openprofiles.settings import Settings

PASSWORD = "s3cret-pw"

# What is wrong, and a URL that is wrong that way.
NOT_USABLE = {
    "empty": "",
    "not a URL": "nonsense",
    "blank": "   ",
    "another database system": f"mysql://bob:{PASSWORD}@db.example/profiles",
    "a driver not installed": f"postgresql+asyncpg://bob:{PASSWORD}@db.example/profiles",
    "a port that is not a number": f"postgresql://bob:{PASSWORD}@db.example:port/profiles",
    "a port out of range": f"postgresql://bob:{PASSWORD}@db.example:99999/profiles",
    "an http URL": "http://db.example/profiles",
}

# Every command that takes --database-url (storage_options).
STORAGE_COMMANDS = sorted(
    path
    for path, command in commands_of(main)
    if any(param.name == "database_url" for param in command.params)
)


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another socket listens on: a `serve` that got past its checks (the code before
    them did) stops there, at once, rather than serving."""
    with bound_loopback_socket() as sock:
        yield sock.getsockname()[1]


def _args(command: str, port: int) -> list[str]:
    return [*command.split(), *(["--port", str(port)] if command == "serve" else [])]


def _usage_error(result: Result, name: str) -> str:
    """The message of a click usage error (exit 2) naming `name`, not a crash."""
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    message = " ".join(result.output.split())
    assert name in message, message
    assert PASSWORD not in result.output
    return message


def test_every_storage_command_is_covered() -> None:
    # The keyring's commands among them: they need no database, and ignored the URL.
    assert {"keys list", "keys create", "keys disable", "serve", "dlq list"} <= set(
        STORAGE_COMMANDS
    )


@pytest.mark.parametrize("command", STORAGE_COMMANDS)
@pytest.mark.parametrize("why", sorted(NOT_USABLE))
def test_every_command_refuses_a_database_url_it_cannot_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, busy_port: int, command: str, why: str
) -> None:
    monkeypatch.chdir(tmp_path)  # where an empty URL's SQLite default would be
    args = [*_args(command, busy_port), "--data-dir", str(tmp_path / "data")]
    result = CliRunner().invoke(main, [*args, "--database-url", NOT_USABLE[why]])
    message = _usage_error(result, "Invalid value for '--database-url': the URL ")
    assert "give postgresql://USER@HOST/DATABASE for PostgreSQL or sqlite:///PATH" in message
    assert list(tmp_path.iterdir()) == []  # nothing made, nor any database opened


def test_keys_list_on_an_installation_refuses_a_database_url_that_is_not_one(
    tmp_path: Path,
) -> None:
    """The fuzz run's case: the installation is there, and the keys were listed (exit 0)."""
    install(Settings(data_dir=tmp_path))
    for url, wrong in (("nonsense", "is not a database URL"), ("", "is empty")):
        result = CliRunner().invoke(
            main, ["keys", "list", "--data-dir", str(tmp_path), "--database-url", url]
        )
        message = _usage_error(result, f"Invalid value for '--database-url': the URL {wrong}")
        assert "openprofiles-default" not in message


@pytest.mark.parametrize("command", ["keys list", "credentials list", "serve"])
@pytest.mark.parametrize(("url", "wrong"), [("", "is empty"), ("nonsense", "is not a database")])
def test_the_variable_is_refused_as_the_option_is(
    tmp_path: Path, busy_port: int, command: str, url: str, wrong: str
) -> None:
    """OPENPROFILES_DATABASE_URL="" is not read as unset (the SQLite database in the data dir):
    it was, by every command (exit 0 on an installation); and `keys list` ignored one that was
    not a URL."""
    install(Settings(data_dir=tmp_path))
    result = CliRunner().invoke(
        main,
        [*_args(command, busy_port), "--data-dir", str(tmp_path)],
        env={"OPENPROFILES_DATABASE_URL": url},
    )
    message = _usage_error(result, f"OPENPROFILES_DATABASE_URL {wrong}")
    assert "OPENPROFILES_DATABASE_URL unset" in message


def test_the_variable_unset_means_the_sqlite_database_in_the_data_dir(tmp_path: Path) -> None:
    install(Settings(data_dir=tmp_path))
    result = CliRunner().invoke(
        main,
        ["credentials", "list", "--data-dir", str(tmp_path)],
        env={"OPENPROFILES_DATABASE_URL": None},
    )
    assert result.exit_code == 0, result.output


def test_an_empty_variable_is_refused_under_a_good_option_too(tmp_path: Path) -> None:
    """A good --database-url with an empty variable: the variable is still wrong, and said so,
    as any other variable that is not valid is, whatever the command line gives."""
    install(Settings(data_dir=tmp_path))
    url = f"sqlite:///{tmp_path / 'openprofiles.sqlite3'}"
    result = CliRunner().invoke(
        main,
        ["credentials", "list", "--data-dir", str(tmp_path), "--database-url", url],
        env={"OPENPROFILES_DATABASE_URL": ""},
    )
    _usage_error(result, "OPENPROFILES_DATABASE_URL is empty")
    result = CliRunner().invoke(
        main, ["credentials", "list", "--data-dir", str(tmp_path), "--database-url", url]
    )
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///relative.sqlite3",
        "sqlite:////absolute/path.sqlite3",
        "sqlite+pysqlite:///x.sqlite3",
        "sqlite:///file:x.sqlite3?uri=true&mode=ro",
        "sqlite://",
        "postgresql://bob@db.example/profiles",
        "postgresql://bob:pw@db.example:5432/profiles?sslmode=require",
        "postgresql+psycopg://bob@[::1]:5432/profiles",
        "postgresql:///profiles",
        "postgres://bob@db.example/profiles",
    ],
)
def test_the_urls_of_the_databases_it_runs_on_are_taken(url: str) -> None:
    from openprofiles.settings import database_url_problem

    assert database_url_problem(url) is None
    assert Settings.from_env({"OPENPROFILES_DATABASE_URL": url}).database_url == url

    # The option's check, on its own: no database is opened.
    @click.command()
    @storage_options
    def show(data_dir: Path | None, database_url: str | None) -> None:
        click.echo(database_url)

    result = CliRunner().invoke(show, ["--database-url", url])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{url}\n"
