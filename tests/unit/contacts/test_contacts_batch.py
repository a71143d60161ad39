"""Contact records applied as one batch: dedupe by ContactId and LastUpdateTimestamp holds
within a batch (two versions of a contact end as the newer, whatever their order), outcomes
are reported in the batch's order, a batch spanning domains goes to each, and a stream's batch
holds only the records of a domain that cannot take them — on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from tests.unit.integrations.integ_helpers import (
    INSTANCE,
    OTHER_INSTANCE,
    associate,
    ctr,
    make_domain,
    send,
)

from openprofiles.app import build_services
from openprofiles.contacts.kept import list_unrouted
from openprofiles.contacts.records import split_body
from openprofiles.contacts.service import apply_contact_event, ingest_contact_items
from openprofiles.contacts.sweep import held_instances, replay_held
from openprofiles.context import Services
from openprofiles.crypto.keyring import Keyring
from openprofiles.dlq.service import list_messages
from openprofiles.errors import AccessDenied
from openprofiles.objects.service import list_profile_objects
from openprofiles.profiles.service import SearchCriterion, create_profile, search_profiles
from openprofiles.settings import Settings

D = "batched"


@pytest.fixture
def domain(services: Services) -> str:
    make_domain(services, D)
    associate(services, D)
    return D


def search(services: Services, value: str, domain: str = D) -> list[str]:
    with services.read() as tx:
        page, _ = search_profiles(
            tx, domain_name=domain, criteria=[SearchCriterion("_ctrContactId", (value,))]
        )
    return [p.profile_id for p, _ in page]


def agents(
    services: Services, contact_id: str, domain: str = D, type_name: str = "CTR"
) -> list[str]:
    """The Agent.Username of every stored record of the contact's profile for that contact."""
    [profile_id] = search(services, contact_id, domain)
    with services.read() as tx:
        records, _ = list_profile_objects(
            tx, domain_name=domain, object_type_name=type_name, profile_id=profile_id, limit=100
        )
    parsed = [json.loads(r.object_json) for r in records]
    return [p["Agent"]["Username"] for p in parsed if p["ContactId"] == contact_id]


def test_older_then_newer_in_one_batch_ends_newer(services: Services, domain: str) -> None:
    outcome = send(
        services,
        ctr("c1", last_update="2022-04-08T15:00:00Z", agent="older"),
        ctr("c1", last_update="2022-04-08T16:00:00Z", agent="newer"),
    )
    assert (outcome.accepted, outcome.unchanged, outcome.created_profiles) == (2, 0, 1)
    assert agents(services, "c1") == ["newer"]


def test_newer_then_older_in_one_batch_keeps_newer(services: Services, domain: str) -> None:
    newer = ctr("c1", last_update="2022-04-08T16:00:00Z", agent="newer")
    outcome = send(
        services,
        newer,
        ctr("c1", last_update="2022-04-08T15:00:00Z", agent="older"),
        newer,
        ctr("c1", last_update="2022-04-08T16:00:00Z", agent="same time, other content"),
    )
    assert (outcome.accepted, outcome.unchanged) == (3, 2)
    [conflict] = outcome.rejected
    assert "the same LastUpdateTimestamp but differs" in conflict.message
    assert agents(services, "c1") == ["newer"]


def test_versions_without_timestamps_in_one_batch(services: Services, domain: str) -> None:
    """Without LastUpdateTimestamp only the first version and its repeats are taken; another
    version of the contact cannot be ordered and is rejected."""
    first = ctr("c1", agent="first")
    del first["LastUpdateTimestamp"]
    outcome = send(services, first, {**first, "Agent": {"Username": "second"}}, first)
    assert (outcome.accepted, outcome.unchanged) == (2, 1)
    [conflict] = outcome.rejected
    assert conflict.contact_id == "c1" and "has no LastUpdateTimestamp" in conflict.message
    assert agents(services, "c1") == ["first"]


def test_batch_against_stored_version(services: Services, domain: str) -> None:
    send(services, ctr("c1", last_update="2022-04-08T15:00:00Z", agent="stored"))
    outcome = send(
        services,
        ctr("c1", last_update="2022-04-08T14:00:00Z", agent="older"),
        ctr("c2", agent="other"),
        ctr("c1", last_update="2022-04-08T17:00:00Z", agent="newest"),
        ctr("c1", last_update="2022-04-08T16:00:00Z", agent="newer"),
    )
    assert (outcome.accepted, outcome.unchanged) == (4, 2)
    assert agents(services, "c1") == ["newest"]
    assert agents(services, "c2") == ["other"]


def test_rejected_version_does_not_count_as_applied(services: Services) -> None:
    """A newer version the pipeline rejects leaves the older one of the same batch to apply."""
    make_domain(services, D)
    associate(services, D, object_type_name="CTR-AutoAssociateOnly")
    with services.write() as tx:
        known = create_profile(tx, domain_name=D, fields={"PhoneNumber": "+17208401003"})
    outcome = send(
        services,
        ctr("c1", last_update="2022-04-08T16:00:00Z", address="+12065550199", agent="unknown"),
        ctr("c1", last_update="2022-04-08T15:00:00Z", agent="known"),
    )
    assert outcome.accepted == 1 and outcome.unchanged == 0
    [rejection] = outcome.rejected
    assert rejection.contact_id == "c1"
    assert "does not allow profile creation" in rejection.message
    assert search(services, "c1") == [known.profile_id]
    assert agents(services, "c1", type_name="CTR-AutoAssociateOnly") == ["known"]
    with services.read() as tx:
        [letter] = list_messages(tx, domain_name=D)
    assert letter.category == "no_profile"


