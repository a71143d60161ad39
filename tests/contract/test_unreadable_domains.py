"""An upgrade that needs the keys of domains whose keys cannot be used (0018, 0020, 0022) names
every such domain and the command that drops one; `openprofiles domains drop-unreadable` drops
it with the new release, at the revision the database is at, and the upgrade then goes on. On
SQLite and PostgreSQL.

The operator's problem (a session's note): the refusal said "Make the key usable again (or
delete the domain) and start again", but deleting the domain needed the old release, as the
new one does not start until the upgrade succeeds; with a KMS key deleted, there was no way
forward with the new release. And it named one domain, so the next was found at the next start.

Then a review: the drop took any failure but an outage for a key gone for good, and dropped
domains whose key was only disabled or pending deletion, or that the operator's shell could not
use (no AWS credentials, another region); with no API credential stored it had no proof the
keyring was the database's, and dropped with another data dir's; and it asked KMS while holding
the migrations' transaction, stalling a running server's writes. Each has its test here.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection, Engine
from tests.support.kms_proxy import kms_proxy
from tests.support.moto_server import start_moto_server
from tests.unit.integrations.integ_helpers import (
    INSTANCE,
    OTHER_INSTANCE,
    associate,
    ctr,
    make_domain,
    send,
)

from openprofiles.app import background_tasks, build_services
from openprofiles.cli import main
from openprofiles.contacts.history import contact_history
from openprofiles.context import Services
from openprofiles.crypto.keyring import Keyring
from openprofiles.domains.service import create_domain, update_domain
from openprofiles.domains.unreadable import Dropped, aliased_keys, drop_unreadable
from openprofiles.profiles.service import SearchCriterion, search_profiles
from openprofiles.settings import Settings
from openprofiles.store.database import Database
from openprofiles.store.migrate import downgrade_to, migrating
from openprofiles.users.service import create_user

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
        _record_aliased_keys(services)
    finally:
        services.database.dispose()
    assert _cli(settings, "credentials", "create", "--role", "admin").exit_code == 0


def _record_aliased_keys(services: Services) -> None:
    """A run of the server's background task that records the keys domains' KMS aliases named
    (learnt by its key manager wrapping and unwrapping their data keys)."""
    [task] = [t for t in background_tasks(services) if t.name.startswith("recording the keys")]
    task.run()


def _aliased_keys(settings: Settings) -> dict[str, str]:
    database = Database.from_settings(settings)
    try:
        with database.read() as conn:
            return aliased_keys(conn)
    finally:
        database.dispose()


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


def _lost_key_drop_command(name: str, key: str) -> str:
    return f"`openprofiles domains drop-unreadable {name} --key-lost {key} --confirm`"


def test_a_domain_whose_local_key_is_lost_from_the_keyring_is_dropped(settings: Settings) -> None:
    """A local key gone from keyring.json (a keyring restored from before the key was made):
    the start-up check refuses the database before any migration; dropping the domain is the way
    forward there too, on the operator's word that no copy of the key is left (--key-lost: no
    keyring can prove it), and the start then goes on, the upgrade with it."""
    keyring = Keyring(settings.keyring_path)
    lost = keyring.create_key("lost")
    arn = lost.arn(settings.region, settings.account_id)
    _domains_with_contacts(settings, {"d1": arn, "d3": None})
    _back_to(settings, "0021")
    document = json.loads(settings.keyring_path.read_text())
    document["keys"] = [k for k in document["keys"] if k["id"] != lost.key_id]
    settings.keyring_path.write_text(json.dumps(document))

    stopped = _cli(settings, "credentials", "list")
    assert stopped.exit_code == 1
    assert _lost_key_drop_command("d1", arn) in " ".join(stopped.output.split())
    refused = _cli(settings, "domains", "drop-unreadable", "d1", "--confirm")
    assert refused.exit_code == 1, refused.output
    assert "no keyring can tell from a lost key" in " ".join(refused.output.split())
    other = _cli(
        settings, "domains", "drop-unreadable", "d1", "--key-lost", "alias/k9", "--confirm"
    )
    assert other.exit_code == 1 and "does not name this key" in other.output
    assert _rows_of(settings, "d1")["profile"] == 1
    dropped = _cli(settings, "domains", "drop-unreadable", "d1", "--key-lost", arn, "--confirm")
    assert dropped.exit_code == 0, dropped.output
    assert f"The local key {arn} does not exist in the keyring" in dropped.output
    assert _cli(settings, "credentials", "list").exit_code == 0
    assert _revision(settings) != "0021"
    assert _rows_of(settings, "d1") == {}
    assert _contacts_of(settings, "d3") == ["c-d3"]


def test_a_keyring_from_before_a_rotation_drops_nothing(settings: Settings) -> None:
    """A keyring copied before `keys rotate` lacks the version the domain's data key is now
    wrapped under; the key itself is there, so the newer copy exists somewhere (it wrapped the
    data key): the domain is not dropped, and the message says which copy to put back."""
    keyring = Keyring(settings.keyring_path)
    rotated = keyring.create_key("rotated")
    arn = rotated.arn(settings.region, settings.account_id)
    _domains_with_contacts(settings, {"d1": arn})
    before = settings.keyring_path.read_bytes()
    assert _cli(settings, "keys", "rotate", "alias/rotated").exit_code == 0
    settings.keyring_path.write_bytes(before)

    refused = _cli(settings, "domains", "drop-unreadable", "d1", "--confirm")
    assert refused.exit_code == 1, refused.output
    assert "The keyring holds this key, but not the version" in refused.output
    assert _rows_of(settings, "d1")["profile"] == 1


def _recorded_versions(settings: Settings) -> dict[str, int]:
    """local_key_record: key id -> the versions recorded."""
    database = Database.from_settings(settings)
    try:
        with database.read() as conn:
            rows = conn.execute(text("SELECT key_id, versions FROM local_key_record"))
            return {str(k): int(v) for k, v in rows}
    finally:
        database.dispose()


def _without_key(settings: Settings, key_id: str) -> None:
    """keyring.json without the local key `key_id` (every copy of it lost)."""
    document = json.loads(settings.keyring_path.read_text())
    document["keys"] = [k for k in document["keys"] if k["id"] != key_id]
    settings.keyring_path.write_text(json.dumps(document))


def test_a_lost_version_of_a_local_key_is_dropped_on_the_operator_s_word(
    settings: Settings,
) -> None:
    """A review: the key rotated, and then the only keyring holding its new version lost. The
    drop refused even with --key-lost naming the key (it returned before looking), so the
    domain could never be dropped. The operator's word counts for a version as for a key, with
    the same safeguards: the keyring proven the database's, and, as the record of `keys rotate`
    shows the keyring older, copying the current keyring.json said first. After the drop the
    record holds the versions the keyring holds: no domain needs more, and the keyring is not
    called older for a version no copy holds."""
    keyring = Keyring(settings.keyring_path)
    rotated = keyring.create_key("rotated")
    arn = rotated.arn(settings.region, settings.account_id)
    _domains_with_contacts(settings, {"d1": arn, "d3": None})
    before = settings.keyring_path.read_bytes()
    assert _cli(settings, "keys", "rotate", "alias/rotated").exit_code == 0
    settings.keyring_path.write_bytes(before)  # the only copy with version 2 is lost
    assert _recorded_versions(settings)[rotated.key_id] == 2

    started = _cli(settings, "credentials", "list")
    message = " ".join(started.output.split())
    assert started.exit_code == 1, started.output
    assert "does not hold the version of a local key" in message
    assert "This keyring is older than the database" in message
    assert message.index("copy the current keyring.json") < message.index("drop-unreadable")
    # Pointed to, not spelled out: a keyring behind is first of all one to put back.
    assert _lost_key_drop_command("d1", arn) not in message and "--confirm" not in message
    refused = _cli(settings, "domains", "drop-unreadable", "d1", "--confirm")
    message = " ".join(refused.output.split())
    assert refused.exit_code == 1, refused.output
    assert "The keyring holds this key, but not the version" in message
    assert f"it holds 1 version(s) of the local key {rotated.key_id}, not the 2" in message
    assert "holding that version of the key is lost" in message
    assert _lost_key_drop_command("d1", arn) in message
    other = _cli(
        settings, "domains", "drop-unreadable", "d1", "--key-lost", "alias/k9", "--confirm"
    )
    assert other.exit_code == 1 and "does not name this key" in other.output
    assert _rows_of(settings, "d1")["profile"] == 1

    dropped = _cli(settings, "domains", "drop-unreadable", "d1", "--key-lost", arn, "--confirm")
    assert dropped.exit_code == 0, dropped.output
    assert "holds only versions 1 to 1 of it" in " ".join(dropped.output.split())
    assert _rows_of(settings, "d1") == {}
    assert _recorded_versions(settings)[rotated.key_id] == 1
    assert _cli(settings, "credentials", "list").exit_code == 0
    assert _contacts_of(settings, "d3") == ["c-d3"]


def test_a_key_dropped_as_lost_is_not_taken_for_an_older_keyring_later(
    settings: Settings,
) -> None:
    """The record of a key kept after its domain was dropped on --key-lost said the keyring was
    older than the database from then on: every later missing key was blamed on an older copy,
    and the operator sent after a keyring.json no server has. A drop on --key-lost removes the
    record of a key no domain left is under."""
    # A key made before the record (0031): nothing says a keyring lacking it is older.
    k9 = Keyring(settings.keyring_path).create_key("k9")
    k9_arn = k9.arn(settings.region, settings.account_id)
    _domains_with_contacts(settings, {"d2": k9_arn})
    made = _cli(settings, "keys", "create", "--alias", "k1", "--json")
    assert made.exit_code == 0, made.output
    k1 = json.loads(made.output)
    _domains_with_contacts(settings, {"d1": k1["Arn"]})
    _without_key(settings, k1["KeyId"])
    dropped = _cli(
        settings, "domains", "drop-unreadable", "d1", "--key-lost", k1["Arn"], "--confirm"
    )
    assert dropped.exit_code == 0, dropped.output
    assert k1["KeyId"] not in _recorded_versions(settings)
    assert _cli(settings, "credentials", "list").exit_code == 0

    _without_key(settings, k9.key_id)
    started = _cli(settings, "credentials", "list")
    message = " ".join(started.output.split())
    assert started.exit_code == 1, started.output
    assert "older than the database" not in message
    assert _lost_key_drop_command("d2", k9_arn) in message
    refused = _cli(settings, "domains", "drop-unreadable", "d2", "--confirm")
    message = " ".join(refused.output.split())
    assert refused.exit_code == 1, refused.output
    assert "older than the database" not in message
    assert "no keyring can tell from a lost key" in message
    assert _rows_of(settings, "d2")["profile"] == 1


def test_an_older_copy_of_the_keyring_drops_nothing(settings: Settings, tmp_path: Path) -> None:
    """A copy of keyring.json taken before `keys create` (a staging clone, a second server's not
    copied again, a restored backup) holds the default key, so it opens the database's sealed
    rows, and lacks the later key: the drop took that for a lost key and deleted a domain whose
    key the server's keyring holds, and the start-up check told the operator to. The database
    records the keys `keys create` made and the versions `keys rotate` gave them: such a copy is
    shown older, the start-up check says to copy the current keyring.json, and the drop refuses,
    deleting nothing."""
    options = _options(settings)
    _domains_with_contacts(settings, {"d1": None})
    created = _cli(settings, "keys", "create", "--alias", "k4")
    assert created.exit_code == 0, created.output
    k4 = created.stdout.strip()  # the ARN; the backup reminder is on stderr
    clone = replace(
        settings, data_dir=tmp_path / "staging", database_url=settings.effective_database_url
    )
    clone.data_dir.mkdir()
    clone.keyring_path.write_bytes(settings.keyring_path.read_bytes())
    # Later, on the server: a key of its own for a new domain, and k4 rotated.
    made = CliRunner().invoke(main, ["keys", "create", "--alias", "k2", "--json", *options])
    assert made.exit_code == 0, made.output
    k2 = json.loads(made.output)
    _domains_with_contacts(settings, {"d2": k2["Arn"]})
    assert _cli(settings, "keys", "rotate", k4).exit_code == 0

    started = _cli(clone, "credentials", "list")
    text = " ".join(started.output.split())
    assert started.exit_code == 1, started.output
    assert f"does not hold the local key {k2['Arn']}" in text
    assert "This keyring is older than the database" in text
    assert f"it lacks the local key {k2['KeyId']}" in text
    # Copying the current keyring is the way; the drop, which takes --key-lost here too (the
    # record cannot tell an older copy from the loss of every newer one), only the last resort.
    assert text.index("copy the current keyring.json") < text.index("drop-unreadable --help")
    assert _lost_key_drop_command("d2", k2["Arn"]) not in text and "--confirm" not in text
    refused = _cli(clone, "domains", "drop-unreadable", "d2", "--confirm")
    text = " ".join(refused.output.split())
    assert refused.exit_code == 1, refused.output
    assert "looks older than the database" in text and "Nothing was deleted" in text
    assert f"it lacks the local key {k2['KeyId']}" in text
    assert f"it holds 1 version(s) of the local key {k4.rsplit('/', 1)[1]}, not the 2" in text
    assert "Copy the current keyring.json" in text
    assert _rows_of(settings, "d2")["profile"] == 1
    assert _contacts_of(settings, "d2") == ["c-d2"]


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


@pytest.mark.moto
@pytest.mark.parametrize("before", ["0017", "0019", "0021"])
def test_an_upgrade_names_every_unusable_domain_with_its_way_forward(
    settings: Settings,
    before: str,
    moto_url: str,
    aws_env: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stopped at 0018, 0020 or 0022: the message names both domains whose keys cannot be used,
    each with its way forward: the drop for d1, whose KMS key is deleted; `keys enable` for d2,
    whose local key is only disabled, which the drop refuses (it used to drop it: the data was
    gone when the key was enabled again). The drop works at that revision; once d2's key is
    enabled, the upgrade finishes, the other domains' data intact."""
    with kms_proxy(moto_url) as proxy:
        settings = replace(settings, kms_endpoint_url=proxy.url, aws_region="us-east-1")
        kms = boto3.client("kms", endpoint_url=moto_url, region_name="us-east-1")
        deleted = kms.create_key()["KeyMetadata"]["Arn"]
        kms.create_key()  # ListKeys lists a key of the account: KMS's NotFound is proof
        keyring = Keyring(settings.keyring_path)
        k2 = keyring.create_key("k2").arn(settings.region, settings.account_id)
        _domains_with_contacts_on_kms(
            settings, monkeypatch, proxy.url, {"d1": deleted, "d2": k2, "d3": None}
        )
        _back_to(settings, before)
        proxy.delete(deleted)
        keyring.disable(k2)

        stopped = _cli(settings, "credentials", "list")
        message = " ".join(stopped.output.split())
        assert stopped.exit_code == 1, stopped.output
        assert "with its key, which cannot be used" in message
        assert "The domains whose key cannot be used (2), each with its way forward" in message
        assert f"The KMS key {deleted} does not exist" in message
        assert "d1: its key is gone for good" in message
        assert _drop_command("d1") in message and "drop-unreadable d2" not in message
        assert f"The local key {k2} is disabled" in message and "d2: " in message
        assert f"enable it (`openprofiles keys enable {k2}`)" in message
        assert "d3:" not in message and "domain d3" not in message
        assert "cannot be undone" in message and "Traceback" not in stopped.output
        assert _revision(settings) == before

        refused = _cli(settings, "domains", "drop-unreadable", "d2", "--confirm")
        assert refused.exit_code == 1, refused.output
        assert "is not gone for good" in refused.output and "Nothing was deleted" in refused.output
        assert _rows_of(settings, "d2")["profile"] == 1

        dry = _cli(settings, "domains", "drop-unreadable", "d1")
        assert dry.exit_code == 0, dry.output
        assert "Nothing was deleted: give --confirm" in dry.output
        assert "contact_record 1" in dry.output and "profile 1" in dry.output
        assert _rows_of(settings, "d1")["domain"] == 1
        dropped = _cli(settings, "domains", "drop-unreadable", "d1", "--confirm")
        assert dropped.exit_code == 0, dropped.output
        assert "Dropped the domain d1 and its" in dropped.output
        assert _rows_of(settings, "d1") == {}
        assert _revision(settings) == before

        # Only the domain left is named now, with its own way forward.
        stopped = _cli(settings, "credentials", "list")
        message = " ".join(stopped.output.split())
        assert stopped.exit_code == 1
        assert "domain d2 with its key" in message
        assert "d1:" not in message and "domain d1" not in message
        assert "drop-unreadable" not in message and "each with its way" not in message
        keyring.enable(k2)
        assert _cli(settings, "credentials", "list").exit_code == 0
        assert _revision(settings) != before
        assert _contacts_of(settings, "d2") == ["c-d2"]
        assert _contacts_of(settings, "d3") == ["c-d3"]


