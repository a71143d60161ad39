"""An agent's links of a contact (AddProfileKey and DeleteProfileKey of `_ctrContactId`) racing
another link or a delivery of the same contact on PostgreSQL (several server processes, READ
COMMITTED): each waits for the contact's lock, held by the other until it commits, and then
works from what the other committed (contacts.links). SQLite's single writer serialises them
already.

Each test keeps the first transaction open until the second waits for one of its locks, or has
finished without waiting (tests.support.lock_waits). Before AddProfileKey took the contact's
lock, the second of two links finished without waiting: both stayed the agent's, and the record
was dead-lettered as ambiguous."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select
from tests.support.lock_waits import second_writer_meets_first
from tests.unit.integrations.integ_helpers import associate, ctr, make_domain, send

from openprofiles.contacts.links import CONTACT_KEY, RELINKED_ORIGIN
from openprofiles.contacts.models import BatchOutcome
from openprofiles.context import Services, Tx
from openprofiles.dlq.service import count as count_dead_letters
from openprofiles.objects.service import list_profile_objects
from openprofiles.profiles.service import (
    EXPLICIT_ORIGIN,
    add_profile_key,
    create_profile,
    delete_profile_key,
)
from openprofiles.store.schema import profile_key

D = "link-race"
pytestmark = pytest.mark.parametrize("settings", ["postgres"], indirect=True)


def _profile(services: Services, name: str) -> str:
    with services.write() as tx:
        return create_profile(tx, domain_name=D, fields={"FirstName": name}).profile_id


def _link(tx: Tx, profile_id: str, contact_id: str) -> None:
    add_profile_key(
        tx, domain_name=D, profile_id=profile_id, key_name=CONTACT_KEY, values=[contact_id]
    )


def _origins(services: Services) -> dict[str, list[str]]:
    """The profiles holding a `_ctrContactId` row, with the rows' origins."""
    out: dict[str, list[str]] = {}
    with services.read() as tx:
        rows = tx.conn.execute(
            select(profile_key.c.profile_id, profile_key.c.origin).where(
                profile_key.c.domain_name == D, profile_key.c.key_name == CONTACT_KEY
            )
        )
        for profile_id, origin in rows:
            out.setdefault(profile_id, []).append(origin)
    return {profile_id: sorted(origins) for profile_id, origins in out.items()}


def _agents(services: Services, profile_id: str) -> list[str]:
    """The agents of the contact records stored on the profile."""
    with services.read() as tx:
        records, _ = list_profile_objects(
            tx, domain_name=D, object_type_name="CTR", profile_id=profile_id, limit=100
        )
    return [json.loads(r.object_json)["Agent"]["Username"] for r in records]


def test_two_agents_linking_one_contact_at_once_the_second_link_wins(services: Services) -> None:
    """The second AddProfileKey waits for the first, then finds its link and supersedes it
    (`mark_earlier_links`), as when they come one after the other: the contact's record goes
    to the second profile. Before, neither found the other's uncommitted link, both stayed the
    agent's, and the record was rejected as ambiguous and dead-lettered."""
    make_domain(services, D)
    associate(services, D)
    first_profile, second_profile = _profile(services, "First"), _profile(services, "Second")

    def second() -> None:
        with services.write() as tx:
            _link(tx, second_profile, "c1")

    outcome = second_writer_meets_first(services, lambda tx: _link(tx, first_profile, "c1"), second)

    assert outcome is None
    assert _origins(services) == {
        first_profile: [RELINKED_ORIGIN],
        second_profile: [EXPLICIT_ORIGIN],
    }
    delivered = send(services, ctr("c1", agent="v1"))
    assert (delivered.accepted, delivered.rejected) == (1, [])
    assert _agents(services, second_profile) == ["v1"] and _agents(services, first_profile) == []
    with services.read() as tx:
        assert count_dead_letters(tx, domain_name=D) == 0


def test_a_record_delivered_while_the_agent_unlinks_its_contact_goes_where_the_link_left_it(
    services: Services,
) -> None:
    """The contact's record is on the profile its number gave; the agent linked the contact to
    another profile, then takes that link off while the next version of the record comes. The
    delivery waits for the unlink (the contact's lock, which DeleteProfileKey takes before the
    profile's, as AddProfileKey does, so that the agent pages' move of a link, an unlink and a
    link in one transaction, takes the contact's lock before any profile) and finds the contact
    on the first profile only, as when the unlink comes first."""
    make_domain(services, D)
    associate(services, D)
    assert send(services, ctr("c1", last_update="2026-11-01T10:00:00Z", agent="v1")).accepted
    [(by_number, origins)] = _origins(services).items()
    assert origins == ["CTR"]
    agents_choice = _profile(services, "Chosen")
    with services.write() as tx:
        _link(tx, agents_choice, "c1")

    def unlink(tx: Tx) -> None:
        delete_profile_key(
            tx, domain_name=D, profile_id=agents_choice, key_name=CONTACT_KEY, values=["c1"]
        )

    def deliver() -> BatchOutcome:
        return send(services, ctr("c1", last_update="2026-11-01T11:00:00Z", agent="v2"))

    outcome = second_writer_meets_first(services, unlink, deliver)

    assert isinstance(outcome, BatchOutcome), outcome
    assert (outcome.accepted, outcome.rejected) == (1, [])
    assert _agents(services, by_number) == ["v2"]
    assert _agents(services, agents_choice) == []
    assert _origins(services) == {by_number: ["CTR"]}
