"""`openprofiles credentials create --domain`, `credentials list` and `credentials scope` (both
backends): a key limited to some domains, its scope listed, changed and lifted, and a change
made by another process reaching a server's credential cache as promptly as a revocation does
(auth.credentials: the cache's check compares the stored scope with the cached one).

Before, `credentials create` had no --domain (every key reached every domain) and there was no
`credentials scope`."""

from __future__ import annotations

import json
import time

import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner
from tests.cli.test_credentials_revoked_everywhere import (
    _Clock,
    _command,
    _list_domains,
    _openprofiles,
    _serving_two_workers,
    _storage,
)
from tests.support.serve import api_client

from openprofiles.app import build_services
from openprofiles.auth.authenticator import Authenticator
from openprofiles.auth.credentials import (
    REVOCATION_CHECK_SECONDS,
    SecretCache,
    create_credential,
    set_credential_scope,
)
from openprofiles.cli import main
from openprofiles.settings import Settings


def _failing(settings: Settings, *args: str) -> str:
    result = CliRunner().invoke(main, [*args, *_storage(settings)])
    assert result.exit_code != 0, result.output
    return result.output


def test_create_list_and_change_a_scope(settings: Settings) -> None:
    build_services(settings).database.dispose()  # the installation
    scoped = json.loads(
        _command(
            settings,
            *("credentials", "create", "--role", "agent", "--json"),
            *("--domain", "sales", "--domain", "care", "--domain", "care"),
        )
    )
    assert scoped["Domains"] == ["care", "sales"]
    unscoped = json.loads(_command(settings, "credentials", "create", "--role", "admin", "--json"))
    assert unscoped["Domains"] is None
    key = scoped["AccessKeyId"]

    def listed() -> dict[str, list[str] | None]:
        items = json.loads(_command(settings, "credentials", "list", "--json"))
        return {item["AccessKeyId"]: item["Domains"] for item in items}

    assert listed() == {key: ["care", "sales"], unscoped["AccessKeyId"]: None}
    lines = _command(settings, "credentials", "list").splitlines()
    assert [line.split()[-1] for line in lines] == ["care,sales", "*"]
    assert scoped["SecretAccessKey"] not in "".join(lines)

    said = _command(settings, "credentials", "scope", key, "--domain", "billing")
    assert said.startswith(f"{key} may act on: billing.")
    assert listed()[key] == ["billing"]
    _command(settings, "credentials", "scope", key, "--all-domains")
    assert listed()[key] is None

    # Refused, changing nothing: neither or both, an unknown key, a name no domain can have.
    assert "--all-domains" in _failing(settings, "credentials", "scope", key)
    _failing(settings, "credentials", "scope", key, "--domain", "a", "--all-domains")
    assert "No credential" in _failing(
        settings, "credentials", "scope", "OPNOSUCHKEY000000000", "--domain", "a"
    )
    assert "not a domain name" in _failing(
        settings, "credentials", "scope", key, "--domain", "no spaces"
    )
    assert "not a domain name" in _failing(
        settings, "credentials", "create", "--role", "agent", "--domain", "x" * 65
    )
    assert listed()[key] is None


def test_scope_is_audited_like_the_other_credentials_commands(settings: Settings) -> None:
    build_services(settings).database.dispose()
    key = json.loads(_command(settings, "credentials", "create", "--role", "agent", "--json"))
    _command(settings, "credentials", "scope", key["AccessKeyId"], "--domain", "care")
    trail = (settings.data_dir / "audit.log").read_text()
    [line] = [line for line in trail.splitlines() if "cli credentials scope " in line]
    assert "result=ok" in line
    assert key["SecretAccessKey"] not in trail


def test_a_scope_changed_by_another_process_reaches_the_cache_at_its_next_check(
    settings: Settings,
) -> None:
    services = build_services(settings)
    try:
        with services.write() as tx:
            issued = create_credential(tx, role="agent", domains=["care"])
        clock = _Clock()
        cache = SecretCache(clock=clock)
        authenticate = Authenticator(services, 900, cache)
        first = _list_domains(authenticate, issued, settings.region).scope
        assert first is not None and first.domains == {"care"}

        _openprofiles(settings, "credentials", "scope", issued.access_key_id, "--domain", "sales")

        # Within the interval the cache answers without a read, as for a revocation.
        same = _list_domains(authenticate, issued, settings.region).scope
        assert same is not None and same.domains == {"care"}
        clock.now += REVOCATION_CHECK_SECONDS
        # The request that finds the check due starts it; once it has read, the key is looked
        # up again, with its new scope.
        _list_domains(authenticate, issued, settings.region)
        cache.settle()
        changed = _list_domains(authenticate, issued, settings.region).scope
        assert changed is not None and changed.domains == {"sales"}

        _openprofiles(settings, "credentials", "scope", issued.access_key_id, "--all-domains")
        clock.now += REVOCATION_CHECK_SECONDS
        _list_domains(authenticate, issued, settings.region)
        cache.settle()
        assert _list_domains(authenticate, issued, settings.region).scope is None

        # Changed in this process: at once (SecretCache.forget), no check awaited.
        with services.write() as tx:
            set_credential_scope(tx, access_key_id=issued.access_key_id, domains=["care"])
        now = _list_domains(authenticate, issued, settings.region).scope
        assert now is not None and now.domains == {"care"}
    finally:
        services.database.dispose()


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_serve_with_two_workers_holds_a_key_to_a_scope_set_elsewhere(settings: Settings) -> None:
    with _serving_two_workers(settings) as port:
        admin = json.loads(_command(settings, "credentials", "create", "--role", "admin", "--json"))
        admin_key = (admin["AccessKeyId"], admin["SecretAccessKey"])
        for name in ("care", "sales"):
            api_client(port, admin_key).create_domain(DomainName=name, DefaultExpirationDays=3)
        key = json.loads(_command(settings, "credentials", "create", "--role", "agent", "--json"))
        pair = (key["AccessKeyId"], key["SecretAccessKey"])

        def reaches_sales() -> bool:
            try:
                api_client(port, pair).get_domain(DomainName="sales")
            except ClientError as error:
                assert error.response["Error"]["Code"] == "AccessDeniedException"
                return False
            return True

        # Many connections, so that both workers have the key, unscoped, in their caches.
        for _ in range(20):
            assert reaches_sales()

        _command(settings, "credentials", "scope", key["AccessKeyId"], "--domain", "care")

        # Each worker checks about every second: retried, bounded, until several requests in a
        # row, on new connections, are refused.
        deadline = time.monotonic() + 5
        refused_in_a_row = 0
        while refused_in_a_row < 10 and time.monotonic() < deadline:
            refused_in_a_row = 0 if reaches_sales() else refused_in_a_row + 1
        assert refused_in_a_row == 10, "a worker still lets the key reach a domain out of scope"
        assert api_client(port, pair).get_domain(DomainName="care")["DomainName"] == "care"
