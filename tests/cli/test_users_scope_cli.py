"""`openprofiles users create --domain`, `users scope` and `users list` (both backends): an
agent limited to some domains, its scope listed, replaced and lifted; an administrator refused
a scope, and an agent with a scope refused the admin role until it is lifted; each run of
`users scope` audit-logged as the other `users` commands are.

Before, web users had no scope: `users create` had no --domain, there was no `users scope`, and
every agent saw every domain."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator

import pytest
from click.testing import CliRunner, Result

from openprofiles.app import build_services
from openprofiles.cli import main
from openprofiles.context import Services
from openprofiles.settings import Settings
from openprofiles.users import service as users

PASSWORD = "long enough password"
UID = os.getuid()
AUDIT_LOGGER = "openprofiles.audit"


@pytest.fixture
def built(settings: Settings) -> Iterator[Services]:
    services = build_services(settings)
    with services.write() as tx:
        users.create_user(tx, username="boss", password=PASSWORD, role="admin")
    try:
        yield services
    finally:
        services.database.dispose()


@pytest.fixture
def audit_lines(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    return lambda: [r.getMessage() for r in caplog.records if r.name == AUDIT_LOGGER]


def run(settings: Settings, *args: str, stdin: str | None = None) -> Result:
    common = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        common += ["--database-url", settings.database_url]
    return CliRunner().invoke(main, ["users", *args, *common], input=stdin)


def create(settings: Settings, username: str, role: str, *domains: str) -> Result:
    scope = [part for name in domains for part in ("--domain", name)]
    return run(
        settings,
        *("create", "--username", username, "--role", role, "--password-stdin", *scope),
        stdin=PASSWORD + "\n",
    )


def stored_scope(services: Services, username: str) -> frozenset[str] | None:
    with services.read() as tx:
        user = users.find_user(tx, username=username)
    assert user is not None
    return user.domains


def listed(settings: Settings) -> dict[str, tuple[str, str]]:
    """`users list`: each user's (role, DOMAINS column); "-" when the list has no such column
    (no user is limited to domains)."""
    result = run(settings, "list")
    assert result.exit_code == 0, result.output
    header, *rows = result.output.splitlines()
    if header.split()[-1] != "DOMAINS":
        assert header.split() == ["USERNAME", "ROLE", "CREATED", "AUDIT", "NAME"]
        return {row.split()[0]: (row.split()[1], "-") for row in rows}
    for row in rows:
        # The column starts under its heading.
        assert row.index(" " + row.split()[-1], len(row.split()[0])) + 1 == header.index("DOMAINS")
    return {row.split()[0]: (row.split()[1], row.split()[-1]) for row in rows}


def test_an_agent_is_created_with_domains_and_listed_with_them(
    settings: Settings, built: Services
) -> None:
    # With no user limited, the list is as it was before scopes.
    assert listed(settings) == {"boss": ("admin", "-")}
    made = create(settings, "ana", "agent", "sales", "care", "care")
    assert made.exit_code == 0, made.output
    assert "Created the agent user ana; domains: care,sales." in made.output
    everywhere = create(settings, "bob", "agent")
    assert everywhere.exit_code == 0, everywhere.output
    assert "domains: *." in everywhere.output

    assert stored_scope(built, "ana") == frozenset({"care", "sales"})
    assert stored_scope(built, "bob") is None
    assert listed(settings) == {
        "ana": ("agent", "care,sales"),
        "bob": ("agent", "*"),
        "boss": ("admin", "*"),
    }


def test_scope_replaces_and_lifts_an_agents_domains(
    settings: Settings, built: Services, audit_lines: Callable[[], list[str]]
) -> None:
    assert create(settings, "ana", "agent", "sales").exit_code == 0
    replaced = run(settings, "scope", "ana", "--domain", "care", "--domain", "billing")
    assert replaced.exit_code == 0, replaced.output
    assert "ana may see: billing,care. It applies from their next page." in replaced.output
    assert stored_scope(built, "ana") == frozenset({"billing", "care"})

    lifted = run(settings, "scope", "ana", "--all-domains")
    assert lifted.exit_code == 0, lifted.output
    assert "ana may see: *." in lifted.output
    assert stored_scope(built, "ana") is None

    # Neither or both: refused before anything is done.
    for args in ((), ("--domain", "care", "--all-domains")):
        refused = run(settings, "scope", "ana", *args)
        assert refused.exit_code == 2
        assert "Give --domain (one or more) or --all-domains." in refused.output
    assert stored_scope(built, "ana") is None
    # A name that is no domain name's form, and a user that does not exist.
    bad = run(settings, "scope", "ana", "--domain", "no such name!")
    assert bad.exit_code == 1 and "is not a domain name" in bad.output
    nobody = run(settings, "scope", "nobody", "--domain", "care")
    assert nobody.exit_code == 1 and "There is no user named nobody." in nobody.output

    assert [line for line in audit_lines() if line.startswith("cli users scope")] == [
        f"cli users scope uid={UID} domain=- result=ok",
        f"cli users scope uid={UID} domain=- result=ok",
        f"cli users scope uid={UID} domain=- result=failed error=UsageError",
        f"cli users scope uid={UID} domain=- result=failed error=UsageError",
        f"cli users scope uid={UID} domain=- result=failed error=BadRequestException",
        f"cli users scope uid={UID} domain=- result=failed error=ResourceNotFoundException",
    ]


def test_an_administrator_has_no_scope(settings: Settings, built: Services) -> None:
    # Refused before the password is read: nothing is created.
    admin = create(settings, "root2", "admin", "care")
    assert admin.exit_code == 2
    assert "--domain is for agents: administrators see every domain" in admin.output
    with built.read() as tx:
        assert users.find_user(tx, username="root2") is None

    boss = run(settings, "scope", "boss", "--domain", "care")
    assert boss.exit_code == 1
    assert "boss is an administrator, and administrators see every domain" in boss.output
    assert stored_scope(built, "boss") is None


def test_a_scoped_agent_is_made_an_admin_only_once_its_scope_is_lifted(
    settings: Settings, built: Services
) -> None:
    assert create(settings, "ana", "agent", "care").exit_code == 0
    refused = run(settings, "set-role", "ana", "admin")
    assert refused.exit_code == 1
    assert "ana is limited to some domains" in refused.output
    assert "openprofiles users scope ana --all-domains" in refused.output
    assert listed(settings)["ana"] == ("agent", "care")

    assert run(settings, "scope", "ana", "--all-domains").exit_code == 0
    promoted = run(settings, "set-role", "ana", "admin")
    assert promoted.exit_code == 0, promoted.output
    # No user is limited now: the list is as it was before scopes (no DOMAINS column).
    assert listed(settings)["ana"] == ("admin", "-")
    # And an admin made an agent again starts with every domain, to be limited after.
    assert run(settings, "set-role", "ana", "agent").exit_code == 0
    assert run(settings, "scope", "ana", "--domain", "care").exit_code == 0
    assert listed(settings)["ana"] == ("agent", "care")
