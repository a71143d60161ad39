"""Contact records and the templates' key rules where they were wrong (issue 4, spec §2.2,
§3.2): an ambiguous number with CTR-NoInferred / CTR-AutoAssociateOnly, national numbers in
the server's phone region, an agent's re-links, the profile a start event created and the
agent moved the contact away from, and a contact-record type of one's own — on SQLite and
PostgreSQL, through the real service functions."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import update
from tests.unit.integrations.integ_helpers import INSTANCE, associate, ctr, make_domain, send

from openprofiles.app import build_services
from openprofiles.contacts.links import RELINKED_ORIGIN
from openprofiles.contacts.service import apply_contact_event
from openprofiles.context import Services
from openprofiles.dlq.service import list_messages
from openprofiles.errors import NotFound
from openprofiles.object_types.service import put_object_type
from openprofiles.objects.service import list_profile_objects
from openprofiles.profiles.service import (
    EXPLICIT_ORIGIN,
    SearchCriterion,
    add_profile_key,
    create_profile,
    delete_profile_key,
    get_profile,
    search_profiles,
    update_profile,
)
from openprofiles.settings import Settings
from openprofiles.store.schema import profile_key

D = "links"
NUMBER = "+13035550000"


def search(services: Services, key: str, value: str) -> list[str]:
    with services.read() as tx:
        page, _ = search_profiles(tx, domain_name=D, criteria=[SearchCriterion(key, (value,))])
    return sorted(p.profile_id for p, _ in page)


def objects_of(services: Services, profile_id: str, type_name: str = "CTR") -> list[dict]:
    with services.read() as tx:
        records, _ = list_profile_objects(
            tx, domain_name=D, object_type_name=type_name, profile_id=profile_id, limit=100
        )
    return [json.loads(r.object_json) for r in records]


def profile(services: Services, **fields: Any) -> str:
    with services.write() as tx:
        return create_profile(tx, domain_name=D, fields=fields).profile_id


def link(services: Services, profile_id: str, contact_id: str) -> None:
    """The agent's AddProfileKey(_ctrContactId, [ContactId]) (spec §3.2)."""
    with services.write() as tx:
        add_profile_key(
            tx,
            domain_name=D,
            profile_id=profile_id,
            key_name="_ctrContactId",
            values=[contact_id],
        )


def start(services: Services, contact_id: str, address: str) -> str | None:
    event = {
        "ContactId": contact_id,
        "InitiationTimestamp": "2026-11-03T09:00:00Z",
        "Channel": "VOICE",
        "InstanceARN": INSTANCE,
        "CustomerEndpoint": {"Address": address, "Type": "TELEPHONE_NUMBER"},
    }
    with services.write() as tx:
        return apply_contact_event(tx, event).profile_id


def with_template(services: Services, template: str) -> None:
    make_domain(services, D)
    associate(services, D, object_type_name=template)


def exists(services: Services, profile_id: str) -> bool:
    try:
        with services.read() as tx:
            get_profile(tx, domain_name=D, profile_id=profile_id)
    except NotFound:
        return False
    return True


# ---------------------------------------------------------------- ambiguous numbers


def test_noinferred_number_on_two_profiles_is_rejected_not_given_a_profile(
    services: Services,
) -> None:
    """Spec §3.2: with CTR-NoInferred, more than one `_phone` match means the contact is not
    associated ("the request will be rejected"); each call created another profile."""
    with_template(services, "CTR-NoInferred")
    jane = profile(services, FirstName="Jane", PhoneNumber=NUMBER)
    jim = profile(services, FirstName="Jim", MobilePhoneNumber="303-555-0000")

    outcome = send(services, ctr("c1", address=NUMBER), ctr("c2", address="(303) 555-0000"))

    assert outcome.accepted == 0 and outcome.created_profiles == 0
    assert search(services, "_phone", NUMBER) == sorted([jane, jim])
    assert search(services, "_ctrContactId", "c1") == []
    with services.read() as tx:
        letters = list_messages(tx, domain_name=D)
    assert [m.category for m in letters] == ["ambiguous", "ambiguous"]
    for rejection in outcome.rejected:
        assert "_phone key matches more than one profile" in rejection.message
        assert "303" not in rejection.message  # the key is named, never its value
    # A number on one profile still associates (the rule is about ambiguity only).
    single = profile(services, PhoneNumber="+13035550001")
    send(services, ctr("c3", address="+13035550001"))
    assert search(services, "_ctrContactId", "c3") == [single]


