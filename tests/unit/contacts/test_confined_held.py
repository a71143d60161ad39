"""A confined record (contacts.confined: sent by a key limited to some domains, kept waiting in
its domain) whose instance moves away while its domain's key cannot be used is held for its
domain, not dead-lettered (nothing of the domain can be sealed) nor sent along; once the key
can be used again, it is dead-lettered there, never placed in the instance's new domain. On
SQLite and PostgreSQL, through the real service functions and a real keyring."""

from __future__ import annotations

import json

from tests.unit.contacts.test_waiting_records_moves import NEW, letters_of
from tests.unit.integrations.integ_helpers import INSTANCE, associate, ctr, make_domain

from openprofiles.app import build_services
from openprofiles.auth.scope import DomainScope
from openprofiles.contacts.confined import confined_reason
from openprofiles.contacts.kept import list_unrouted
from openprofiles.contacts.records import split_body
from openprofiles.contacts.service import connect_instance, ingest_contact_items
from openprofiles.contacts.sweep import send_kept_on
from openprofiles.crypto.keyring import Keyring
from openprofiles.dlq.service import count as count_letters
from openprofiles.settings import Settings

CARE = "care"


def test_a_confined_record_is_held_while_its_domain_s_key_is_disabled(settings: Settings) -> None:
    keyring = Keyring(settings.keyring_path)
    care_key = keyring.create_key("care")
    scope = DomainScope("AKIDSCOPEDTOCARE", frozenset({CARE}), settings.region, settings.account_id)
    task = ctr(
        "planted",
        channel="TASK",
        address=None,
        PreviousContactId="C1",
        Attributes={"note": "sent with care's key"},
    )
    services = build_services(settings)
    try:
        make_domain(services, CARE, care_key.arn(settings.region, settings.account_id))
        associate(services, CARE, object_type_name="CTR")
        make_domain(services, NEW)
        with services.write() as tx:
            planted = ingest_contact_items(tx, split_body(json.dumps(task)), scope=scope)
        [waiting] = planted.rejected
        assert "is kept" in waiting.message, waiting
    finally:
        services.database.dispose()

    keyring.disable(care_key.key_id)
    services = build_services(settings)  # no cipher of care's kept from before
    try:
        with services.write() as tx:
            connect_instance(tx, domain_name=NEW, instance_arn=INSTANCE, move=True)
        with services.read() as tx:
            [held] = list_unrouted(tx)
            # Counted, not listed: care's letters cannot be opened while its key is disabled.
            assert count_letters(tx, domain_name=CARE) == 0
        assert held.confined_to == CARE and held.instance_arn == INSTANCE
        assert "disabled" in held.reason and "sent on to the domain" in held.reason, held.reason
        assert letters_of(services, NEW) == []
    finally:
        services.database.dispose()

    keyring.enable(care_key.key_id)
    services = build_services(settings)
    try:
        sent = send_kept_on(services)
        assert sent.dead_lettered.get(CARE) == 1 and not sent.accepted
        assert letters_of(services, CARE) == [confined_reason(CARE)]
        assert letters_of(services, NEW) == []
        with services.read() as tx:
            assert list_unrouted(tx) == []
    finally:
        services.database.dispose()
