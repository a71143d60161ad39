"""Only `serve` makes an installation; every other command refuses a data dir or database that
holds none, names what it looked at and how to point at the right one, and creates nothing.

A newcomer review: `cd /somewhere; openprofiles credentials create --role admin` exited 0 and
printed a working-looking access key, sealed in a new .data/ (keyring and SQLite database) that
no server used; `users create`, `dlq list`, `keys create` and others did the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, inspect
from tests.support.installation import install

from openprofiles.cli import main
from openprofiles.settings import Settings

# Every kind of command: API credentials, web users, keys (keyring only), dead letters,
# instances, merges, both file loaders.
COMMANDS = [
    ["credentials", "create", "--role", "admin"],
    ["credentials", "list"],
    ["users", "create", "--username", "ana", "--role", "admin", "--password-stdin"],
    ["users", "list"],
    ["keys", "create", "--alias", "billing"],
    ["keys", "list"],
    ["keys", "disable", "alias/billing"],
    ["keys", "rotate", "alias/billing", "--no-rewrap"],
    ["dlq", "list", "--domain", "care"],
    ["instances", "list"],
    ["merges", "list", "--domain", "care"],
    ["ingest", "objects", "records.jsonl", "--domain", "care", "--object-type", "T"],
    ["ingest", "contact-records", "records.jsonl"],
]


def _invoke(args: list[str]) -> Result:
    return CliRunner().invoke(main, args, input="a good password\n")


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_command_in_a_directory_without_an_installation_creates_none(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENPROFILES_DATA_DIR", raising=False)
    monkeypatch.delenv("OPENPROFILES_DATABASE_URL", raising=False)
    (tmp_path / "records.jsonl").write_text(json.dumps({"ContactId": "c1"}) + "\n")

    result = _invoke(command)

    assert result.exit_code == 1, result.output
    message = " ".join(result.output.split())
    assert f"There is no OpenProfiles installation in the data dir {tmp_path / '.data'}" in message
    assert "(the default: .data in the current directory)" in message
    assert "--data-dir DIR or OPENPROFILES_DATA_DIR" in message
    assert "--database-url or OPENPROFILES_DATABASE_URL" in message
    # The usual way here on a deployment: `sudo -u openprofiles openprofiles ...`, whose sudo
    # dropped the settings file's variables. The docs' wrapper reads that file.
    assert "its wrapper `openprofiles-admin ...` reads (`sudo -u USER openprofiles" in message
    assert "Traceback" not in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["records.jsonl"]


def test_a_data_dir_given_that_holds_no_installation_is_named_and_left_alone(
    tmp_path: Path,
) -> None:
    elsewhere = tmp_path / "not-the-server's"
    result = _invoke(["credentials", "create", "--role", "admin", "--data-dir", str(elsewhere)])
    assert result.exit_code == 1, result.output
    message = " ".join(result.output.split())
    assert f"in the data dir {elsewhere}:" in message
    assert f"{elsewhere / 'openprofiles.sqlite3'} does not exist" in message
    assert "(the default" not in message
    assert not elsewhere.exists()


def test_an_empty_database_is_refused_not_given_a_schema(settings: Settings) -> None:
    """SQLite: no database file in the data dir; PostgreSQL: a database (here a schema) that
    holds no OpenProfiles tables, with or without the installation's keyring."""
    options = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        options += ["--database-url", settings.database_url]

    result = _invoke(["credentials", "create", "--role", "admin", *options])

    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    message = " ".join(result.output.split())
    if settings.database_url:
        assert "holds no OpenProfiles installation (none of its tables)" in message
        assert "secret" not in message
        engine = create_engine(
            settings.database_url.replace("postgresql://", "postgresql+psycopg://")
        )
        try:
            with engine.connect() as conn:
                assert inspect(conn).get_table_names() == []
        finally:
            engine.dispose()
    else:
        assert "There is no OpenProfiles installation in the data dir" in message
    assert not settings.data_dir.exists()


def test_a_database_without_its_keyring_is_refused_naming_both(settings: Settings) -> None:
    """The database is the server's, the data dir is not (or lost its keyring): a keyring made
    here would open none of the database's data."""
    install(settings)
    settings.keyring_path.unlink()
    options = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        options += ["--database-url", settings.database_url]

    result = _invoke(["users", "list", *options])

    assert result.exit_code == 1, result.output
    message = " ".join(result.output.split())
    assert f"The keyring {settings.keyring_path} does not exist, but the database" in message
    assert "copy keyring.json from it" in message
    assert not settings.keyring_path.exists()


def test_the_commands_work_on_the_installation_serve_made(settings: Settings) -> None:
    install(settings)
    options = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        options += ["--database-url", settings.database_url]
    made = _invoke(["credentials", "create", "--role", "admin", "--json", *options])
    assert made.exit_code == 0, made.output
    listed = _invoke(["credentials", "list", "--json", *options])
    assert listed.exit_code == 0, listed.output
    assert [c["AccessKeyId"] for c in json.loads(listed.output)] == [
        json.loads(made.output)["AccessKeyId"]
    ]


def test_a_data_dir_given_as_the_default_one_is_not_called_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--data-dir .data` names the default directory, but the operator chose it: the message
    says nothing of a default. Whether it was given is the settings' to say (Settings is the
    one reader of the environment); the message used to look at OPENPROFILES_DATA_DIR itself,
    and so missed an option given on the command line."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENPROFILES_DATA_DIR", raising=False)
    monkeypatch.delenv("OPENPROFILES_DATABASE_URL", raising=False)
    result = _invoke(["credentials", "list", "--data-dir", ".data"])
    assert result.exit_code == 1, result.output
    message = " ".join(result.output.split())
    assert f"There is no OpenProfiles installation in the data dir {tmp_path / '.data'}" in message
    assert "(the default" not in message
    # Given through the variable, it is not the default either.
    monkeypatch.setenv("OPENPROFILES_DATA_DIR", ".data")
    assert "(the default" not in " ".join(_invoke(["credentials", "list"]).output.split())