def test_auto_associate_only_says_the_number_is_shared_not_that_nothing_matched(
    services: Services,
) -> None:
    with_template(services, "CTR-AutoAssociateOnly")
    profile(services, FirstName="A", PhoneNumber=NUMBER)
    profile(services, FirstName="B", HomePhoneNumber="303 555 0000")

    outcome = send(services, ctr("c1", address=NUMBER))

    [rejection] = outcome.rejected
    assert "No profile matched" not in rejection.message
    assert "more than one profile" in rejection.message and "MergeProfiles" in rejection.message
    with services.read() as tx:
        [letter] = list_messages(tx, domain_name=D)
    assert letter.category == "ambiguous"
    # No match at all is still reported as such.
    [nothing] = send(services, ctr("c2", address="+13035550009")).rejected
    assert "does not allow profile creation" in nothing.message


# ---------------------------------------------------------------- the server's phone region


@pytest.fixture
def gb_services(settings: Settings) -> Iterator[Services]:
    built = build_services(dataclasses.replace(settings, default_phone_region="GB"))
    try:
        yield built
    finally:
        built.database.dispose()


def test_national_numbers_are_read_in_the_servers_region(gb_services: Services) -> None:
    """OPENPROFILES_DEFAULT_PHONE_REGION=GB: the records' national numbers were rejected as
    not telephone numbers (read as US numbers)."""
    services = gb_services
    make_domain(services, D)
    associate(services, D, object_type_name="CTR-NoInferred")
    uk = profile(services, FirstName="Uk", PhoneNumber="020 7946 0958")

    outcome = send(services, ctr("c1", address="020 7946 0958"))

    assert outcome.accepted == 1, outcome.rejected
    assert search(services, "_ctrContactId", "c1") == [uk]
    linked = start(services, "live-1", "07700 900123")
    assert linked is not None
    assert search(services, "_ctrContactId", "live-1") == [linked]
    assert search(services, "_phone", "+447700900123") == [linked]


# ---------------------------------------------------------------- the agent's re-links


def test_the_agents_latest_link_wins(services: Services) -> None:
    """A second re-link (AddProfileKey on a third profile after a record followed the first)
    sent the next update to the orphaned inferred profile."""
    with_template(services, "CTR")
    send(services, ctr("c1", last_update="2026-11-01T10:10:00Z", agent="v1"))
    [auto] = search(services, "_ctrContactId", "c1")
    real = profile(services, FirstName="Real")
    link(services, real, "c1")
    send(services, ctr("c1", last_update="2026-11-01T11:00:00Z", agent="v2"))
    assert [o["Agent"]["Username"] for o in objects_of(services, real)] == ["v2"]

    third = profile(services, FirstName="Third")
    link(services, third, "c1")
    send(services, ctr("c1", last_update="2026-11-01T12:00:00Z", agent="v3"))

    assert [o["Agent"]["Username"] for o in objects_of(services, third)] == ["v3"]
    assert objects_of(services, real) == [] and objects_of(services, auto) == []
    assert search(services, "_ctrContactId", "c1") == [third]


def test_links_whose_order_cannot_be_told_reject_the_record(services: Services) -> None:
    """Two profiles linked since the record was applied, by links made before their order was
    kept (contacts.links.mark_earlier_links; both rows still the agent's): neither is known to
    be the latest, and the record must not fall back on the number and go back to the profile
    the agent moved the contact away from."""
    with_template(services, "CTR")
    send(services, ctr("c1", last_update="2026-11-01T10:10:00Z", agent="v1"))
    [auto] = search(services, "_ctrContactId", "c1")
    first, second = profile(services, FirstName="First"), profile(services, FirstName="Second")
    link(services, first, "c1")
    link(services, second, "c1")
    with services.write() as tx:  # as a release that did not keep their order left them
        tx.conn.execute(
            update(profile_key)
            .where(profile_key.c.origin == RELINKED_ORIGIN)
            .values(origin=EXPLICIT_ORIGIN)
        )

    outcome = send(services, ctr("c1", last_update="2026-11-01T11:00:00Z", agent="v2"))

    [rejection] = outcome.rejected
    assert "linked to 2 profiles" in rejection.message
    assert [o["Agent"]["Username"] for o in objects_of(services, auto)] == ["v1"]
    with services.read() as tx:
        assert [m.category for m in list_messages(tx, domain_name=D)] == ["ambiguous"]
    # The agent removes the wrong link: the update then lands on the one left.
    with services.write() as tx:
        delete_profile_key(
            tx, domain_name=D, profile_id=first, key_name="_ctrContactId", values=["c1"]
        )
    send(services, ctr("c1", last_update="2026-11-01T11:00:00Z", agent="v2"))
    assert [o["Agent"]["Username"] for o in objects_of(services, second)] == ["v2"]


