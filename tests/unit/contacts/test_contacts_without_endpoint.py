"""Contacts the templates cannot place by the customer's phone number or email address (issue 4,
spec §2.2, §3.2; contacts.links): a task, a chat without an email address or a VOIP call makes
no empty profile and is dead-lettered saying why, unless a link places it; a transfer leg
joins the profile of the contact it continues; and of two agent links made before the record
arrives, the latest wins — on SQLite and PostgreSQL, through the real service functions."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select
from tests.unit.integrations.integ_helpers import INSTANCE, associate, ctr, make_domain, send

from openprofiles.contacts.service import apply_contact_event
from openprofiles.context import Services
from openprofiles.dlq import service as dlq
from openprofiles.errors import NotFound
from openprofiles.objects.service import list_profile_objects
from openprofiles.profiles.service import (
    EXPLICIT_ORIGIN,
    SearchCriterion,
    add_profile_key,
    create_profile,
    get_profile,
    index_profile_keys,
    search_profiles,
)
from openprofiles.store.schema import profile as profile_table

D = "noendpoint"
CALLER = "+13035550100"


def with_template(services: Services, template: str) -> None:
    make_domain(services, D)
    associate(services, D, object_type_name=template)


def profile_count(services: Services) -> int:
    with services.read() as tx:
        return int(
            tx.conn.execute(
                select(func.count())
                .select_from(profile_table)
                .where(profile_table.c.domain_name == D)
            ).scalar_one()
        )


def new_profile(services: Services, **fields: Any) -> str:
    with services.write() as tx:
        return create_profile(tx, domain_name=D, fields=fields).profile_id


def link(services: Services, profile_id: str, contact_id: str) -> None:
    """The agent's (or the flow's) AddProfileKey(_ctrContactId, [ContactId]) (spec §3.2)."""
    with services.write() as tx:
        add_profile_key(
            tx, domain_name=D, profile_id=profile_id, key_name="_ctrContactId", values=[contact_id]
        )


def link_waking_nothing(services: Services, profile_id: str, contact_id: str) -> None:
    """An agent's link as the sweep finds it when the link's own wake sent nothing on (another
    sender held the waiting records then): the key row alone, without AddProfileKey's hooks."""
    with services.write() as tx:
        index_profile_keys(
            tx,
            domain_name=D,
            profile_id=profile_id,
            keys=[("_ctrContactId", contact_id, contact_id)],
            origin=EXPLICIT_ORIGIN,
        )


def linked_to(services: Services, contact_id: str) -> list[str]:
    with services.read() as tx:
        page, _ = search_profiles(
            tx, domain_name=D, criteria=[SearchCriterion("_ctrContactId", (contact_id,))]
        )
    return sorted(p.profile_id for p, _ in page)


def contacts_of(services: Services, profile_id: str, type_name: str) -> list[str]:
    with services.read() as tx:
        records, _ = list_profile_objects(
            tx, domain_name=D, object_type_name=type_name, profile_id=profile_id, limit=100
        )
    return sorted(json.loads(r.object_json)["ContactId"] for r in records)


def letters(services: Services) -> list[tuple[str, str]]:
    with services.read() as tx:
        return [(m.category, m.reason) for m in dlq.list_messages(tx, domain_name=D)]


def exists(services: Services, profile_id: str) -> bool:
    try:
        with services.read() as tx:
            get_profile(tx, domain_name=D, profile_id=profile_id)
    except NotFound:
        return False
    return True


def task(contact_id: str, **more: Any) -> dict[str, Any]:
    """A task: Amazon Connect gives it no CustomerEndpoint."""
    return ctr(contact_id, channel="TASK", address=None, **more)


def start_event(contact_id: str, **more: Any) -> dict[str, Any]:
    event = {
        "ContactId": contact_id,
        "InitiationTimestamp": "2026-11-03T09:00:00Z",
        "Channel": "TASK",
        "InstanceARN": INSTANCE,
    }
    event.update(more)
    return event


# ---------------------------------------------------------------- no endpoint, no link


@pytest.mark.parametrize("template", ["CTR", "CTR-NoInferred"])
def test_contacts_without_an_endpoint_create_no_empty_profile(
    services: Services, template: str
) -> None:
    """Each task, web chat without an email address and VOIP call created a profile holding
    nothing but its contact: profiles of nobody, which no later contact could join."""
    with_template(services, template)
    voip = ctr("voip-1", CustomerEndpoint={"Address": "sip:caller@example.com", "Type": "VOIP"})

    outcome = send(services, task("task-1"), ctr("chat-1", channel="CHAT", address=None), voip)

    assert outcome.created_profiles == 0 and outcome.accepted == 0
    assert profile_count(services) == 0
    assert [r.contact_id for r in outcome.rejected] == ["task-1", "chat-1", "voip-1"]
    kept = letters(services)
    assert [category for category, _ in kept] == ["no_profile"] * 3
    for rejection, (_, reason) in zip(outcome.rejected, kept, strict=True):
        assert rejection.message == reason
        assert "No empty profile is created" in reason and "AddProfileKey" in reason
    assert "VOIP CustomerEndpoint" in outcome.rejected[2].message
    # Contacts with an endpoint still find or create their profile as before.
    assert send(services, ctr("call-1", address=CALLER)).created_profiles == 1


