"""Contact records in (spec §3): routing, template rules, idempotency, rejection, live events,
contact history — on SQLite and PostgreSQL."""

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

from openprofiles.contacts.history import contact_history
from openprofiles.contacts.kept import list_unrouted
from openprofiles.contacts.routing import contact_digest
from openprofiles.contacts.service import apply_contact_event
from openprofiles.context import Services
from openprofiles.dlq.service import list_messages
from openprofiles.errors import BadRequest
from openprofiles.objects.service import delete_profile_object, list_profile_objects
from openprofiles.profiles.service import (
    SearchCriterion,
    add_profile_key,
    create_profile,
    get_profile,
    search_profiles,
)

D = "contacts"


@pytest.fixture
def domain(services: Services) -> str:
    make_domain(services, D)
    associate(services, D)
    return D


def search(services: Services, key: str, value: str, domain: str = D) -> list[str]:
    with services.read() as tx:
        page, _ = search_profiles(tx, domain_name=domain, criteria=[SearchCriterion(key, (value,))])
    return [p.profile_id for p, _ in page]


def ctr_objects(services: Services, profile_id: str, domain: str = D) -> list[dict]:
    with services.read() as tx:
        records, _ = list_profile_objects(
            tx, domain_name=domain, object_type_name="CTR", profile_id=profile_id, limit=100
        )
    return [json.loads(r.object_json) for r in records]


def test_voice_by_phone_chat_by_email(services: Services, domain: str) -> None:
    outcome = send(
        services,
        ctr("c1", address="+1 720 840 1003"),
        ctr("c2", address="+17208401003", start="2022-04-09T10:00:00Z"),
        ctr("c3", channel="CHAT", address="Ada@Example.com"),
        ctr("c4", channel="CHAT", address="ada@example.com"),
    )
    assert outcome.accepted == 4 and not outcome.rejected
    assert outcome.created_profiles == 2
    [by_c1] = search(services, "_ctrContactId", "c1")
    assert search(services, "_ctrContactId", "c2") == [by_c1]
    with services.read() as tx:
        assert get_profile(tx, domain_name=D, profile_id=by_c1).fields["PhoneNumber"] == (
            "+1 720 840 1003"
        )
    [chat] = search(services, "_ctrContactId", "c3")
    assert search(services, "_ctrContactId", "c4") == [chat] != [by_c1]
    with services.read() as tx:
        assert get_profile(tx, domain_name=D, profile_id=chat).fields["EmailAddress"]


def test_duplicates_newer_and_older_versions(services: Services, domain: str) -> None:
    first = ctr("c1", last_update="2022-04-08T15:03:02Z", agent="first")
    assert send(services, first).accepted == 1
    duplicate = send(services, first)
    assert duplicate.accepted == 1 and duplicate.unchanged == 1
    newer = ctr("c1", last_update="2022-04-08T16:00:00Z", agent="newer")
    assert send(services, newer).unchanged == 0
    older = ctr("c1", last_update="2022-04-08T15:30:00Z", agent="older")
    assert send(services, older).unchanged == 1
    [profile_id] = search(services, "_ctrContactId", "c1")
    [stored] = ctr_objects(services, profile_id)
    assert stored["Agent"]["Username"] == "newer"


def test_an_update_without_timestamp_is_rejected_not_silently_ignored(
    services: Services, domain: str
) -> None:
    """A record of a stored contact without LastUpdateTimestamp was answered as accepted and
    changed nothing (an audit); now a differing one is rejected and dead-lettered with why."""
    assert send(services, ctr("c1", agent="first")).accepted == 1
    update = ctr("c1", agent="update")
    del update["LastUpdateTimestamp"]

    outcome = send(services, update)

    assert outcome.accepted == 0
    [rejection] = outcome.rejected
    assert rejection.contact_id == "c1"
    assert "has no LastUpdateTimestamp" in rejection.message
    assert "later LastUpdateTimestamp" in rejection.message
    with services.read() as tx:
        [letter] = list_messages(tx, domain_name=D)
    assert letter.object_json == json.dumps(update) and letter.category == "invalid_value"
    [profile_id] = search(services, "_ctrContactId", "c1")
    [stored] = ctr_objects(services, profile_id)
    assert stored["Agent"]["Username"] == "first"
    # The same update with a later timestamp replaces the record.
    later = {**update, "LastUpdateTimestamp": "2022-04-08T16:00:00Z"}
    assert send(services, later).unchanged == 0
    assert ctr_objects(services, profile_id)[0]["Agent"]["Username"] == "update"


def test_same_timestamp_is_a_repeat_only_when_the_record_is_the_same(
    services: Services, domain: str
) -> None:
    record = ctr("c1", agent="first")
    send(services, record)
    # The same record written otherwise (indented) is a repeat delivery.
    assert send(services, json.dumps(record, indent=2).replace("\n", "")).unchanged == 1
    outcome = send(services, ctr("c1", agent="other"))
    assert outcome.accepted == 0
    assert "the same LastUpdateTimestamp but differs" in outcome.rejected[0].message