# ---------------------------------------------------------------- the start event's profile


@pytest.mark.parametrize("how", ["add_key", "move_key"])
def test_the_start_events_profile_goes_when_the_agent_moves_the_contact(
    services: Services, how: str
) -> None:
    """CTR-NoInferred and a live contact from a new number: the start event created a profile,
    the agent linked the contact to the customer's; that empty profile kept the number, so
    every later call from it matched two profiles."""
    with_template(services, "CTR-NoInferred")
    maria = profile(services, FirstName="Maria", PhoneNumber="+13125550000")
    new_number = "+12065550950"
    auto = start(services, "live-1", new_number)
    assert auto is not None and auto != maria
    if how == "move_key":  # the agent pages' "link instead": the key moved, not added
        with services.write() as tx:
            delete_profile_key(
                tx, domain_name=D, profile_id=auto, key_name="_ctrContactId", values=["live-1"]
            )
    link(services, maria, "live-1")

    send(services, ctr("live-1", address=new_number))

    assert not exists(services, auto)
    assert search(services, "_phone", new_number) == [maria]
    send(services, ctr("next", address=new_number, start="2026-11-04T09:00:00Z"))
    assert search(services, "_ctrContactId", "next") == [maria]
    assert len(objects_of(services, maria, "CTR-NoInferred")) == 2


def test_a_start_events_profile_holding_more_is_kept(services: Services) -> None:
    """The profile the event created is kept whole once it holds anything else (here the
    agent wrote a name on it): it may be a customer's. One that holds nothing else goes."""
    with_template(services, "CTR-NoInferred")
    maria = profile(services, FirstName="Maria")
    empty = start(services, "live-0", "+12065550949")
    assert empty is not None
    link(services, maria, "live-0")
    send(services, ctr("live-0", address="+12065550949"))
    assert not exists(services, empty)

    auto = start(services, "live-1", "+12065550950")
    assert auto is not None
    with services.write() as tx:
        update_profile(tx, domain_name=D, profile_id=auto, changes={"FirstName": "Someone"})
    link(services, maria, "live-1")

    send(services, ctr("live-1", address="+12065550950"))

    assert exists(services, auto)
    assert search(services, "_ctrContactId", "live-1") == [maria]
    with services.read() as tx:
        assert get_profile(tx, domain_name=D, profile_id=auto).fields["FirstName"] == "Someone"


# ---------------------------------------------------------------- a type of one's own

MY_CTR = {
    "Description": "custom",
    "AllowProfileCreation": True,
    "Fields": {
        "cid": {"Source": "_source.ContactId"},
        "phone": {"Source": "_source.CustomerEndpoint.Address", "ContentType": "PHONE_NUMBER"},
    },
    "Keys": {
        "contactKey": [{"StandardIdentifiers": ["UNIQUE"], "FieldNames": ["cid"]}],
        "_phone": [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["phone"]}],
    },
}


def test_custom_type_duplicate_without_timestamp_is_a_repeat(services: Services) -> None:
    """The stored record was looked up under `_ctrContactId`'s digest, not the type's own
    UNIQUE key, so a repeat without LastUpdateTimestamp was rejected as 'no longer stored'."""
    make_domain(services, D)
    with services.write() as tx:
        put_object_type(tx, domain_name=D, name="MyCTR", params=MY_CTR)
    associate(services, D, object_type_name="MyCTR")
    record = ctr("c1", address="+12065551400")
    del record["LastUpdateTimestamp"]
    assert send(services, record).accepted == 1

    again = send(services, record)

    assert again.accepted == 1 and again.unchanged == 1 and not again.rejected
    changed = send(services, {**record, "Attributes": {"v": "2"}})
    assert changed.accepted == 0 and "differs from it" in changed.rejected[0].message


def test_custom_type_live_contact_is_found_by_its_contact_id(services: Services) -> None:
    """A start event of a type without a `_ctrContactId` key linked the contact to no one that
    `_ctrContactId` could find (the agent pages search it during the contact)."""
    make_domain(services, D)
    with services.write() as tx:
        put_object_type(tx, domain_name=D, name="MyCTR", params=MY_CTR)
    associate(services, D, object_type_name="MyCTR")

    linked = start(services, "live-1", "+12065551402")

    assert linked is not None
    assert search(services, "_ctrContactId", "live-1") == [linked]
    send(services, ctr("live-1", address="+12065551402"))
    assert [o["ContactId"] for o in objects_of(services, linked, "MyCTR")] == ["live-1"]
    # After the contact the type's own keys find it, as the type defines them.
    assert search(services, "_ctrContactId", "live-1") == []
    assert search(services, "contactKey", "live-1") == [linked]