def test_a_linked_task_lands_on_its_profile_and_a_dead_lettered_one_once_linked(
    services: Services,
) -> None:
    with_template(services, "CTR")
    maria = new_profile(services, FirstName="Maria")
    link(services, maria, "task-1")

    outcome = send(services, task("task-1"), task("task-2"))

    assert outcome.accepted == 1 and outcome.created_profiles == 0
    assert contacts_of(services, maria, "CTR") == ["task-1"]
    [(category, _)] = letters(services)
    assert category == "no_profile"
    # The agent links the second task; the dead letter's retry puts it on her profile.
    link(services, maria, "task-2")
    with services.write() as tx:
        retried = dlq.retry(tx, domain_name=D)
    assert len(retried.succeeded) == 1 and not retried.failed
    assert contacts_of(services, maria, "CTR") == ["task-1", "task-2"]
    assert profile_count(services) == 1


def test_a_task_whose_contact_id_is_on_two_profiles_goes_to_neither(services: Services) -> None:
    """Its `_ctrContactId` on two profiles (here as two records of type CTR would leave it),
    none chosen by an agent: the pipeline skipped the key as ambiguous and, finding nothing
    else, created an empty profile."""
    with_template(services, "CTR")
    one, two = new_profile(services, FirstName="One"), new_profile(services, FirstName="Two")
    with services.write() as tx:
        for profile_id in (one, two):
            index_profile_keys(
                tx,
                domain_name=D,
                profile_id=profile_id,
                keys=[("_ctrContactId", "task-1", "task-1")],
                origin="CTR",
            )

    outcome = send(services, task("task-1"))

    [rejection] = outcome.rejected
    assert "on several profiles" in rejection.message
    assert [c for c, _ in letters(services)] == ["ambiguous"]
    assert profile_count(services) == 2


def test_a_task_start_event_links_nothing_and_says_why(services: Services) -> None:
    with_template(services, "CTR")

    with services.write() as tx:
        linked = apply_contact_event(tx, start_event("task-1"))

    assert linked.profile_id is None and not linked.created_profile
    assert linked.reason is not None and "No empty profile is created" in linked.reason
    assert profile_count(services) == 0


# ---------------------------------------------------------------- transfer legs


@pytest.mark.parametrize("together", [True, False], ids=["one-batch", "two-batches"])
@pytest.mark.parametrize("template", ["CTR", "CTR-NoInferred"])
def test_a_transfer_leg_without_endpoint_joins_the_initial_contacts_profile(
    services: Services, template: str, together: bool
) -> None:
    """The leg (and a task made from the call) went to a new empty profile of its own."""
    with_template(services, template)
    initial = ctr("call-1", address=CALLER)
    leg = ctr(
        "call-1-leg",
        address=None,
        InitiationMethod="TRANSFER",
        InitialContactId="call-1",
        PreviousContactId="call-1",
    )
    follow_up = task("task-1", PreviousContactId="call-1-leg", InitialContactId="call-1")
    if together:
        outcome = send(services, initial, leg, follow_up)
        assert outcome.accepted == 3 and outcome.created_profiles == 1, outcome.rejected
    else:
        send(services, initial)
        outcome = send(services, leg, follow_up)
        assert outcome.accepted == 2 and outcome.created_profiles == 0, outcome.rejected

    [customer] = linked_to(services, "call-1")
    assert contacts_of(services, customer, template) == ["call-1", "call-1-leg", "task-1"]
    assert linked_to(services, "call-1-leg") == [customer]
    assert profile_count(services) == 1


def test_a_leg_follows_the_agents_link_of_the_contact_it_continues(services: Services) -> None:
    """The initial contact linked by the agent (AddProfileKey) to the customer's profile: the
    leg goes there too, not to a profile of the caller's number."""
    with_template(services, "CTR")
    maria = new_profile(services, FirstName="Maria")
    link(services, maria, "call-1")
    send(services, ctr("call-1", address=CALLER))

    outcome = send(services, ctr("leg", address=None, InitialContactId="call-1"))

    assert outcome.accepted == 1, outcome.rejected
    assert contacts_of(services, maria, "CTR") == ["call-1", "leg"]
    assert profile_count(services) == 1


