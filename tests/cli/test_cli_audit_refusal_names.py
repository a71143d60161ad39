"""A command's refusal is named in its audit line by what it is, never by its message: a
refusal of the command's own (cli_support.Refused: `NoInstallation`, `NotRecords`,
`DefaultKeyNeedsForce`), a service's refusal by its AWS error type, click's own usage errors as
`UsageError`. The message, which may quote a file's contents or path, stays out of the line.

An operator review: every refusal that was a plain click.ClickException was audited as
`error=ClickException`, which told the reader of the trail nothing. Both backends: the commands
open the real database (or find none)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from tests.support.backends import database_url_for
from tests.support.installation import install
from tests.unit.ingest.conftest import DOMAIN, make_domain

from openprofiles.app import build_services
from openprofiles.cli import main
from openprofiles.settings import Settings

UID = os.getuid()
EMAIL = "grace.hopper@example.com"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    with database_url_for(request.param, tmp_path) as url:
        yield Settings(data_dir=tmp_path / "data", database_url=url)


def _run(settings: Settings, *args: str) -> Result:
    storage = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        storage += ["--database-url", settings.database_url]
    return CliRunner().invoke(main, [*args, *storage])


def _audit_file(settings: Settings) -> list[str]:
    """The audit texts of the data dir's audit log (time and process id left out)."""
    lines = (settings.data_dir / "audit.log").read_text().splitlines()
    return [line.split(" ", 2)[2] for line in lines]


def test_commands_refused_without_an_installation_name_it(settings: Settings) -> None:
    # The data dir exists (so the audit log can be kept in it), but no database is there: on
    # SQLite no file, on PostgreSQL a schema with none of the tables.
    settings.data_dir.mkdir(mode=0o700)
    refused = _run(settings, "dlq", "purge", "--domain", DOMAIN, "--all", "--yes")
    assert refused.exit_code == 1, refused.output
    assert "no OpenProfiles installation" in refused.output
    assert _audit_file(settings) == [
        f"cli dlq purge uid={UID} domain={DOMAIN} result=failed error=NoInstallation"
    ]


def test_each_refusal_is_named_by_what_it_is_and_quotes_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    install(settings)
    services = build_services(settings)
    try:
        make_domain(services)
    finally:
        services.database.dispose()
    not_records = tmp_path / "contacts.txt"
    not_records.write_text(f"call {EMAIL} back\n")
    records = tmp_path / "records.jsonl"
    records.write_text('{"id": "1"}\n')

    # A file that holds no records: refused by the command, before anything is opened.
    unreadable = _run(
        settings, "ingest", "objects", str(not_records), "--domain", DOMAIN, "--object-type", "T"
    )
    assert unreadable.exit_code == 1, unreadable.output
    # A domain no one made: the service's refusal, its AWS error type.
    unknown = _run(
        settings, "ingest", "objects", str(records), "--domain", "nosuch", "--object-type", "T"
    )
    assert unknown.exit_code == 1 and "nosuch" in unknown.output, unknown.output
    # The default local key, whose disabling stops everything, without --force.
    default_key = _run(settings, "keys", "disable", "alias/openprofiles-default")
    assert default_key.exit_code == 1 and "--force" in default_key.output, default_key.output
    # A command line that does not hold together: click's own usage error (exit status 2).
    usage = _run(settings, "dlq", "purge", "--domain", DOMAIN, "--dry-run")
    assert usage.exit_code == 2, usage.output

    lines = _audit_file(settings)
    assert lines == [
        f"cli ingest objects uid={UID} domain={DOMAIN} result=failed error=NotRecords",
        f"cli ingest objects uid={UID} domain=nosuch result=failed error=ResourceNotFoundException",
        f"cli keys disable uid={UID} domain=- result=failed error=DefaultKeyNeedsForce",
        f"cli dlq purge uid={UID} domain={DOMAIN} result=failed error=UsageError",
    ]
    text = "\n".join(lines)
    assert EMAIL not in text and str(tmp_path) not in text
