"""Held contact records note the domain they wait for (contacts.kept `held_for`): one held for
a domain its instance was moved away from (whose KMS did not answer) is sent on once that KMS
answers, whatever the instance's domain's key; DeleteDomain deletes the records held for the
domain as their instance's domain, and leaves to the instance's domain those held for it as a
domain the instance left — on SQLite and PostgreSQL, through the real service functions."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from tests.unit.contacts.test_contacts_after_a_move import (
    LATER,
    _on_a_kms_key,
    kms_down,
    stored,
)
from tests.unit.contacts.test_contacts_without_endpoint import CALLER, D
from tests.unit.contacts.test_waiting_records_moves import NEW, move_instance, on_profile_in_new
from tests.unit.integrations.integ_helpers import INSTANCE, associate, ctr, make_domain, send

from openprofiles.app import build_services
from openprofiles.contacts.kept import list_unrouted
from openprofiles.contacts.records import split_body
from openprofiles.contacts.service import connect_instance, ingest_contact_items
from openprofiles.contacts.sweep import send_kept_on
from openprofiles.crypto.keyring import Keyring
from openprofiles.domains.service import delete_domain
from openprofiles.integrations.service import delete_integration
from openprofiles.settings import Settings


@pytest.mark.moto
def test_an_update_held_for_the_domain_left_goes_there_while_the_new_key_is_refused(
    settings: Settings, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held while the old domain's KMS did not answer, the update waited on the new domain's
    key, refused meanwhile, though it goes to the old domain, which answers again: it stayed
    held for as long as the new key was refused."""
    working, key_arn = _on_a_kms_key(settings, moto_url, monkeypatch)
    services = build_services(working)
    keyring = Keyring(settings.keyring_path)
    tenant = keyring.create_key("tenant")
    try:
        make_domain(services, D, key_arn)
        associate(services, D, object_type_name="CTR")
        send(services, ctr("call-1", address=CALLER))
        make_domain(services, NEW, tenant.arn(settings.region, settings.account_id))
        with services.write() as tx:
            connect_instance(tx, domain_name=NEW, instance_arn=INSTANCE, move=True)
    finally:
        services.database.dispose()
    update = ctr("call-1", address=CALLER, last_update=LATER, Attributes={"outcome": "sold"})
    with kms_down(working) as down, down.write() as tx:
        held = ingest_contact_items(tx, split_body(json.dumps(update)), hold_unavailable=True)
    assert held.held == 1
    keyring.disable(tenant.key_id)

    services = build_services(working)
    try:
        sent = send_kept_on(services)

        assert sent.accepted == 1 and not sent.rejected
        [record] = stored(services, D, "call-1")
        assert (record["LastUpdateTimestamp"], record["Attributes"]) == (LATER, {"outcome": "sold"})
        with services.read() as tx:
            assert list_unrouted(tx) == []
    finally:
        services.database.dispose()


@pytest.mark.parametrize("dissociated_first", [False, True], ids=["delete", "dissociate-delete"])
def test_records_held_for_a_deleted_domain_go_with_it(
    settings: Settings, dissociated_first: bool
) -> None:
    """Held while the domain's key was disabled, a record outlived DeleteDomain and flowed
    into the next domain its instance was associated with (one made again with the name).
    So too after DeleteIntegration first (the usual clean-up), which notes the domain as one
    the instance left: held before it left, the record was the domain's own."""
    services = build_services(replace(settings, data_key_cache_seconds=0))
    try:
        keyring = Keyring(settings.keyring_path)
        key = keyring.create_key("tenant")
        make_domain(services, D, key.arn(settings.region, settings.account_id))
        associate(services, D, object_type_name="CTR")
        keyring.disable(key.key_id)
        with services.write() as tx:
            body = json.dumps(ctr("call-1", address=CALLER))
            assert ingest_contact_items(tx, split_body(body), hold_unavailable=True).held == 1

        if dissociated_first:
            with services.write() as tx:
                delete_integration(tx, domain_name=D, uri=INSTANCE)
        with services.write() as tx:
            delete_domain(tx, domain_name=D)

        with services.read() as tx:
            assert list_unrouted(tx) == []
        make_domain(services, D)
        associate(services, D, object_type_name="CTR")
        assert send_kept_on(services).accepted == 0
        assert stored(services, D, "call-1") == []
    finally:
        services.database.dispose()


@pytest.mark.moto
def test_records_held_for_a_domain_left_go_to_the_instances_domain_when_it_is_deleted(
    settings: Settings, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held for the domain the instance left (whether their contacts are there could not be
    told: a new contact is held so too), they are not that domain's records: deleted, it
    leaves them to the instance's domain, where they are applied."""
    working, key_arn = _on_a_kms_key(settings, moto_url, monkeypatch)
    services = build_services(working)
    try:
        make_domain(services, D, key_arn)
        associate(services, D, object_type_name="CTR")
        send(services, ctr("call-1", address=CALLER))
        move_instance(services)  # NEW under the local keyring's default key
    finally:
        services.database.dispose()
    body = "\n".join(
        json.dumps(r)
        for r in (ctr("call-1", address=CALLER, last_update=LATER), ctr("call-2", address=CALLER))
    )

    with kms_down(working) as down:
        with down.write() as tx:
            assert ingest_contact_items(tx, split_body(body), hold_unavailable=True).held == 2
        with down.write() as tx:
            delete_domain(tx, domain_name=D)

        sent = send_kept_on(down)

        assert sent.accepted == 2 and not sent.rejected
        assert on_profile_in_new(down, "call-2") == ["call-1", "call-2"]
        with down.read() as tx:
            assert list_unrouted(tx) == []