def test_a_leg_of_a_live_contact_joins_its_start_events_profile(services: Services) -> None:
    with_template(services, "CTR-NoInferred")
    with services.write() as tx:
        live = apply_contact_event(
            tx,
            start_event(
                "call-1",
                Channel="VOICE",
                CustomerEndpoint={"Address": CALLER, "Type": "TELEPHONE_NUMBER"},
            ),
        )
        leg = apply_contact_event(tx, start_event("leg", PreviousContactId="call-1"))
    assert live.profile_id is not None and leg.profile_id == live.profile_id
    assert not leg.created_profile

    send(services, ctr("leg", address=None, PreviousContactId="call-1"))

    # call-1 is there as its start event left it (a partial record) until its record comes.
    assert contacts_of(services, live.profile_id, "CTR-NoInferred") == ["call-1", "leg"]
    assert profile_count(services) == 1


def test_a_leg_whose_initial_contact_is_unknown_waits_for_it(services: Services) -> None:
    """Kept waiting for its contact's record rather than dead-lettered at once; after
    contacts.links.WAIT_SECONDS it is (test_contacts_out_of_order)."""
    with_template(services, "CTR")

    outcome = send(services, ctr("leg", address=None, InitialContactId="never-seen"))

    [rejection] = outcome.rejected
    assert outcome.waiting == 1
    assert "nothing of the contact it continues (never-seen) is applied yet" in rejection.message
    assert letters(services) == []
    assert profile_count(services) == 0


# ---------------------------------------------------------------- the agent's latest link


@pytest.mark.parametrize("order", ["A,B", "A,B,A"])
def test_of_two_links_before_the_record_the_latest_wins(services: Services, order: str) -> None:
    """Two AddProfileKey(_ctrContactId) links before the record came dead-lettered it as
    ambiguous."""
    with_template(services, "CTR")
    profiles = {
        "A": new_profile(services, FirstName="A"),
        "B": new_profile(services, FirstName="B"),
    }
    for name in order.split(","):
        link(services, profiles[name], "call-1")
    latest = profiles[order.split(",")[-1]]
    # AddProfileKey adds the value and takes it off no profile: both have the contact until
    # its record comes.
    assert linked_to(services, "call-1") == sorted(profiles.values())

    outcome = send(services, ctr("call-1", address=CALLER))

    assert outcome.accepted == 1 and outcome.created_profiles == 0, outcome.rejected
    assert contacts_of(services, latest, "CTR") == ["call-1"]
    assert linked_to(services, "call-1") == [latest]
    assert letters(services) == []


def test_the_latest_link_wins_over_a_start_events_profile(services: Services) -> None:
    """A live contact from a new number (the start event made a profile), then two links by
    the agent: the record goes to the second, and the event's empty profile goes."""
    with_template(services, "CTR-NoInferred")
    with services.write() as tx:
        event = apply_contact_event(
            tx,
            start_event(
                "call-1",
                Channel="VOICE",
                CustomerEndpoint={"Address": CALLER, "Type": "TELEPHONE_NUMBER"},
            ),
        )
    assert event.profile_id is not None and event.created_profile
    first, second = new_profile(services, FirstName="First"), new_profile(services, FirstName="S")
    link(services, first, "call-1")
    link(services, second, "call-1")

    outcome = send(services, ctr("call-1", address=CALLER))

    assert outcome.accepted == 1, outcome.rejected
    assert contacts_of(services, second, "CTR-NoInferred") == ["call-1"]
    assert linked_to(services, "call-1") == [second]
    assert not exists(services, event.profile_id)


def test_of_two_links_after_the_record_the_latest_wins(services: Services) -> None:
    """As before the record: two links made since it was applied rejected its update as
    ambiguous (this replaces test_links_whose_order_cannot_be_told_reject_the_record)."""
    with_template(services, "CTR")
    send(services, ctr("call-1", address=CALLER, last_update="2026-11-01T10:10:00Z"))
    [auto] = linked_to(services, "call-1")
    first, second = new_profile(services, FirstName="First"), new_profile(services, FirstName="S")
    link(services, first, "call-1")
    link(services, second, "call-1")

    outcome = send(services, ctr("call-1", address=CALLER, last_update="2026-11-01T11:00:00Z"))

    assert outcome.accepted == 1, outcome.rejected
    assert contacts_of(services, second, "CTR") == ["call-1"]
    assert contacts_of(services, auto, "CTR") == contacts_of(services, first, "CTR") == []
    assert linked_to(services, "call-1") == [second]