def test_contact_without_timestamps_takes_repeats_only(services: Services, domain: str) -> None:
    first = ctr("c1", agent="first")
    del first["LastUpdateTimestamp"]
    assert send(services, first).unchanged == 0
    assert send(services, first).unchanged == 1
    second = {**first, "Agent": {"Username": "second"}}
    outcome = send(services, second)
    assert outcome.accepted == 0 and "has no LastUpdateTimestamp" in outcome.rejected[0].message
    [profile_id] = search(services, "_ctrContactId", "c1")
    assert ctr_objects(services, profile_id)[0]["Agent"]["Username"] == "first"
    # Once the applied record is deleted its delivery is forgotten with it (contacts.erasure):
    # the contact's record delivered again, with or without a timestamp, is stored again.
    with services.write() as tx:
        delete_profile_object(
            tx,
            domain_name=D,
            object_type_name="CTR",
            profile_id=profile_id,
            unique_key=contact_digest(tx, D, "c1").hex(),
        )
    outcome = send(services, first)
    assert (outcome.accepted, outcome.unchanged) == (1, 0)
    assert ctr_objects(services, search(services, "_ctrContactId", "c1")[0]) == [first]
    send(services, ctr("c2"))
    [profile_id] = search(services, "_ctrContactId", "c2")
    with services.write() as tx:
        delete_profile_object(
            tx,
            domain_name=D,
            object_type_name="CTR",
            profile_id=profile_id,
            unique_key=contact_digest(tx, D, "c2").hex(),
        )
    outcome = send(services, ctr("c2", agent="other"))
    assert (outcome.accepted, outcome.unchanged) == (1, 0)
    [profile_id] = search(services, "_ctrContactId", "c2")
    assert ctr_objects(services, profile_id)[0]["Agent"]["Username"] == "other"


def test_bad_records_are_rejected_with_reasons_and_kept(services: Services, domain: str) -> None:
    no_instance = ctr("c5")
    del no_instance["InstanceARN"]
    outcome = send(
        services,
        ctr("ok"),
        {"hello": "world", "InstanceARN": INSTANCE},
        ctr("c2", instance=OTHER_INSTANCE),
        ctr("c3", CustomerEndpoint={"Address": "not a phone!", "Type": "TELEPHONE_NUMBER"}),
        "{not json",
        no_instance,
    )
    assert outcome.accepted == 1
    messages = {r.contact_id: r.message for r in outcome.rejected if r.contact_id}
    anonymous = sorted(r.message for r in outcome.rejected if not r.contact_id)
    assert "no ContactId" in anonymous[0] and "not valid JSON" in anonymous[1]
    assert "is not associated with any domain" in messages["c2"]
    # The caller learns the record is kept, in the API's terms: no command of the server.
    assert "kept and applied once it is" in messages["c2"]
    assert "openprofiles" not in messages["c2"]
    assert "cannot be read as a telephone number" in messages["c3"]
    assert "no InstanceARN" in messages["c5"]
    assert len(outcome.rejected) == 5
    with services.read() as tx:
        letters = list_messages(tx, domain_name=D)
        kept = list_unrouted(tx)
    # Records naming the associated instance are in its domain's dead-letter queue...
    assert sorted(letter.reason[:20] for letter in letters) == sorted(
        [anonymous[0][:20], messages["c3"][:20]]
    )
    # ...the others, with no domain to take them, are kept at instance level.
    assert [k.instance_arn for k in kept].count(None) == 2
    assert len(kept) == 3


def test_unrouted_records_replay_once_associated(services: Services, domain: str) -> None:
    send(services, ctr("late", instance=OTHER_INSTANCE))
    make_domain(services, "second")
    from openprofiles.contacts.service import replay_unrouted

    associate(services, "second", OTHER_INSTANCE)
    with services.write() as tx:
        outcome = replay_unrouted(tx, instance_arn=OTHER_INSTANCE)
    assert outcome.accepted == 1
    assert len(search(services, "_ctrContactId", "late", domain="second")) == 1
    with services.read() as tx:
        assert list_unrouted(tx) == []


def test_moving_instance_sends_new_contacts_to_new_domain(services: Services, domain: str) -> None:
    send(services, ctr("before"))
    [old_profile] = search(services, "_ctrContactId", "before")
    make_domain(services, "new")
    associate(services, "new", move=True)
    send(services, ctr("after"))
    assert search(services, "_ctrContactId", "after") == []
    assert len(search(services, "_ctrContactId", "after", domain="new")) == 1
    # The old profile and its contact history stay where they were.
    assert search(services, "_ctrContactId", "before") == [old_profile]
    assert len(ctr_objects(services, old_profile)) == 1