@pytest.mark.moto
def test_a_kms_key_disabled_pending_deletion_or_out_of_the_shell_s_reach_is_not_dropped(
    settings: Settings, moto_url: str, aws_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The drop took any KMS failure but an outage for a key gone: it dropped a domain whose key
    was disabled or pending deletion (undone in KMS, too late), or that the operator's shell
    could not use (another region, no AWS credentials) while the server could. Each is refused
    now with its recovery step, and the domain is there when the key works again."""
    with kms_proxy(moto_url) as proxy:
        settings = replace(settings, kms_endpoint_url=proxy.url, aws_region="us-east-1")
        kms = boto3.client("kms", endpoint_url=moto_url, region_name="us-east-1")
        created = kms.create_key()["KeyMetadata"]
        key, key_id = created["Arn"], created["KeyId"]  # moto changes a key's state by its id
        _domains_with_contacts_on_kms(settings, monkeypatch, proxy.url, {"d1": key})
        _back_to(settings, "0021")

        def refused(expected: str) -> None:
            result = _cli(settings, "domains", "drop-unreadable", "d1", "--confirm")
            text = " ".join(result.output.split())
            assert result.exit_code == 1, result.output
            assert "is not gone for good" in text and expected in text, text
            assert _rows_of(settings, "d1")["profile"] == 1

        kms.disable_key(KeyId=key_id)
        stopped = _cli(settings, "credentials", "list")
        message = " ".join(stopped.output.split())
        assert stopped.exit_code == 1
        assert "enable it (in KMS: aws kms enable-key)" in message
        assert "drop-unreadable" not in message
        refused("enable it (in KMS: aws kms enable-key)")

        kms.enable_key(KeyId=key_id)
        kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
        refused("cancel its deletion (aws kms cancel-key-deletion")
        kms.cancel_key_deletion(KeyId=key_id)
        kms.enable_key(KeyId=key_id)

        monkeypatch.setenv("OPENPROFILES_AWS_REGION", "eu-west-1")
        refused(f"The KMS key {key} is in region us-east-1, but KMS is called in region eu-west-1")
        monkeypatch.setenv("OPENPROFILES_AWS_REGION", "us-east-1")
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        refused("No AWS credentials were found")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")

        assert _cli(settings, "credentials", "list").exit_code == 0
        assert _contacts_of(settings, "d1") == ["c-d1"]


@pytest.mark.moto
def test_a_deleted_kms_key_is_dropped_only_on_kms_s_proof(
    settings: Settings, moto_url: str, aws_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The domain names its KMS key by an alias ARN. The alias deleted, the key not: KMS still
    unwraps the data key, so nothing is dropped. The key deleted too: KMS no longer says which
    key the alias named (a Decrypt of the data key answers AccessDenied, as for a key these
    credentials may not use). At a revision from before the server recorded which key an alias
    named (0032; here 0021, the upgrade stopped), nothing proves it: a key ARN the operator
    gives is refused, since DescribeKey answers NotFound for one that never existed too."""
    with kms_proxy(moto_url) as proxy:
        settings = replace(settings, kms_endpoint_url=proxy.url, aws_region="us-east-1")
        kms = boto3.client("kms", endpoint_url=moto_url, region_name="us-east-1")
        key = kms.create_key()["KeyMetadata"]
        kms.create_key()  # ListKeys lists it
        kms.create_alias(AliasName="alias/op-billing", TargetKeyId=key["KeyId"])
        alias = f"arn:aws:kms:us-east-1:{key['AWSAccountId']}:alias/op-billing"
        _domains_with_contacts_on_kms(settings, monkeypatch, proxy.url, {"d1": alias, "d3": None})
        _back_to(settings, "0021")
        kms.delete_alias(AliasName="alias/op-billing")

        stopped = _cli(settings, "credentials", "list")
        message = " ".join(stopped.output.split())
        assert stopped.exit_code == 1, stopped.output
        assert f"still holds the key {key['Arn']} the data key was wrapped under" in message
        assert "drop-unreadable" not in message
        refused = _cli(settings, "domains", "drop-unreadable", "d1", "--confirm")
        assert refused.exit_code == 1 and "still holds the key" in refused.output

        proxy.delete(key["Arn"])
        stopped = _cli(settings, "credentials", "list")
        message = " ".join(stopped.output.split())
        assert stopped.exit_code == 1, stopped.output
        assert f"The KMS key {alias} does not exist in region us-east-1" in message
        assert "KMS does not say which key it named" in message
        assert "answers AccessDeniedException" in message
        assert "OpenProfiles never learnt which key the alias named" in message
        assert "drop-unreadable" not in message
        refused = _cli(
            settings, "domains", "drop-unreadable", "d1", "--key-lost", key["Arn"], "--confirm"
        )
        text = " ".join(refused.output.split())
        assert refused.exit_code == 1, refused.output
        assert "OpenProfiles never learnt which key the alias named" in text
        assert "Nothing was deleted" in text
        assert _rows_of(settings, "d1")["profile"] == 1


@pytest.mark.moto
def test_a_gone_alias_s_domain_is_dropped_only_for_the_key_the_alias_named(
    settings: Settings, moto_url: str, aws_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A review: the alias deleted, its key alive and the operator's shell denied Decrypt, the
    drop took any key ARN of the alias's account and region that DescribeKey answered NotFound
    for, a made-up one too, and dropped a domain whose key was alive. The server records the
    key an alias named (here at CreateDomain, by its background task); the drop takes that key
    only, and only once KMS proves it deleted from a client shown to reach the account."""
    with kms_proxy(moto_url) as proxy:
        settings = replace(settings, kms_endpoint_url=proxy.url, aws_region="us-east-1")
        kms = boto3.client("kms", endpoint_url=moto_url, region_name="us-east-1")
        key = kms.create_key()["KeyMetadata"]
        alive = kms.create_key()["KeyMetadata"]["Arn"]  # ListKeys lists it
        kms.create_alias(AliasName="alias/op-named", TargetKeyId=key["KeyId"])
        alias = f"arn:aws:kms:us-east-1:{key['AWSAccountId']}:alias/op-named"
        _domains_with_contacts_on_kms(settings, monkeypatch, proxy.url, {"d1": alias, "d3": None})
        assert _aliased_keys(settings) == {"d1": key["Arn"]}
        kms.delete_alias(AliasName="alias/op-named")
        proxy.refuse("Decrypt", "AccessDeniedException", times=1000)

        def refused(*named: str) -> str:
            args = ("--key-lost", named[0]) if named else ()
            result = _cli(settings, "domains", "drop-unreadable", "d1", *args, "--confirm")
            text = " ".join(result.output.split())
            assert result.exit_code == 1, text
            return text

        made_up = f"arn:aws:kms:us-east-1:{key['AWSAccountId']}:key/" + "0" * 8 + "-0000" * 3
        made_up += "-" + "0" * 12
        text = refused(made_up)
        assert f"--key-lost {made_up} is not the key the alias {alias} named" in text
        assert f"({key['Arn']})" in text and "Nothing was deleted" in text
        text = refused(alive)
        assert "is not the key the alias" in text
        text = refused()
        assert f"the alias named the key {key['Arn']}" in text
        assert f"--key-lost {key['Arn']}" in text
        # The key is alive: the shell's denial is what to mend.
        text = refused(key["Arn"])
        assert "is not gone for good" in text and "allowed to use the key" in text
        assert _rows_of(settings, "d1")["profile"] == 1

        proxy.delete(key["Arn"])
        proxy.refuse("ListKeys", "AccessDeniedException")
        text = refused(key["Arn"])
        assert "no other call shows it to be the KMS of account" in text
        assert "ListKeys failed: AccessDeniedException" in text
        assert _rows_of(settings, "d1")["profile"] == 1

        dropped = _cli(
            settings, "domains", "drop-unreadable", "d1", "--key-lost", key["Arn"], "--confirm"
        )
        assert dropped.exit_code == 0, dropped.output
        assert "Dropped the domain d1 and its" in dropped.output
        assert _rows_of(settings, "d1") == {}
        assert _contacts_of(settings, "d3") == ["c-d3"]


@pytest.mark.moto
def test_the_key_an_alias_names_is_recorded_when_it_works_and_follows_the_data_key(
    settings: Settings, moto_url: str, aws_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A domain made before the record (here: the database taken back to 0021) gets it when the
    server next unwraps its data key (here the upgrade's 0022). A record names only the data
    key it was made with: after a change of the domain's key it names nothing until the server
    records the new key's."""
    settings = replace(settings, kms_endpoint_url=moto_url, aws_region="us-east-1")
    kms = boto3.client("kms", endpoint_url=moto_url, region_name="us-east-1")
    first = kms.create_key()["KeyMetadata"]
    second = kms.create_key()["KeyMetadata"]
    run = uuid.uuid4().hex[:8]  # one moto for the session: an alias of this run's own
    kms.create_alias(AliasName=f"alias/op-first-{run}", TargetKeyId=first["KeyId"])
    kms.create_alias(AliasName=f"alias/op-second-{run}", TargetKeyId=second["KeyId"])
    prefix = f"arn:aws:kms:us-east-1:{first['AWSAccountId']}:alias/"
    _domains_with_contacts_on_kms(
        settings, monkeypatch, moto_url, {"d1": f"{prefix}op-first-{run}", "d3": None}
    )
    _back_to(settings, "0021")
    assert _aliased_keys(settings) == {}
    assert _cli(settings, "credentials", "list").exit_code == 0  # the upgrade unwraps d1's key
    assert _aliased_keys(settings) == {"d1": first["Arn"]}

    services = build_services(settings)
    try:
        with services.read() as tx:
            row = tx.conn.execute(text("SELECT key_id, wrapped_key FROM domain WHERE name='d1'"))
            key_id, wrapped = row.one()
        changed = services.keys.rewrap_domain_key(
            "d1", key_id, bytes(wrapped), f"{prefix}op-second-{run}"
        )
        with services.write() as tx:
            update_domain(
                tx, domain_name="d1", changes={}, new_key=(changed.key_id, changed.wrapped)
            )
        assert _aliased_keys(settings) == {}  # the record is of the data key wrapped before
        _record_aliased_keys(services)
        assert _aliased_keys(settings) == {"d1": second["Arn"]}
        # Recorded once: unwrapped again (the data key's cache emptied), the key is what this
        # process recorded, so nothing is left to record and no write is made for it.
        assert services.keys.aliased_keys_to_record() == []
        services.keys.forget("d1")
        with services.read() as tx:
            wrapped = tx.conn.execute(
                text("SELECT wrapped_key FROM domain WHERE name = 'd1'")
            ).scalar_one()
        services.keys.cipher_for("d1", changed.key_id, bytes(wrapped))
        assert services.keys.aliased_keys_to_record() == []
    finally:
        services.database.dispose()


@pytest.mark.moto
def test_a_deleted_kms_key_is_dropped_though_kms_denies_its_ciphertext(
    settings: Settings, moto_url: str, aws_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KMS answers a Decrypt (without KeyId) of a data key wrapped under a key it deleted with
    AccessDenied, never NotFound: the drop took only NotFound or InvalidCiphertext from that
    Decrypt as proof, so a domain whose key really is deleted could never be dropped. DescribeKey
    is the proof now, from a client that describes another domain's key of the account."""
    with kms_proxy(moto_url) as proxy:
        settings = replace(settings, kms_endpoint_url=proxy.url, aws_region="us-east-1")
        kms = boto3.client("kms", endpoint_url=moto_url, region_name="us-east-1")
        key = kms.create_key()["KeyMetadata"]["Arn"]
        witness = kms.create_key()["KeyMetadata"]["Arn"]
        _domains_with_contacts_on_kms(
            settings, monkeypatch, proxy.url, {"d1": key, "d2": witness, "d3": None}
        )
        _back_to(settings, "0021")
        proxy.delete(key)
        # The proxy answers a deleted key as KMS does.
        through = boto3.client("kms", endpoint_url=proxy.url, region_name="us-east-1")
        probe = kms.create_key()["KeyMetadata"]["Arn"]
        blob = through.encrypt(KeyId=probe, Plaintext=b"x")["CiphertextBlob"]
        proxy.delete(probe)
        with pytest.raises(through.exceptions.ClientError) as denied:
            through.decrypt(CiphertextBlob=blob)
        assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
        with pytest.raises(through.exceptions.NotFoundException):
            through.describe_key(KeyId=probe)

        stopped = _cli(settings, "credentials", "list")
        message = " ".join(stopped.output.split())
        assert stopped.exit_code == 1, stopped.output
        assert "d1: its key is gone for good" in message and _drop_command("d1") in message
        dropped = _cli(settings, "domains", "drop-unreadable", "d1", "--confirm")
        assert dropped.exit_code == 0, dropped.output
        assert _rows_of(settings, "d1") == {}
        assert _cli(settings, "credentials", "list").exit_code == 0
        assert _contacts_of(settings, "d2") == ["c-d2"]


@pytest.mark.moto
def test_a_not_found_from_another_kms_endpoint_drops_nothing(
    settings: Settings, moto_url: str, aws_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator's shell points at another KMS endpoint than the server's (another emulator,
    a proxy): every key is NotFound there, and ListKeys succeeded, which the drop took for a
    working client: it dropped a domain whose key is enabled in the server's KMS. A ListKeys
    that lists no key of the key's account and region proves nothing now."""
    settings = replace(settings, kms_endpoint_url=moto_url, aws_region="us-east-1")
    kms = boto3.client("kms", endpoint_url=moto_url, region_name="us-east-1")
    key = kms.create_key()["KeyMetadata"]["Arn"]
    _domains_with_contacts_on_kms(settings, monkeypatch, moto_url, {"d1": key, "d3": None})
    other_url, stop = start_moto_server()
    try:
        monkeypatch.setenv("OPENPROFILES_KMS_ENDPOINT_URL", other_url)
        refused = _cli(settings, "domains", "drop-unreadable", "d1", "--confirm")
        text = " ".join(refused.output.split())
        assert refused.exit_code == 1, refused.output
        assert f"KMS at {other_url} answers that the key {key} does not exist" in text
        assert "ListKeys lists no key of account" in text and "Nothing was deleted" in text
    finally:
        stop()
    monkeypatch.setenv("OPENPROFILES_KMS_ENDPOINT_URL", moto_url)
    assert _contacts_of(settings, "d1") == ["c-d1"]


def test_without_proof_of_the_keyring_no_domain_is_dropped(
    settings: Settings, tmp_path: Path
) -> None:
    """With no API credential stored, the drop had no proof the keyring was the database's: with
    another data dir's keyring it dropped a domain whose key is fine in the server's, and the
    start-up check told the operator to. Now: nothing sealed under the default key and no
    domain's key in the keyring is no proof, and refused; a web user's sealed name is proof
    (and disproof), as a domain whose key unwraps is."""
    keyring = Keyring(settings.keyring_path)
    k1 = keyring.create_key("k1").arn(settings.region, settings.account_id)
    services = build_services(settings)
    try:
        make_domain(services, "d1", k1)
    finally:
        services.database.dispose()
    elsewhere = replace(
        settings, data_dir=tmp_path / "elsewhere", database_url=settings.effective_database_url
    )
    Keyring(elsewhere.keyring_path).default_key()  # another installation's keyring

    started = _cli(elsewhere, "credentials", "list")
    text = " ".join(started.output.split())
    assert started.exit_code == 1, started.output
    assert f"does not hold the local key {k1}" in text
    assert "A lost key cannot be told from a keyring that is not the database's" in text
    assert "drop-unreadable" not in text
    refused = _cli(elsewhere, "domains", "drop-unreadable", "d1", "--confirm")
    text = " ".join(refused.output.split())
    assert refused.exit_code == 1, refused.output
    assert "nothing in the database proves the keyring" in text
    assert _rows_of(settings, "d1")["domain"] == 1

    services = build_services(settings)
    try:
        with services.write() as tx:
            create_user(tx, username="ops@example.com", password="a long pass phrase", role="admin")
    finally:
        services.database.dispose()
    refused = _cli(elsewhere, "domains", "drop-unreadable", "d1", "--confirm")
    text = " ".join(refused.output.split())
    assert refused.exit_code == 1, refused.output
    assert "its default key does not open the web users' names" in text
    assert _rows_of(settings, "d1")["domain"] == 1

    # The server's own keyring, the key lost from it: the sealed name proves it the database's.
    document = json.loads(settings.keyring_path.read_text())
    document["keys"] = [k for k in document["keys"] if k["alias"] != "k1"]
    settings.keyring_path.write_text(json.dumps(document))
    started = _cli(settings, "credentials", "list")
    text = " ".join(started.output.split())
    assert started.exit_code == 1 and _lost_key_drop_command("d1", k1) in text
    # The key id alone names it too.
    key_id = k1.rsplit("/", 1)[1]
    dropped = _cli(settings, "domains", "drop-unreadable", "d1", "--key-lost", key_id, "--confirm")
    assert dropped.exit_code == 0, dropped.output
    assert _rows_of(settings, "d1") == {}


@pytest.mark.moto
def test_the_drop_asks_kms_without_holding_the_database(
    sqlite_settings: Settings, moto_url: str, aws_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The drop asked KMS about the key inside the migrations' transaction (on SQLite, BEGIN
    IMMEDIATE under the writer lock): a KMS taking its timeouts and retries held every write of
    a server on the database as long (59 s in review). Now a write goes through while the drop
    waits on KMS, and the drop then finishes."""
    with kms_proxy(moto_url) as proxy:
        settings = replace(sqlite_settings, kms_endpoint_url=proxy.url, aws_region="us-east-1")
        kms = boto3.client("kms", endpoint_url=moto_url, region_name="us-east-1")
        key = kms.create_key()["KeyMetadata"]["Arn"]
        kms.create_key()  # ListKeys lists a key of the account: KMS's NotFound is proof
        _domains_with_contacts_on_kms(settings, monkeypatch, proxy.url, {"d1": key, "d3": None})
        proxy.delete(key)
        held = proxy.hold("Decrypt")
        dropped: list[Dropped] = []
        drop = threading.Thread(
            target=lambda: dropped.append(drop_unreadable(settings, "d1", confirm=True))
        )
        drop.start()
        database = Database.from_settings(settings)

        def write() -> None:
            with database.write() as conn:
                conn.execute(text("DELETE FROM credential WHERE access_key_id = 'none'"))

        writer = threading.Thread(target=write)
        try:
            assert held.reached.wait(timeout=60)
            writer.start()
            writer.join(timeout=10)
            assert not writer.is_alive(), "a write waited on the drop's call to KMS"
        finally:
            held.release.set()
            drop.join(timeout=120)
            if writer.ident is not None:
                writer.join(timeout=60)
            database.dispose()
        assert dropped and dropped[0].deleted
        assert _rows_of(settings, "d1") == {}


# A bound on how long a thread may take to get where the test awaits it, not a delay.
WAIT_BOUND_SECONDS = 60
_WAITING_ON_ADVISORY_LOCK = text(
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
    "AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
)


def test_the_drop_reads_the_domain_only_after_an_upgrade_under_way(settings: Settings) -> None:
    """The drop's first read (the domain and the evidence of its key) is made before the
    upgrade it makes way for, as build_services' checks are: on PostgreSQL it holds the
    migration lock shared (store.migrate.before_migrating), so with another process's upgrade
    under way it reads nothing until that upgrade has ended, rather than holding table locks
    the upgrade may wait for (the deadlock of test_start_during_upgrade). On SQLite a reader
    waits for no writer: it reads at once, and only its delete waits for the upgrade.

    The upgrade is held (the migration lock taken and kept, as `migrating` does), and released
    once the drop waits on an advisory lock (PostgreSQL) or has read the domain (SQLite)."""
    keyring = Keyring(settings.keyring_path)
    lost = keyring.create_key("lost")
    arn = lost.arn(settings.region, settings.account_id)
    _domains_with_contacts(settings, {"d1": arn, "d3": None})
    _without_key(settings, lost.key_id)

    upgrading = threading.Event()
    upgrade_over = threading.Event()
    domain_read = threading.Event()
    read_while_upgrading: list[bool] = []
    dropped: list[Dropped] = []
    errors: list[BaseException] = []
    database = Database.from_settings(settings)

    def upgrade() -> None:
        try:
            with migrating(database):
                upgrading.set()
                # Waiting on the test, which ends the upgrade once the drop has got where it
                # is awaited (bounded: a failed test must not leave the lock held).
                upgrade_over.wait(WAIT_BOUND_SECONDS)
        except BaseException as exc:  # handed to the test
            errors.append(exc)

    def drop() -> None:
        try:
            dropped.append(drop_unreadable(settings, "d1", confirm=True, key_lost=arn))
        except BaseException as exc:  # handed to the test
            errors.append(exc)

    dropping = threading.Thread(target=drop, daemon=True)

    def note_domain_read(conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        mine = threading.current_thread() is dropping
        if mine and not domain_read.is_set() and "FROM domain" in statement:
            read_while_upgrading.append(not upgrade_over.is_set())
            domain_read.set()

    upgrader = threading.Thread(target=upgrade, daemon=True)
    event.listen(Engine, "before_cursor_execute", note_domain_read)
    try:
        upgrader.start()
        assert upgrading.wait(WAIT_BOUND_SECONDS), "the upgrade never took the migration lock"
        dropping.start()
        if settings.is_sqlite:
            assert domain_read.wait(WAIT_BOUND_SECONDS), "the drop never read the domain"
        else:
            _await_a_wait_on_the_migration_lock(database, dropping)
        upgrade_over.set()
        upgrader.join(WAIT_BOUND_SECONDS)
        dropping.join(WAIT_BOUND_SECONDS)
    finally:
        upgrade_over.set()
        event.remove(Engine, "before_cursor_execute", note_domain_read)
        database.dispose()
    assert not upgrader.is_alive() and not dropping.is_alive(), "a thread never ended"
    assert errors == []
    # PostgreSQL: nothing read while the upgrade held the lock; SQLite: read at once.
    assert read_while_upgrading == [settings.is_sqlite]
    assert dropped and dropped[0].deleted
    assert _rows_of(settings, "d1") == {}
    assert _contacts_of(settings, "d3") == ["c-d3"]


def _await_a_wait_on_the_migration_lock(database: Database, dropping: threading.Thread) -> None:
    """Return once a session of the database waits on an advisory lock (the drop's, as nothing
    else runs), or fail after WAIT_BOUND_SECONDS."""
    deadline = time.monotonic() + WAIT_BOUND_SECONDS
    while True:
        with database.engine.connect() as conn:
            if conn.execute(_WAITING_ON_ADVISORY_LOCK).scalar():
                return
        assert dropping.is_alive(), "the drop ended while the upgrade held the migration lock"
        assert time.monotonic() < deadline, "the drop never waited for the migration lock"
        # Polling the drop's state, not a delay: it waits on the lock or ends meanwhile.
        dropping.join(timeout=0.01)
