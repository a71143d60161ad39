"""The audit log of the `openprofiles` command (openprofiles.audit, written by
cli_support.audit_commands): one line for each run of a command that changes state or prints
stored personal data — the acting OS user's uid, the command's path, the domain it was given and
how it ended (ok, the error's type, interrupted) — with no other argument's value; none for the
listings of names and counts. Both backends: the commands open the real database."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result
from tests.unit.ingest.conftest import DOMAIN, crm_type, make_domain, put_type

from openprofiles.cli import main
from openprofiles.context import Services
from openprofiles.dlq import service as dlq

AUDIT_LOGGER = "openprofiles.audit"
UID = os.getuid()
USERNAME = "ada.lovelace@example.com"
PASSWORD = "a long secret password"
EMAIL = "grace.hopper@example.com"


@pytest.fixture
def audit_lines(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """The audit lines the commands wrote so far (CliRunner runs them in this process)."""
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    return lambda: [r.getMessage() for r in caplog.records if r.name == AUDIT_LOGGER]


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Callable[[], str]:
    """Every log record's text so far, whichever logger wrote it."""
    return lambda: "\n".join(r.getMessage() for r in caplog.records)


def run(services: Services, *args: str, stdin: str | None = None) -> Result:
    storage = ["--data-dir", str(services.settings.data_dir)]
    if services.settings.database_url:
        storage += ["--database-url", services.settings.database_url]
    return CliRunner().invoke(main, [*args, *storage], input=stdin)


def test_every_command_is_either_audited_or_said_not_to_be() -> None:
    """A new command is classified where the others are (cli_support.AUDITED_COMMANDS)."""
    from openprofiles.cli_support import AUDITED_COMMANDS, NOT_AUDITED_COMMANDS, commands_of

    paths = {path for path, _ in commands_of(main)}
    assert paths == set(AUDITED_COMMANDS) | NOT_AUDITED_COMMANDS
    assert not set(AUDITED_COMMANDS) & NOT_AUDITED_COMMANDS
    for path in ("dlq purge", "dlq retry", "dlq show", "instances associate", "flows run"):
        assert path in AUDITED_COMMANDS
    # Every leaf of the tree passes through the one wrapper; none is wrapped twice.
    for path, command in commands_of(main):
        audited_as = getattr(command.callback, "audited_as", None)
        assert audited_as == (path if path in AUDITED_COMMANDS else None)
        assert not hasattr(getattr(command.callback, "__wrapped__", None), "audited_as")