def test_ctr_default_does_not_attach_to_created_profile(services: Services, domain: str) -> None:
    with services.write() as tx:
        made = create_profile(tx, domain_name=D, fields={"PhoneNumber": "+17208401003"})
    send(services, ctr("c1"))
    assert search(services, "_ctrContactId", "c1") != [made.profile_id]


def test_ctr_noinferred_attaches_by_phone(services: Services) -> None:
    make_domain(services, D)
    associate(services, D, object_type_name="CTR-NoInferred")
    with services.write() as tx:
        made = create_profile(tx, domain_name=D, fields={"PhoneNumber": "+17208401003"})
    send(services, ctr("c1"))
    assert search(services, "_ctrContactId", "c1") == [made.profile_id]


def test_ctr_auto_associate_only_never_creates(services: Services) -> None:
    make_domain(services, D)
    associate(services, D, object_type_name="CTR-AutoAssociateOnly")
    outcome = send(services, ctr("c1"))
    assert outcome.accepted == 0
    assert "does not allow profile creation" in outcome.rejected[0].message
    with services.read() as tx:
        assert len(list_messages(tx, domain_name=D)) == 1


def test_contact_event_links_at_once_and_full_record_follows(
    services: Services, domain: str
) -> None:
    event = {
        "ContactId": "live-1",
        "InitiationTimestamp": "2022-04-08T14:59:38Z",
        "Channel": "VOICE",
        "InstanceARN": INSTANCE,
        "CustomerEndpoint": {"Address": "+17208401003", "Type": "TELEPHONE_NUMBER"},
    }
    with services.write() as tx:
        link = apply_contact_event(tx, event)
    assert link.created_profile and link.profile_id
    assert search(services, "_ctrContactId", "live-1") == [link.profile_id]
    # The full record arrives after the contact ends (different phone formatting even).
    send(services, ctr("live-1", address="+1 (720) 840-1003"))
    assert search(services, "_ctrContactId", "live-1") == [link.profile_id]
    [stored] = ctr_objects(services, link.profile_id)
    assert stored["Agent"]["Username"] == "admin1"
    with services.write() as tx, pytest.raises(BadRequest, match="lacks Channel"):
        apply_contact_event(tx, {"ContactId": "x", "InstanceARN": INSTANCE})
    with services.write() as tx, pytest.raises(BadRequest, match="not associated"):
        apply_contact_event(tx, {**event, "InstanceARN": OTHER_INSTANCE})


def test_add_profile_key_forces_the_link(services: Services, domain: str) -> None:
    with services.write() as tx:
        chosen = create_profile(tx, domain_name=D, fields={"FirstName": "Ada"})
    event = {
        "ContactId": "forced",
        "InitiationTimestamp": "2022-04-08T14:59:38Z",
        "Channel": "VOICE",
        "InstanceARN": INSTANCE,
        "CustomerEndpoint": {"Address": "+17208401003", "Type": "TELEPHONE_NUMBER"},
    }
    with services.write() as tx:
        link = apply_contact_event(tx, event)
    assert link.profile_id != chosen.profile_id
    # The agent associates the contact with the profile they chose (Connect's flow action).
    with services.write() as tx:
        add_profile_key(
            tx,
            domain_name=D,
            profile_id=chosen.profile_id,
            key_name="_ctrContactId",
            values=["forced"],
        )
    send(services, ctr("forced"))
    assert search(services, "_ctrContactId", "forced") == [chosen.profile_id]
    assert [o["ContactId"] for o in ctr_objects(services, chosen.profile_id)] == ["forced"]


def test_contact_history_newest_first(services: Services, domain: str) -> None:
    send(
        services,
        ctr("mid", start="2022-04-08T10:00:00Z", end="2022-04-08T10:05:30Z"),
        ctr("new", start="2022-04-09T10:00:00Z", end="2022-04-09T10:01:00Z"),
        ctr("old", start="2022-04-07T10:00:00Z", end="2022-04-07T10:00:10Z"),
    )
    [profile_id] = search(services, "_ctrContactId", "mid")
    with services.read() as tx:
        history = contact_history(tx, domain_name=D, profile_id=profile_id, limit=10).contacts
        first = contact_history(tx, domain_name=D, profile_id=profile_id, limit=1)
        page = contact_history(
            tx, domain_name=D, profile_id=profile_id, limit=1, after=first.next_after
        ).contacts
    assert [h.contact_id for h in history] == ["new", "mid", "old"]
    assert history[1].duration_seconds == 330
    assert history[1].channel == "VOICE"
    assert history[1].agent == "admin1" and history[1].queue == "BasicQueue"
    assert history[1].disconnect_reason == "CUSTOMER_DISCONNECT"
    assert [h.contact_id for h in page] == ["mid"]
