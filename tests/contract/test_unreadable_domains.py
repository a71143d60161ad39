"""An upgrade that needs the keys of domains whose keys cannot be used (0018, 0020, 0022) names
every such domain and the command that drops one; `openprofiles domains drop-unreadable` drops
it with the new release, at the revision the database is at, and the upgrade then goes on. On
SQLite and PostgreSQL.

The operator's problem (a session's note): the refusal said "Make the key usable again (or
delete the domain) and start again", but deleting the domain needed the old release, as the
new one does not start until the upgrade succeeds; with a KMS key deleted, there was no way
forward with the new release. And it named one domain, so the next was found at the next start.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import inspect, text
from tests.unit.integrations.integ_helpers import INSTANCE, OTHER_INSTANCE, associate, ctr, send

from openprofiles.app import build_services
from openprofiles.cli import main
from openprofiles.contacts.history import contact_history
from openprofiles.crypto.keyring import Keyring
from openprofiles.domains.service import create_domain
from openprofiles.profiles.service import SearchCriterion, search_profiles
from openprofiles.settings import Settings
from openprofiles.store.database import Database
from openprofiles.store.migrate import downgrade_to

THIRD_INSTANCE = (
    "arn:aws:connect:us-east-1:111122223333:instance/3a908e11-dddd-eeee-ffff-1e7e0f2168aa"
)
INSTANCES = {"d1": INSTANCE, "d2": OTHER_INSTANCE, "d3": THIRD_INSTANCE}
STAMP = "2026-11-29 00:00:00"


def _options(settings: Settings) -> list[str]:
    options = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        options += ["--database-url", settings.database_url]
    return options


def _cli(settings: Settings, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, *_options(settings)])


def _domains_with_contacts(settings: Settings, keys: dict[str, str | None]) -> None:
    """Domains named by `keys` (domain -> key identifier; None: the default key), each with
    one contact record of its own instance, and an API credential (sealed under the keyring's
    default key)."""
    services = build_services(settings)
    try:
        for name, key in keys.items():
            wrapped = services.keys.new_domain_key(name, key)
            with services.write() as tx:
                create_domain(
                    tx,
                    domain_name=name,
                    config={"DefaultExpirationDays": 30},
                    key_id=wrapped.key_id,
                    wrapped_key=wrapped.wrapped,
                )
            associate(services, name, INSTANCES[name])
            send(services, ctr(f"c-{name}", instance=INSTANCES[name]))
    finally:
        services.database.dispose()
    assert _cli(settings, "credentials", "create", "--role", "admin").exit_code == 0


def _back_to(settings: Settings, revision: str) -> None:
    """The database taken back to `revision` (its keys usable), and there given what the next
    migration converts with each domain's key: a flow run's error (0018), a dead letter's sink
    error (0020); the contact records are what 0022 reads."""
    services = build_services(settings, migrate=False)
    try:
        downgrade_to(services.database, revision, services.keys)
    finally:
        services.database.dispose()
    database = Database.from_settings(settings)
    try:
        with database.engine.begin() as conn:
            names = conn.execute(text("SELECT name FROM domain")).scalars().all()
            if revision == "0017":
                conn.execute(
                    text(
                        "INSERT INTO flow_run (domain_name, run_id, flow_name, trigger, status, "
                        "items_read, records_read, records_ingested, records_filtered, "
                        "records_dead_lettered, error, started_at, finished_at) VALUES (:d, "
                        "'r1', 'crm', 'OnDemand', 'FAILED', 1, 0, 0, 0, 0, 'Permission denied', "
                        ":t, :t)"
                    ),
                    [{"d": name, "t": STAMP} for name in names],
                )
            elif revision == "0019":
                conn.execute(
                    text(
                        "INSERT INTO dlq_message (domain_name, message_id, object_type_name, "
                        "sealed, reason_category, attempts, sink_error, created_at, "
                        "last_attempt_at) VALUES (:d, 'm1', 'Crm', :s, 'no_profile', 1, "
                        "'SQS refused the message', :t, :t)"
                    ),
                    [{"d": name, "s": b"x", "t": STAMP} for name in names],
                )
    finally:
        database.dispose()


def _revision(settings: Settings) -> str:
    database = Database.from_settings(settings)
    try:
        with database.engine.connect() as conn:
            return str(conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one())
    finally:
        database.dispose()


def _rows_of(settings: Settings, domain_name: str) -> dict[str, int]:
    """The rows of every table that names `domain_name` (the domain's own row included)."""
    database = Database.from_settings(settings)
    found = {}
    try:
        with database.engine.connect() as conn:
            for table in inspect(conn).get_table_names():
                columns = {c["name"] for c in inspect(conn).get_columns(table)}
                column = (
                    "domain_name"
                    if "domain_name" in columns
                    else "name"
                    if table == "domain"
                    else None
                )
                if column is None:
                    continue
                count = conn.execute(
                    text(f'SELECT count(*) FROM "{table}" WHERE {column} = :d'), {"d": domain_name}
                ).scalar_one()
                if count:
                    found[table] = count
    finally:
        database.dispose()
    return found


def _contacts_of(settings: Settings, domain_name: str) -> list[str]:
    services = build_services(settings)
    try:
        with services.read() as tx:
            [(found, _)] = search_profiles(
                tx,
                domain_name=domain_name,
                criteria=[SearchCriterion("_ctrContactId", (f"c-{domain_name}",))],
            )[0]
            history = contact_history(tx, domain_name=domain_name, profile_id=found.profile_id)
    finally:
        services.database.dispose()
    return [c.contact_id for c in history.contacts]


def _drop_command(name: str) -> str:
    return f"`openprofiles domains drop-unreadable {name} --confirm`"


@pytest.mark.parametrize("before", ["0017", "0019", "0021"])
def test_an_upgrade_names_every_unusable_domain_and_dropping_them_lets_it_go_on(
    settings: Settings, before: str
) -> None:
    """Stopped at 0018, 0020 or 0022: the message names both domains whose keys are disabled,
    with the command that drops each; the drop works with this release at that revision, and
    the upgrade then finishes, the other domain's data intact."""
    keyring = Keyring(settings.keyring_path)
    k1 = keyring.create_key("k1").arn(settings.region, settings.account_id)
    k2 = keyring.create_key("k2").arn(settings.region, settings.account_id)
    _domains_with_contacts(settings, {"d1": k1, "d2": k2, "d3": None})
    _back_to(settings, before)
    keyring.disable(k1)
    keyring.disable(k2)

    stopped = _cli(settings, "credentials", "list")
    assert stopped.exit_code == 1, stopped.output
    message = " ".join(stopped.output.split())
    assert "domain d1 with its key, which cannot be used" in message
    assert f"The local key {k1} is disabled" in message
    assert "Other domains whose key cannot be used either: d2 (The local key" in message
    assert _drop_command("d1") in message and _drop_command("d2") in message
    assert "d3 " not in message and "d3)" not in message
    assert "cannot be undone" in message and "Traceback" not in stopped.output
    assert _revision(settings) == before

    dry = _cli(settings, "domains", "drop-unreadable", "d1")
    assert dry.exit_code == 0, dry.output
    assert "Nothing was deleted: give --confirm" in dry.output
    assert "contact_record 1" in dry.output and "profile 1" in dry.output
    assert _rows_of(settings, "d1")["domain"] == 1

    for name in ("d1", "d2"):
        dropped = _cli(settings, "domains", "drop-unreadable", name, "--confirm")
        assert dropped.exit_code == 0, dropped.output
        assert f"Dropped the domain {name} and its" in dropped.output
        assert "Start OpenProfiles again: an upgrade that stopped" in dropped.output
        assert _rows_of(settings, name) == {}
        assert _revision(settings) == before

    assert _cli(settings, "credentials", "list").exit_code == 0
    assert _revision(settings) != before
    assert _contacts_of(settings, "d3") == ["c-d3"]


def test_the_message_after_one_drop_names_only_the_domain_left(settings: Settings) -> None:
    keyring = Keyring(settings.keyring_path)
    k1 = keyring.create_key("k1").arn(settings.region, settings.account_id)
    k2 = keyring.create_key("k2").arn(settings.region, settings.account_id)
    _domains_with_contacts(settings, {"d1": k1, "d2": k2})
    _back_to(settings, "0021")
    keyring.disable(k1)
    keyring.disable(k2)
    assert _cli(settings, "domains", "drop-unreadable", "d1", "--confirm").exit_code == 0
    stopped = _cli(settings, "credentials", "list")
    message = " ".join(stopped.output.split())
    assert stopped.exit_code == 1
    assert "domain d2 with its key" in message and _drop_command("d2") in message
    assert "d1 " not in message and "either" not in message


def test_a_domain_whose_local_key_is_lost_from_the_keyring_is_dropped(settings: Settings) -> None:
    """A local key gone from keyring.json (a keyring restored from before the key was made):
    the start-up check refuses the database before any migration; dropping the domain is the way
    forward there too, and the start then goes on, the upgrade with it."""
    keyring = Keyring(settings.keyring_path)
    lost = keyring.create_key("lost")
    arn = lost.arn(settings.region, settings.account_id)
    _domains_with_contacts(settings, {"d1": arn, "d3": None})
    _back_to(settings, "0021")
    document = json.loads(settings.keyring_path.read_text())
    document["keys"] = [k for k in document["keys"] if k["id"] != lost.key_id]
    settings.keyring_path.write_text(json.dumps(document))

    assert _cli(settings, "credentials", "list").exit_code == 1
    dropped = _cli(settings, "domains", "drop-unreadable", "d1", "--confirm")
    assert dropped.exit_code == 0, dropped.output
    assert f"The local key {arn} does not exist in the keyring" in dropped.output
    assert _cli(settings, "credentials", "list").exit_code == 0
    assert _revision(settings) != "0021"
    assert _rows_of(settings, "d1") == {}
    assert _contacts_of(settings, "d3") == ["c-d3"]


def test_a_domain_whose_key_works_is_not_dropped(settings: Settings) -> None:
    _domains_with_contacts(settings, {"d1": None})
    _back_to(settings, "0021")
    refused = _cli(settings, "domains", "drop-unreadable", "d1", "--confirm")
    assert refused.exit_code == 1, refused.output
    assert "can be used: its data can be read, so it is not dropped" in refused.output
    assert _rows_of(settings, "d1")["profile"] == 1
    missing = _cli(settings, "domains", "drop-unreadable", "nope", "--confirm")
    assert missing.exit_code == 1
    assert "There is no domain nope in this database; nothing was deleted." in missing.output


def test_another_data_dir_s_keyring_drops_nothing(settings: Settings, tmp_path: Path) -> None:
    """Every local key looks lost with the keyring of another data dir (or none): nothing is
    dropped for it."""
    keyring = Keyring(settings.keyring_path)
    k1 = keyring.create_key("k1").arn(settings.region, settings.account_id)
    _domains_with_contacts(settings, {"d1": k1})
    _back_to(settings, "0021")
    elsewhere = replace(
        settings, data_dir=tmp_path / "elsewhere", database_url=settings.effective_database_url
    )
    refused = _cli(elsewhere, "domains", "drop-unreadable", "d1", "--confirm")
    assert refused.exit_code == 1, refused.output
    assert "keyring.json does not exist" in refused.output
    assert "Give the --data-dir of the server that uses this database" in refused.output
    Keyring(elsewhere.keyring_path).default_key()  # another installation's keyring
    refused = _cli(elsewhere, "domains", "drop-unreadable", "d1", "--confirm")
    assert refused.exit_code == 1, refused.output
    assert "is not the one this database's data was sealed under" in refused.output
    assert _rows_of(settings, "d1")["profile"] == 1


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials for moto, and no chance of reading the developer's real AWS config."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


def _domains_with_contacts_on_kms(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    moto_url: str,
    keys: dict[str, str | None],
) -> None:
    """`_domains_with_contacts`, the commands (which read the environment) using moto's KMS."""
    monkeypatch.setenv("OPENPROFILES_KMS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("OPENPROFILES_AWS_REGION", "us-east-1")
    _domains_with_contacts(settings, keys)


@pytest.mark.moto
def test_a_domain_under_a_deleted_kms_key_named_by_its_alias_is_dropped(
    settings: Settings, moto_url: str, aws_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The case with no way back: the KMS key the domain names by an alias ARN is deleted. The
    message names the alias and the drop; the drop goes through."""
    settings = replace(settings, kms_endpoint_url=moto_url, aws_region="us-east-1")
    kms = boto3.client("kms", endpoint_url=moto_url, region_name="us-east-1")
    key = kms.create_key()["KeyMetadata"]
    kms.create_alias(AliasName="alias/op-billing", TargetKeyId=key["KeyId"])
    alias = f"arn:aws:kms:us-east-1:{key['AWSAccountId']}:alias/op-billing"
    _domains_with_contacts_on_kms(settings, monkeypatch, moto_url, {"d1": alias, "d3": None})
    _back_to(settings, "0021")
    # As AWS does once the key is deleted (moto's Decrypt ignores a key's state, not its alias).
    kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)
    kms.delete_alias(AliasName="alias/op-billing")

    stopped = _cli(settings, "credentials", "list")
    message = " ".join(stopped.output.split())
    assert stopped.exit_code == 1, stopped.output
    assert f"The KMS key {alias} does not exist in region us-east-1" in message
    assert _drop_command("d1") in message

    dropped = _cli(settings, "domains", "drop-unreadable", "d1", "--confirm")
    assert dropped.exit_code == 0, dropped.output
    assert f"The key of domain d1 cannot be used: The KMS key {alias}" in dropped.output
    assert _cli(settings, "credentials", "list").exit_code == 0
    assert _rows_of(settings, "d1") == {}
    assert _contacts_of(settings, "d3") == ["c-d3"]


@pytest.mark.moto
def test_a_kms_key_that_cannot_be_reached_now_is_no_reason_to_drop(
    settings: Settings, moto_url: str, aws_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KMS unreachable may pass: the message says to start again, not to drop, and the drop
    refuses, deleting nothing."""
    settings = replace(settings, kms_endpoint_url=moto_url, aws_region="us-east-1")
    kms = boto3.client("kms", endpoint_url=moto_url, region_name="us-east-1")
    key = kms.create_key()["KeyMetadata"]["Arn"]
    _domains_with_contacts_on_kms(settings, monkeypatch, moto_url, {"d1": key})
    _back_to(settings, "0021")
    # Nothing listens there (a port of this test's range, on this machine).
    monkeypatch.setenv("OPENPROFILES_KMS_ENDPOINT_URL", "http://127.0.0.1:19599")

    stopped = _cli(settings, "credentials", "list")
    message = " ".join(stopped.output.split())
    assert stopped.exit_code == 1, stopped.output
    assert "could not reach the KMS endpoint http://127.0.0.1:19599" in message
    assert "Nothing was changed; start again once it can be." in message
    assert "drop-unreadable" not in message
    refused = _cli(settings, "domains", "drop-unreadable", "d1", "--confirm")
    assert refused.exit_code == 1, refused.output
    assert "cannot be used now, but that may pass" in refused.output
    assert _rows_of(settings, "d1")["profile"] == 1