def test_start_event_then_versions_in_one_batch(services: Services, domain: str) -> None:
    event = {
        "ContactId": "live",
        "InitiationTimestamp": "2022-04-08T14:59:38Z",
        "Channel": "VOICE",
        "InstanceARN": INSTANCE,
        "CustomerEndpoint": {"Address": "+17208401003", "Type": "TELEPHONE_NUMBER"},
    }
    with services.write() as tx:
        link = apply_contact_event(tx, event)
    outcome = send(
        services,
        ctr("live", last_update="2022-04-08T16:00:00Z", agent="newer"),
        ctr("live", last_update="2022-04-08T15:00:00Z", agent="older"),
    )
    assert (outcome.accepted, outcome.unchanged) == (2, 1)
    assert search(services, "live") == [link.profile_id]
    assert agents(services, "live") == ["newer"]
    # A repeated start event changes nothing.
    with services.write() as tx:
        again = apply_contact_event(tx, event)
    assert again.profile_id == link.profile_id and not again.created_profile
    assert agents(services, "live") == ["newer"]


def test_batch_across_domains_reports_in_order(services: Services, domain: str) -> None:
    make_domain(services, "second")
    associate(services, "second", OTHER_INSTANCE)
    outcome = send(
        services,
        ctr("a1", instance=OTHER_INSTANCE),
        ctr("bad1", CustomerEndpoint={"Address": "nope!", "Type": "TELEPHONE_NUMBER"}),
        ctr("b1"),
        "{broken",
        ctr("a2", instance=OTHER_INSTANCE, channel="CHAT", address="kim@example.com"),
        ctr("bad2", instance="arn:aws:connect:us-east-1:1:instance/unknown"),
        ctr("b2", address="+1 720 840 1003"),
    )
    assert outcome.accepted == 4 and outcome.created_profiles == 3
    assert [r.contact_id for r in outcome.rejected] == ["bad1", None, "bad2"]
    assert len(search(services, "a1", "second")) == 1
    assert len(search(services, "a2", "second")) == 1
    assert search(services, "a1") == []
    assert search(services, "b1") == search(services, "b2") != []


def test_many_contacts_of_few_customers(services: Services, domain: str) -> None:
    records = [ctr(f"m{i}", address=f"+1206555{i % 7:04d}") for i in range(60)]
    outcome = send(services, *records)
    assert (outcome.accepted, outcome.created_profiles) == (60, 7)
    assert search(services, "m3") == search(services, "m10")
    assert send(services, *records).unchanged == 60


def test_deleted_object_type_dead_letters_its_records_only(services: Services) -> None:
    """An instance whose integration's object type was deleted: its records wait in the DLQ,
    the rest of the batch (another domain) is applied."""
    from openprofiles.object_types.service import delete_object_type, put_object_type

    make_domain(services, D)
    make_domain(services, "second")
    with services.write() as tx:
        put_object_type(
            tx,
            domain_name=D,
            name="MyCTR",
            params={"TemplateId": "CTR", "Description": "contact records", "ExpirationDays": 30},
        )
    associate(services, D, object_type_name="MyCTR")
    associate(services, "second", OTHER_INSTANCE)
    assert send(services, ctr("before")).accepted == 1
    with services.write() as tx:
        delete_object_type(tx, domain_name=D, name="MyCTR")
    outcome = send(services, ctr("gone"), ctr("kept", instance=OTHER_INSTANCE))
    assert outcome.accepted == 1
    [rejection] = outcome.rejected
    assert rejection.contact_id == "gone" and "object type MyCTR was deleted" in rejection.message
    assert len(search(services, "kept", "second")) == 1
    with services.read() as tx:
        [letter] = list_messages(tx, domain_name=D)
    assert letter.object_type_name == "MyCTR"


def test_held_records_of_a_domain_that_cannot_take_them(settings: Settings) -> None:
    """With `hold_unavailable` (the Kinesis connector) a domain whose key is disabled has its
    records kept, the others applied; `replay_held` sends them on, `limit` at a time, once its
    key is enabled. Without it (a request, a file load) the batch fails with the domain's error."""
    services = build_services(settings.with_overrides(data_key_cache_seconds=0))
    try:
        keyring = Keyring(settings.keyring_path)
        key = keyring.create_key("tenant")
        make_domain(services, D, key.arn(settings.region, settings.account_id))
        associate(services, D)
        make_domain(services, "open")
        associate(services, "open", OTHER_INSTANCE)
        batch = split_body(
            "\n".join(
                json.dumps(r) for r in [ctr("k0"), ctr("o0", instance=OTHER_INSTANCE), ctr("k1")]
            )
        )
        keyring.disable(key.key_id)
        with pytest.raises(AccessDenied, match="is disabled"), services.write() as tx:
            ingest_contact_items(tx, batch)
        with services.write() as tx:
            outcome = ingest_contact_items(tx, batch, hold_unavailable=True)
        assert (outcome.accepted, outcome.held) == (1, 2)
        assert [r.contact_id for r in outcome.rejected] == ["k0", "k1"]
        assert len(search(services, "o0", "open")) == 1
        with services.read() as tx:
            assert held_instances(tx) == []

        keyring.enable(key.key_id)

        with services.read() as tx:
            assert held_instances(tx) == [INSTANCE]
        # Kept in one batch, the two have one created_at: which goes first is not defined.
        for replayed in (1, 2):
            with services.write() as tx:
                sent = replay_held(tx, instance_arns=[INSTANCE], limit=1)
            assert (sent.accepted, sent.held) == (1, 0)
            assert sum(len(search(services, c)) for c in ("k0", "k1")) == replayed
        with services.read() as tx:
            assert held_instances(tx) == [] and list_unrouted(tx) == []
    finally:
        services.database.dispose()
