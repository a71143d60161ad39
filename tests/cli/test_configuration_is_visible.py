"""A misconfiguration is visible before anything is served: unknown OPENPROFILES_* variables are
warned about with the name probably meant, and `serve` says which data dir and database it
uses, the database's password hidden however it is written.

An operator review: OPENPROFILES_DATABSE_URL (a typo) was ignored without a word, so the server
started on a new, empty SQLite database in the data dir and answered as if all was well; and a
password with an '@' that is not percent-encoded showed its tail (postgresql://bob:***@PW@...)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from tests.support.installation import install
from tests.support.ports import free_port

from openprofiles import serving
from openprofiles import settings as settings_module
from openprofiles.cli import main
from openprofiles.settings import Settings

MISSPELLED = {
    "OPENPROFILES_DATABSE_URL": "postgresql://postgres@127.0.0.1:1/elsewhere",
    "OPENPROFILES_FORWARDED_ALLOWED_IPS": "10.0.0.1",
    "OPENPROFILES_KMS_ENDPOINT": "http://127.0.0.1:1",
}


pytestmark = pytest.mark.usefixtures("logging_as_it_was")


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Warning: ")]


def test_a_command_warns_about_misspelled_variables_with_the_name_meant(tmp_path: Path) -> None:
    install(Settings(data_dir=tmp_path))
    result = CliRunner().invoke(
        main, ["credentials", "list", "--data-dir", str(tmp_path)], env=MISSPELLED
    )
    assert result.exit_code == 0, result.output
    assert _warnings(result.stderr) == [
        "Warning: OPENPROFILES_DATABSE_URL is not a setting of OpenProfiles (did you mean "
        "OPENPROFILES_DATABASE_URL?); it is ignored.",
        "Warning: OPENPROFILES_FORWARDED_ALLOWED_IPS is not a setting of OpenProfiles (did you "
        "mean OPENPROFILES_FORWARDED_ALLOW_IPS?); it is ignored.",
        "Warning: OPENPROFILES_KMS_ENDPOINT is not a setting of OpenProfiles (did you mean "
        "OPENPROFILES_KMS_ENDPOINT_URL?); it is ignored.",
    ]
    # The command's own output is untouched: scripts read stdout.
    assert result.stdout == ""


def test_serve_warns_and_says_which_data_dir_and_database_it_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No server: only what it says.
    monkeypatch.setattr(serving, "run", lambda settings, listeners: None)
    data_dir = tmp_path / "data"
    result = CliRunner().invoke(
        main, ["serve", "--port", str(free_port()), "--data-dir", str(data_dir)], env=MISSPELLED
    )
    assert result.exit_code == 0, result.output
    assert len(_warnings(result.stderr)) == 3
    assert "OPENPROFILES_DATABASE_URL?" in result.stderr
    lines = result.stdout.splitlines()
    assert f"Data dir: {data_dir}" in lines
    assert f"Database: sqlite:///{data_dir}/openprofiles.sqlite3" in lines


def test_serve_names_a_relative_data_dir_s_database_by_its_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`Database: sqlite:///data_r/openprofiles.sqlite3` beside an absolute `Data dir:` did not
    say which directory the file was relative to."""
    monkeypatch.setattr(serving, "run", lambda settings, listeners: None)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["serve", "--port", str(free_port()), "--data-dir", "data_r"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert f"Data dir: {tmp_path / 'data_r'}" in lines
    assert f"Database: sqlite:///{tmp_path / 'data_r'}/openprofiles.sqlite3" in lines
    # A SQLite file --database-url names relatively too, its query kept.
    result = CliRunner().invoke(
        main,
        [
            "serve",
            "--port",
            str(free_port()),
            "--data-dir",
            "data_r",
            "--database-url",
            "sqlite:///o.db?timeout=5",
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"Database: sqlite:///{tmp_path / 'o.db'}?timeout=5" in result.stdout.splitlines()


@pytest.mark.postgres
def test_serve_shows_a_postgresql_url_without_its_password(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serving, "run", lambda settings, listeners: None)
    # The test server trusts local connections, so any password opens it.
    with_password = postgres_url.replace("postgres@", "postgres:s3cr%40t@", 1)
    result = CliRunner().invoke(
        main,
        [
            "serve",
            "--port",
            str(free_port()),
            "--data-dir",
            str(tmp_path / "data"),
            "--database-url",
            with_password,
        ],
    )
    assert result.exit_code == 0, result.output
    shown = with_password.replace("s3cr%40t", "***")
    assert f"Database: {shown}" in result.stdout.splitlines()
    assert "s3cr" not in result.output


@pytest.fixture
def postgres_url(tmp_path: Path) -> Iterator[str]:
    from tests.support.backends import postgres_schema_url

    with postgres_schema_url() as url:
        yield url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # SQLAlchemy ends the password at the first '@' and takes the rest for the host.
        ("postgresql://bob:P@W@127.0.0.1:1/db", "postgresql://bob:***@127.0.0.1:1/db"),
        ("postgresql://bob:a@b@c@127.0.0.1:1/db", "postgresql://bob:***@127.0.0.1:1/db"),
        (
            "postgresql://bob:P@W@127.0.0.1:1/db?sslpassword=x&sslmode=disable",
            "postgresql://bob:***@127.0.0.1:1/db?sslpassword=***&sslmode=disable",
        ),
    ],
)
def test_a_password_with_unencoded_at_signs_is_hidden_whole(url: str, shown: str) -> None:
    """The message that says the database cannot be opened names it the same way, and the
    driver's reason, which quotes what SQLAlchemy took for the host, loses the password's tail
    too."""
    result = CliRunner().invoke(main, ["credentials", "list", "--database-url", url])
    assert result.exit_code == 1, result.output
    assert f"Cannot open the database {shown}:" in result.output
    assert "which a URL writes as %40" in result.output
    for part in ("P@", "W@", "b@", "c@", "sslpassword=x"):
        assert part not in result.output


def test_every_variable_the_settings_read_is_known_and_others_are_named() -> None:
    class Recording(dict[str, str]):
        asked: list[str] = []

        def get(self, key: str, default: Any = None) -> Any:
            self.asked.append(key)
            return super().get(key, default)

    Settings.from_env(Recording())
    known = settings_module.VARIABLES
    assert sorted(Recording.asked) == sorted(
        [*(f"OPENPROFILES_{name}" for name in known), *settings_module.SYSTEM_VARIABLES]
    )
    environment = {
        "OPENPROFILES_DATABASE_URL": "sqlite:///x",
        # Read by the test suite, not by the server.
        "OPENPROFILES_TEST_DATABASE_URL": "postgresql://postgres@127.0.0.1/test",
        "OPENPROFILES_WROKERS": "2",
        "OPENPROFILES_NOTHING_LIKE_ANY": "1",
        "openprofiles_port": "8001",
        "PATH": "/usr/bin",
    }
    assert settings_module.unknown_variables(environment) == [
        ("OPENPROFILES_NOTHING_LIKE_ANY", None),
        ("OPENPROFILES_WROKERS", "OPENPROFILES_WORKERS"),
        ("openprofiles_port", "OPENPROFILES_PORT"),
    ]


def test_a_database_url_that_is_not_one_is_said_so_whatever_is_wrong_with_it() -> None:
    """A port that is not a number failed in SQLAlchemy with a ValueError, withheld. Now a
    usage error, before anything is opened (tests/cli/test_database_url_checked.py)."""
    for url, wrong in (
        ("notaurl", "is not a database URL"),
        ("postgresql://bob:x@[::1:1/db", "has a port that is not a number"),
        ("postgresql://bob@host:port/db", "has a port that is not a number"),
    ):
        result = CliRunner().invoke(main, ["credentials", "list", "--database-url", url])
        assert result.exit_code == 2, result.output
        assert f"Invalid value for '--database-url': the URL {wrong}" in result.output
        assert "Traceback" not in result.output