def test_a_state_change_writes_one_line_with_no_argument_value(
    services: Services, audit_lines: Callable[[], list[str]], logged: Callable[[], str]
) -> None:
    created = run(
        services,
        "users",
        "create",
        "--username",
        USERNAME,
        "--role",
        "agent",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert created.exit_code == 0, created.output
    assert audit_lines() == [f"cli users create uid={UID} domain=- result=ok"]

    deleted = run(services, "users", "delete", USERNAME, "--yes")
    assert deleted.exit_code == 0, deleted.output
    assert audit_lines() == [
        f"cli users create uid={UID} domain=- result=ok",
        f"cli users delete uid={UID} domain=- result=ok",
    ]
    # Neither the username, nor the password, nor the database's URL or data dir.
    text = logged()
    for value in (USERNAME, PASSWORD, str(services.settings.data_dir)):
        assert value not in text
    if services.settings.database_url:
        assert services.settings.database_url not in text
    # A command prints from WARNING (logging_setup): the line is not on the terminal, but in
    # the data dir's audit log (tests/cli/test_audit_log_file.py runs the real command).
    assert AUDIT_LOGGER not in created.stderr and AUDIT_LOGGER not in deleted.stderr
    in_file = (services.settings.data_dir / "audit.log").read_text().splitlines()
    assert [line.split(" ", 2)[2] for line in in_file] == audit_lines()
    assert not any(value in "\n".join(in_file) for value in (USERNAME, PASSWORD))


def test_a_failed_command_writes_its_error_type(
    services: Services, audit_lines: Callable[[], list[str]], logged: Callable[[], str]
) -> None:
    make_domain(services)
    unknown_domain = run(services, "dlq", "purge", "--domain", "nosuch", "--all", "--yes")
    assert unknown_domain.exit_code == 1
    unknown_letter = run(services, "dlq", "purge", "--domain", DOMAIN, "0" * 32)
    assert unknown_letter.exit_code == 1
    # A domain given as personal data (an email typed in the wrong place) is not written.
    not_a_name = run(services, "dlq", "purge", "--domain", EMAIL, "--all", "--yes")
    assert not_a_name.exit_code == 1
    # A refusal of the service names its AWS error type, as the API's lines do.
    for _ in range(2):
        again = run(
            services,
            "users",
            "create",
            "--username",
            USERNAME,
            "--role",
            "admin",
            "--password-stdin",
            stdin=PASSWORD,
        )
    assert again.exit_code == 1 and "already exists" in again.output

    assert audit_lines() == [
        f"cli dlq purge uid={UID} domain=nosuch result=failed error=ResourceNotFoundException",
        # Some ids are no dead letter's: named as the API names a missing thing, not by the
        # type of click's exception (a newcomer review).
        f"cli dlq purge uid={UID} domain={DOMAIN} result=failed error=ResourceNotFoundException",
        f"cli dlq purge uid={UID} domain=(not valid) result=failed error=ResourceNotFoundException",
        f"cli users create uid={UID} domain=- result=ok",
        f"cli users create uid={UID} domain=- result=failed error=BadRequestException",
    ]
    assert EMAIL not in logged() and USERNAME not in logged() and PASSWORD not in logged()


def test_a_key_that_is_not_in_the_keyring_is_logged_as_not_found(
    services: Services, audit_lines: Callable[[], list[str]]
) -> None:
    for command in ("disable", "enable"):
        unknown = run(services, "keys", command, "alias/nosuch")
        assert unknown.exit_code == 1, unknown.output
    assert audit_lines() == [
        f"cli keys {command} uid={UID} domain=- result=failed error=ResourceNotFoundException"
        for command in ("disable", "enable")
    ]


def test_printing_stored_personal_data_is_logged(
    services: Services, audit_lines: Callable[[], list[str]], logged: Callable[[], str]
) -> None:
    make_domain(services)
    with services.write() as tx:
        letter = dlq.put(
            tx,
            domain_name=DOMAIN,
            object_type_name="Crm",
            object_json=json.dumps({"id": "7", "email": EMAIL}),
            reason=f"The email {EMAIL} belongs to no profile.",
            category="no_profile",
        )

    shown = run(services, "dlq", "show", "--domain", DOMAIN, letter.message_id)
    assert shown.exit_code == 0 and EMAIL in shown.output
    listed = run(services, "dlq", "list", "--domain", DOMAIN)
    assert listed.exit_code == 0 and EMAIL in listed.output

    assert audit_lines() == [
        f"cli dlq show uid={UID} domain={DOMAIN} result=ok",
        f"cli dlq list uid={UID} domain={DOMAIN} result=ok",
    ]
    assert EMAIL not in logged() and letter.message_id not in logged()


def test_listings_of_names_and_counts_write_none(
    services: Services, audit_lines: Callable[[], list[str]]
) -> None:
    make_domain(services)
    for command in (
        ["credentials", "list"],
        ["keys", "list"],
        ["instances", "list"],
        ["instances", "unrouted"],
        ["merges", "list", "--domain", DOMAIN],
    ):
        result = run(services, *command)
        assert result.exit_code == 0, (command, result.output)
    assert audit_lines() == []


def test_a_run_that_changes_nothing_without_its_flag_writes_none(
    services: Services, audit_lines: Callable[[], list[str]]
) -> None:
    """`domains drop-unreadable` without --confirm only counts; with it, it deletes (here it
    is refused: the domain's key works)."""
    make_domain(services)
    looked = run(services, "domains", "drop-unreadable", DOMAIN)
    assert looked.exit_code == 1, looked.output
    assert audit_lines() == []
    confirmed = run(services, "domains", "drop-unreadable", DOMAIN, "--confirm")
    assert confirmed.exit_code == 1, confirmed.output
    assert audit_lines() == [
        f"cli domains drop-unreadable uid={UID} domain={DOMAIN} result=failed error=DropRefused"
    ]


def test_ctrl_c_during_a_load_is_logged_as_interrupted(
    services: Services,
    audit_lines: Callable[[], list[str]],
    logged: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    """Ctrl-C after the first batch (the interrupt raised where a signal would raise it, as
    the records are read): the loader exits 130, and its line says so."""
    from openprofiles.ingest import bulk

    make_domain(services)
    put_type(services, "Crm", crm_type())
    file = tmp_path / "customers.jsonl"
    file.write_text("".join(json.dumps({"id": str(i), "email": EMAIL}) + "\n" for i in range(6)))
    real = bulk.ingest_records

    def interrupted_after_two(*args: Any, records: Any, **kwargs: Any) -> Any:
        def read() -> Iterator[Any]:
            for number, record in enumerate(records):
                if number == 2:
                    raise KeyboardInterrupt
                yield record

        return real(*args, records=read(), **kwargs)

    monkeypatch.setattr(bulk, "ingest_records", interrupted_after_two)
    result = run(
        services,
        "ingest",
        "objects",
        str(file),
        "--domain",
        DOMAIN,
        "--object-type",
        "Crm",
        "--batch-size",
        "2",
    )
    assert result.exit_code == 130, result.output
    assert audit_lines() == [f"cli ingest objects uid={UID} domain={DOMAIN} result=interrupted"]
    assert str(file) not in logged() and EMAIL not in logged()
