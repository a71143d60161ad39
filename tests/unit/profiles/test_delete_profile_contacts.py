"""DeleteProfile and contact records: the deliveries applied to the deleted profiles (and to
those merged into it) are forgotten, so nothing links a contact to an erased profile, and a
record or contact-start event delivered again afterwards goes through the pipeline as a first
delivery would. On SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from tests.unit.integrations.integ_helpers import INSTANCE, associate, ctr, make_domain, send

from openprofiles.contacts.service import apply_contact_event
from openprofiles.context import Services
from openprofiles.identity.service import merge_profiles
from openprofiles.profiles.service import (
    SearchCriterion,
    delete_profile,
    resolve_profile_id,
    search_profiles,
)
from openprofiles.store.schema import contact_record

D = "erasure"


@pytest.fixture
def domain(services: Services) -> str:
    make_domain(services, D)
    associate(services, D)
    return D


def linked(services: Services, contact_id: str) -> list[str]:
    """The profiles `_ctrContactId` finds."""
    with services.read() as tx:
        page, _ = search_profiles(
            tx, domain_name=D, criteria=[SearchCriterion("_ctrContactId", (contact_id,))]
        )
    return [p.profile_id for p, _ in page]


def deliveries_naming(services: Services, profile_ids: list[str]) -> int:
    with services.read() as tx:
        return tx.conn.execute(
            select(func.count())
            .select_from(contact_record)
            .where(contact_record.c.domain_name == D, contact_record.c.profile_id.in_(profile_ids))
        ).scalar_one()


def test_a_record_delivered_again_after_the_profile_is_deleted_is_applied_anew(
    services: Services, domain: str
) -> None:
    record = ctr("c1", address="+17208401003")
    assert send(services, record).created_profiles == 1
    [first] = linked(services, "c1")
    # Another contact of another customer, merged into the first's profile: its delivery names
    # the merged-away profile, which goes with the one it was merged into.
    send(services, ctr("c2", address="+17208409999"))
    [other] = linked(services, "c2")
    with services.write() as tx:
        merge_profiles(tx, domain_name=D, main_profile_id=first, profile_ids=[other])
    assert deliveries_naming(services, [first, other]) == 2

    with services.write() as tx:
        delete_profile(tx, domain_name=D, profile_id=first)
    assert deliveries_naming(services, [first, other]) == 0

    # At least once (spec §3.1): the same record again is no repeat of anything stored now.
    outcome = send(services, record)
    assert (outcome.accepted, outcome.unchanged, outcome.created_profiles) == (1, 0, 1)
    [again] = linked(services, "c1")
    assert again not in (first, other)


def test_a_contact_event_after_the_profile_is_deleted_links_a_live_profile(
    services: Services, domain: str
) -> None:
    event: dict[str, Any] = {
        "ContactId": "live-1",
        "InitiationTimestamp": "2022-04-08T14:59:38Z",
        "Channel": "VOICE",
        "InstanceARN": INSTANCE,
        "CustomerEndpoint": {"Address": "+17208401003", "Type": "TELEPHONE_NUMBER"},
    }
    with services.write() as tx:
        first = apply_contact_event(tx, event).profile_id
    assert first is not None
    with services.write() as tx:
        delete_profile(tx, domain_name=D, profile_id=first)

    with services.write() as tx:
        link = apply_contact_event(tx, event)
    assert link.profile_id is not None and link.profile_id != first
    with services.read() as tx:
        assert resolve_profile_id(tx, domain_name=D, profile_id=link.profile_id) == link.profile_id
    assert linked(services, "live-1") == [link.profile_id]
