"""A domain named by a local key's alias (alias/NAME) whose key went missing from keyring.json.

A review: the message for the missing alias said "create it with `openprofiles keys create`".
Following it made a new key under the old alias; the server started again, the domain answered
AccessDeniedException (the new key cannot unwrap the data key the lost one wrapped), and from
then on `domains drop-unreadable --key-lost alias/NAME` refused in every form ("The key is not
gone: it exists ..."): only DeleteDomain or editing keyring.json by hand got out. The message
now says to put back a keyring holding the key, or to drop the domain; and the drop takes a
domain whose alias now names another key as one whose key is missing. Both backends."""

from __future__ import annotations

import json

from click.testing import CliRunner, Result
from tests.support.installation import install
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.app import build_services
from openprofiles.cli import main
from openprofiles.crypto.keyring import Keyring
from openprofiles.settings import Settings

DOMAIN = "lostdom2"
ALIAS = "alias/lost2"
DROP = f"openprofiles domains drop-unreadable {DOMAIN} --key-lost {ALIAS} --confirm"


def _cli(settings: Settings, *args: str) -> Result:
    options = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        options += ["--database-url", settings.database_url]
    return CliRunner().invoke(main, [*args, *options])


def _domain_whose_alias_key_is_lost(settings: Settings) -> None:
    install(settings)
    # Sealed under the default key: proves the keyring the database's (domains.unreadable).
    assert _cli(settings, "credentials", "create", "--role", "admin").exit_code == 0
    assert _cli(settings, "keys", "create", "--alias", "lost2").exit_code == 0
    services = build_services(settings)
    try:
        make_domain(services, DOMAIN, ALIAS)
        make_domain(services, "kept")
    finally:
        services.database.dispose()
    lost = Keyring(settings.keyring_path).lookup(ALIAS)
    assert lost is not None
    document = json.loads(settings.keyring_path.read_text())
    document["keys"] = [k for k in document["keys"] if k["id"] != lost.key_id]
    settings.keyring_path.write_text(json.dumps(document))


def _domains(settings: Settings) -> list[str]:
    services = build_services(settings)
    try:
        with services.read() as tx:
            from openprofiles.domains.service import list_domains

            records, _ = list_domains(tx, after=None, limit=10)
            return [r.name for r in records]
    finally:
        services.database.dispose()


def test_the_missing_alias_is_not_to_be_made_again(settings: Settings) -> None:
    _domain_whose_alias_key_is_lost(settings)

    refused = _cli(settings, "domains", "drop-unreadable", DOMAIN)

    assert refused.exit_code == 1, refused.output
    text = " ".join(refused.output.split())
    assert "create it with `openprofiles keys create`" not in text
    assert (
        f"There is no local key with the alias {ALIAS} in the keyring {settings.keyring_path}, "
        f"and the data key of domain {DOMAIN} is wrapped under the key that had it. A new key "
        "made with that alias would not unwrap it: put back a copy of keyring.json that holds "
        f"the key (a backup, another server's data dir). Only if no copy holding it is left "
        f"anywhere, drop the domain with `{DROP}`."
    ) in text


def test_a_domain_whose_alias_was_given_to_a_new_key_can_be_dropped(settings: Settings) -> None:
    _domain_whose_alias_key_is_lost(settings)
    # What the message used to advise.
    assert _cli(settings, "keys", "create", "--alias", "lost2").exit_code == 0
    new = Keyring(settings.keyring_path).lookup(ALIAS)
    assert new is not None

    refused = _cli(settings, "domains", "drop-unreadable", DOMAIN, "--confirm")
    assert refused.exit_code == 1, refused.output
    text = " ".join(refused.output.split())
    assert "The key is not gone" not in text
    assert f"If the alias {ALIAS} was given to a new key after the key that had it went" in text
    assert f"The alias names the key {new.key_id} now, made " in text
    assert f"`{DROP}`" in text
    # The new key's own identifiers do not name the lost key.
    arn = new.arn(settings.region, settings.account_id)
    other = _cli(settings, "domains", "drop-unreadable", DOMAIN, "--key-lost", arn, "--confirm")
    assert other.exit_code == 1 and "does not name this key" in other.output
    assert DOMAIN in _domains(settings)

    dropped = _cli(settings, "domains", "drop-unreadable", DOMAIN, "--key-lost", ALIAS, "--confirm")

    assert dropped.exit_code == 0, dropped.output
    assert f"Dropped the domain {DOMAIN}" in dropped.output
    assert _domains(settings) == ["kept"]
    # The new key is left as it was: it is no domain's, and nothing says it is lost.
    assert Keyring(settings.keyring_path).lookup(ALIAS) == new


def test_a_damaged_data_key_under_an_alias_that_still_holds_its_key_is_not_dropped(
    settings: Settings,
) -> None:
    # A review: any data key its alias's key could not open was taken for a replaced alias,
    # so a damaged wrapped key under the very key that wrapped it was dropped on --key-lost,
    # the message saying the alias named another key. A key older than the domain is its own.
    from sqlalchemy import text

    install(settings)
    assert _cli(settings, "credentials", "create", "--role", "admin").exit_code == 0
    assert _cli(settings, "keys", "create", "--alias", "ok").exit_code == 0
    services = build_services(settings)
    try:
        make_domain(services, "dmg", "alias/ok")
        with services.write() as tx:
            wrapped = tx.conn.execute(
                text("SELECT wrapped_key FROM domain WHERE name = 'dmg'")
            ).scalar_one()
            damaged = bytes(wrapped)[:-1] + bytes([bytes(wrapped)[-1] ^ 1])
            tx.conn.execute(
                text("UPDATE domain SET wrapped_key = :w WHERE name = 'dmg'"), {"w": damaged}
            )
    finally:
        services.database.dispose()

    refused = _cli(
        settings, "domains", "drop-unreadable", "dmg", "--key-lost", "alias/ok", "--confirm"
    )

    assert refused.exit_code == 1, refused.output
    text_said = " ".join(refused.output.split())
    assert "The alias names the key" not in text_said
    assert "Nothing was deleted" in text_said
    assert "dmg" in _domains(settings)
