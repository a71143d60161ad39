"""Migration 0014 on both databases: a dead letter stored before it without a sink error was sent
to SQS or kept here only for want of a queue (its version did not tell them apart). After the
upgrade to head it reads "Not recorded", not "Sent"; the resend scan never sends it, even to a
queue the domain gets later (moto's server mode), while a letter whose send failed then is sent;
`dlq list` shows it; retry and purge work on it. Letters stored at head read as before: "No
queue" without a queue, "Sent" once sent. Downgrading 0014 gives the old letters back as their
versions stored them."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from click.testing import CliRunner
from sqlalchemy import text
from tests.unit.dlq.conftest import REGION, aws_env, receive_all, sqs
from tests.unit.dlq.test_dlq_resend import missing_queue, set_queue, storage

from openprofiles.app import build_services
from openprofiles.cli import main
from openprofiles.dlq import service as dlq
from openprofiles.dlq.resend import resend_pending
from openprofiles.dlq.sinks import dead_letter
from openprofiles.settings import Settings
from openprofiles.store.database import Database
from openprofiles.store.migrate import downgrade_to, upgrade_to, upgrade_to_head

__all__ = ["aws_env"]  # a fixture of the dead-letter tests, used here by name

DOMAIN = "d1"
STAMP = "2026-11-28 12:00:00"
# Sink errors as versions before 0014 stored them: none (sent, or no queue), a failed send's
# text (sealed by 0020, resent), and the mark of the code of 0014's own commit.
OLD_LETTERS = {
    "m1": None,
    "m2": "SQS refused the message: AWS.SimpleQueueService.NonExistentQueue",
    "m3": "the domain had no dead-letter queue when the record was dead-lettered",
}
SINK_QUERY = text("SELECT message_id, sink_error FROM dlq_message")


def _pre_0014(settings: Settings) -> tuple[Database, Any]:
    """A database at 0013 holding a domain and OLD_LETTERS as they were stored then; and the key
    manager."""
    from openprofiles.crypto.domain_keys import KeyManager
    from openprofiles.crypto.keyring import Keyring
    from openprofiles.crypto.providers import ProviderResolver

    keys = KeyManager(ProviderResolver(settings, Keyring(settings.keyring_path)))
    wrapped = keys.new_domain_key(DOMAIN)
    cipher = keys.cipher_for(DOMAIN, wrapped.key_id, wrapped.wrapped)
    database = Database.from_settings(settings)
    upgrade_to(database, "0013")
    with database.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO domain (name, key_id, wrapped_key, config, created_at, updated_at) "
                "VALUES (:d, :k, :w, '{}', :t, :t)"
            ),
            {"d": DOMAIN, "k": wrapped.key_id, "w": wrapped.wrapped, "t": STAMP},
        )
        conn.execute(
            text(
                "INSERT INTO dlq_message (domain_name, message_id, object_type_name, sealed, "
                "reason_category, attempts, sink_error, created_at, last_attempt_at) VALUES "
                "(:d, :m, 'Crm', :s, 'no_profile', 1, :e, :t, :t)"
            ),
            [
                {
                    "d": DOMAIN,
                    "m": m,
                    "s": cipher.seal_record(
                        "dlq_message", m, {"object": json.dumps({"id": m}), "reason": "r"}
                    ),
                    "e": error,
                    "t": STAMP,
                }
                for m, error in OLD_LETTERS.items()
            ],
        )
    return database, keys


def test_0014_marks_old_letters_not_recorded_and_they_are_never_resent(
    settings: Settings, moto_url: str, aws_env: None
) -> None:
    database, keys = _pre_0014(settings)
    try:
        upgrade_to_head(database, keys)
        with database.engine.connect() as conn:
            stored = dict(conn.execute(SINK_QUERY).all())
    finally:
        database.dispose()
    services = build_services(
        dataclasses.replace(settings, sqs_endpoint_url=moto_url, aws_region=REGION)
    )

    def status(message_id: str) -> str:
        with services.read() as tx:
            return dlq.delivery_status(dlq.get(tx, domain_name=DOMAIN, message_id=message_id))

    def reject(record_id: str) -> str:
        return dead_letter(
            services,
            domain_name=DOMAIN,
            object_type_name="Crm",
            object_json=json.dumps({"id": record_id}),
            reason="No profile matched.",
            category="no_profile",
        ).message_id

    try:
        not_recorded = status("m1")
        assert not_recorded.startswith("Not recorded (")
        assert "may or may not have reached a queue" in not_recorded
        assert status("m2") == f"Not sent: {OLD_LETTERS['m2']}"
        assert status("m3") == "No queue (kept here only)"
        # Kept in clear through 0020, which seals every sink error but the fixed marks.
        assert stored == {"m1": dlq.NOT_RECORDED, "m2": dlq.SQS_FAILED, "m3": dlq.NO_QUEUE}
        # Stored at head without a queue: no queue, as before.
        kept_here = reject("r1")
        assert status(kept_here) == "No queue (kept here only)"
        with services.read() as tx:
            assert dlq.count_undelivered(tx, domain_name=DOMAIN) == 1  # m2

        # The domain gets a queue: the resend sends the failed one only.
        name, url = missing_queue(moto_url)
        client = sqs(moto_url)
        client.create_queue(QueueName=name)
        set_queue(services, url, DOMAIN)
        outcome = resend_pending(services, domain_name=DOMAIN)
        assert (outcome.sent, outcome.failed, outcome.waiting) == (["m2"], [], 0)
        assert [m["Body"] for m in receive_all(client, url)] == [json.dumps({"id": "m2"})]
        assert resend_pending(services, domain_name=DOMAIN).sent == []
        with services.read() as tx:
            assert dlq.count_undelivered(tx, domain_name=DOMAIN) == 0
        assert status("m1") == not_recorded
        assert status("m2") == "Sent"
        # Stored at head with the queue: sent, and shown so.
        sent = reject("r2")
        assert status(sent) == "Sent"
        assert len(receive_all(client, url)) == 1

        listed = CliRunner(
            env={"OPENPROFILES_SQS_ENDPOINT_URL": moto_url, "OPENPROFILES_AWS_REGION": REGION}
        ).invoke(main, ["dlq", "list", *storage(settings), "--domain", DOMAIN, "--json"])
        assert listed.exit_code == 0, listed.output
        delivery = {x["MessageId"]: x["Delivery"] for x in json.loads(listed.stdout)}
        assert delivery["m1"] == not_recorded

        # A retry that fails again (no object type Crm) counts an attempt and keeps the mark.
        outcome_retry = dlq.retry_in_batches(services, domain_name=DOMAIN, message_ids=["m1"])
        assert outcome_retry.failed == ["m1"]
        with services.read() as tx:
            assert dlq.get(tx, domain_name=DOMAIN, message_id="m1").attempts == 2
        assert status("m1") == not_recorded
        assert resend_pending(services, domain_name=DOMAIN).sent == []
        with services.write() as tx:
            assert dlq.purge(tx, domain_name=DOMAIN, message_ids=["m1"]) == 1
            assert dlq.missing(tx, domain_name=DOMAIN, message_ids=["m1"]) == ["m1"]
    finally:
        services.database.dispose()


def test_0014_downgrade_gives_the_old_letters_back_unmarked(settings: Settings) -> None:
    database, keys = _pre_0014(settings)
    try:
        upgrade_to(database, "0014", keys)
        with database.engine.connect() as conn:
            marked = dict(conn.execute(SINK_QUERY).all())
        downgrade_to(database, "0013", keys)
        with database.engine.connect() as conn:
            unmarked = dict(conn.execute(SINK_QUERY).all())
    finally:
        database.dispose()
    assert marked == {**OLD_LETTERS, "m1": dlq.NOT_RECORDED}
    assert unmarked == OLD_LETTERS
