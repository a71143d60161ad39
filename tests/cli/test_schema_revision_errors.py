"""A database the schema migrations cannot bring up to date stops every command, `serve`
included, with Alembic's reason, not a traceback; and `openprofiles --version` says which version
is installed.

An operator review: a build run on a database migrated by a newer build (alembic_version 0025,
which it does not have) crashed with a traceback ending `alembic.util.exc.CommandError: (message
withheld: it may carry personal data)`; the reason ("Can't locate revision") was withheld, though
Alembic's messages name only revisions. On SQLite (the data dir's database) and PostgreSQL."""

from __future__ import annotations

import re
from importlib.metadata import version

from click.testing import CliRunner
from sqlalchemy import text
from tests.support.ports import free_port

from openprofiles.app import build_services
from openprofiles.cli import main
from openprofiles.settings import Settings
from openprofiles.store.migrate import head_revision


def _options(settings: Settings) -> list[str]:
    options = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        options += ["--database-url", settings.database_url]
    return options


def _set_versions(settings: Settings, *versions: str) -> None:
    """The database migrated as this build does, then its version table set to `versions`."""
    services = build_services(settings)
    try:
        with services.database.write() as conn:
            conn.execute(text("DELETE FROM alembic_version"))
            for revision in versions:
                conn.execute(
                    text("INSERT INTO alembic_version (version_num) VALUES (:revision)"),
                    {"revision": revision},
                )
    finally:
        services.database.dispose()


def test_a_database_upgraded_by_a_newer_version_is_named_with_its_revision(
    settings: Settings,
) -> None:
    _set_versions(settings, "9999")
    expected = (
        "is at schema revision 9999, which this version of OpenProfiles "
        f"({version('openprofiles')}, database schema up to {head_revision()}) does not know: "
        "a newer version upgraded it. Run that version, or restore the backup taken before the "
        "upgrade."
    )
    runner = CliRunner()
    for command in (
        ["credentials", "list"],
        ["users", "list"],
        ["serve", "--port", str(free_port())],
    ):
        result = runner.invoke(main, [*command, *_options(settings)])
        assert result.exit_code == 1, result.output
        assert expected in result.output, result.output
        assert "Traceback" not in result.output and "withheld" not in result.output
        assert "listening" not in result.output


def test_other_alembic_errors_are_said_with_alembic_s_message(settings: Settings) -> None:
    """What two processes upgrading one database at once can leave Alembic with (here: two
    rows, one an ancestor of the other) is said, not withheld behind a traceback."""
    _set_versions(settings, "0023", "0024")
    result = CliRunner().invoke(main, ["credentials", "list", *_options(settings)])
    assert result.exit_code == 1, result.output
    assert "Cannot bring the schema of the database" in result.output
    assert "Requested revision 0024 overlaps with other requested revisions 0023" in (result.output)
    assert "Traceback" not in result.output and "withheld" not in result.output


def test_version_option_prints_the_installed_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0, result.output
    # With the newest schema it upgrades to: two builds of one version differ by it.
    assert result.output.strip() == (
        f"openprofiles, version {version('openprofiles')} (database schema {head_revision()})"
    )
    assert re.fullmatch(r"\d{4}", head_revision())
