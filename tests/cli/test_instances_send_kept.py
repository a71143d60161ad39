"""`openprofiles instances associate` with more kept contact records than one transaction
replays, and `openprofiles instances send-kept` finishing an association whose process stopped
among its chunks (both backends, a real data dir and database)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from click.testing import CliRunner
from tests.unit.integrations.integ_helpers import INSTANCE, associate, ctr, make_domain, send

from openprofiles.app import build_services
from openprofiles.cli import main
from openprofiles.contacts import service as contacts
from openprofiles.contacts import sweep
from openprofiles.contacts.kept import count_unrouted
from openprofiles.contacts.records import split_body
from openprofiles.contacts.service import REPLAY_CHUNK, connect_instance
from openprofiles.crypto.keyring import Keyring
from openprofiles.settings import Settings

D = "cli-kept"


def _run(settings: Settings, *args: str) -> str:
    common = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        common += ["--database-url", settings.database_url]
    result = CliRunner().invoke(main, [*args, *common], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _keep(settings: Settings, count: int) -> None:
    services = build_services(settings)
    try:
        make_domain(services, D)
        records = [ctr(f"kept-{n:05d}", address=f"+1720{n:07d}") for n in range(count)]
        for start in range(0, count, REPLAY_CHUNK):
            assert send(services, *records[start : start + REPLAY_CHUNK]).unrouted
    finally:
        services.database.dispose()


@pytest.mark.parametrize("settings", ["postgres"], indirect=True)
def test_associate_sends_on_thousands_of_kept_records(settings: Settings) -> None:
    """6,000 kept records: the association commits with the first chunk and the command sends
    the rest, a transaction a chunk. Before, it failed with PostgreSQL "out of shared memory"
    (every record's advisory locks in one transaction) and associated nothing."""
    _keep(settings, 6000)

    out = _run(settings, "instances", "associate", "--instance", INSTANCE, "--domain", D)

    assert "Replayed 6000 contact records" in out and "6000 accepted, 0 rejected" in out
    services = build_services(settings)
    try:
        with services.read() as tx:
            assert count_unrouted(tx, instance_arn=INSTANCE) == {}
    finally:
        services.database.dispose()


def test_send_kept_finishes_an_association_that_stopped_between_chunks(
    settings: Settings,
) -> None:
    _keep(settings, REPLAY_CHUNK + 30)
    services = build_services(settings)
    try:
        # Only the association's own transaction, as if its process stopped after the commit.
        with services.write() as tx:
            connect_instance(tx, domain_name=D, instance_arn=INSTANCE, move=False)

        out = _run(settings, "instances", "send-kept")

        assert "Sent on 30 kept contact records: 30 accepted, 0 rejected; 0 kept again" in out
        with services.read() as tx:
            assert count_unrouted(tx, instance_arn=INSTANCE) == {}
        assert "Sent on 0 kept contact records" in _run(settings, "instances", "send-kept")
    finally:
        services.database.dispose()


def test_send_kept_counts_records_held_again_as_neither_sent_nor_rejected(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The domain's key fails between choosing the instances whose domain can take records
    and sending them on: the records are kept again. They were counted as sent on and as
    rejected ("Sent on 3 ...: 0 accepted, 3 rejected, 3 kept again"), though none went
    anywhere."""
    settings = dataclasses.replace(settings, data_key_cache_seconds=0)
    keyring = Keyring(settings.keyring_path)
    services = build_services(settings)
    try:
        key = keyring.create_key("send-kept").arn(settings.region, settings.account_id)
        make_domain(services, D, key)
        associate(services, D)
        keyring.disable(key)
        body = "\n".join(json.dumps(ctr(f"held-{n}")) for n in range(3))
        with services.write() as tx:
            held = contacts.ingest_contact_items(tx, split_body(body), hold_unavailable=True)
        assert held.held == 3
        keyring.enable(key)
    finally:
        services.database.dispose()
    replay = sweep.replay_held

    def key_fails_meanwhile(tx: Any, **arguments: Any) -> Any:
        keyring.disable(key)
        return replay(tx, **arguments)

    monkeypatch.setattr(sweep, "replay_held", key_fails_meanwhile)
    # The command's own settings, read from the environment: no data key kept in memory.
    monkeypatch.setenv("OPENPROFILES_DATA_KEY_CACHE_SECONDS", "0")

    out = _run(settings, "instances", "send-kept")

    assert "Sent on 0 kept contact records: 0 accepted, 0 rejected; 3 kept again" in out, out
    services = build_services(settings, migrate=False)
    try:
        with services.read() as tx:
            assert count_unrouted(tx, instance_arn=INSTANCE) == {INSTANCE: 3}
    finally:
        services.database.dispose()
