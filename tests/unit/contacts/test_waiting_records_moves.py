"""Records kept waiting for the contact they continue (contacts.waiting): they follow their
instance when it moves to another domain, their dead letter says how long they actually waited,
and a sweep's chunk applies them in the order they continue each other — on SQLite and
PostgreSQL, through the real service functions."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from tests.unit.contacts.test_contacts_without_endpoint import (
    CALLER,
    D,
    contacts_of,
    link_waking_nothing,
    new_profile,
    task,
    with_template,
)
from tests.unit.integrations.integ_helpers import INSTANCE, ctr, make_domain, send

from openprofiles.contacts import service as contacts_service
from openprofiles.contacts.kept import list_unrouted
from openprofiles.contacts.links import WAIT_SECONDS
from openprofiles.contacts.service import connect_instance
from openprofiles.contacts.sweep import send_kept_on, send_waiting_on
from openprofiles.context import Services
from openprofiles.dlq import service as dlq
from openprofiles.objects.service import list_profile_objects
from openprofiles.profiles.service import SearchCriterion, search_profiles

NEW = "moved-to"


def move_instance(services: Services) -> None:
    """`openprofiles instances associate --move` (and PutIntegration, the admin pages)."""
    make_domain(services, NEW)
    with services.write() as tx:
        done, _ = connect_instance(tx, domain_name=NEW, instance_arn=INSTANCE, move=True)
    assert done.previous_domain == D


def on_profile_in_new(services: Services, contact_id: str) -> list[str]:
    """The ContactIds of the CTR records on the one profile of NEW that `contact_id` finds."""
    with services.read() as tx:
        page, _ = search_profiles(
            tx, domain_name=NEW, criteria=[SearchCriterion("_ctrContactId", (contact_id,))]
        )
        [(found, _)] = page
        records, _ = list_profile_objects(
            tx, domain_name=NEW, object_type_name="CTR", profile_id=found.profile_id, limit=10
        )
    return sorted(json.loads(r.object_json)["ContactId"] for r in records)


def letters_of(services: Services, domain_name: str) -> list[str]:
    with services.read() as tx:
        return [m.reason for m in dlq.list_messages(tx, domain_name=domain_name)]


def test_a_waiting_record_follows_its_moved_instance_to_the_new_domain(
    services: Services,
) -> None:
    """The move left the record's contact_awaited rows on the old domain: its contact, which
    then came to the new domain, never sent it on, and it waited the full hour and was
    dead-lettered in the new domain saying the contact was on no profile."""
    with_template(services, "CTR")
    assert send(services, task("task-1", PreviousContactId="call-1")).waiting == 1

    move_instance(services)
    send(services, ctr("call-1", address=CALLER))
    send_kept_on(services)  # the server's sweep, as it runs every minute

    assert on_profile_in_new(services, "call-1") == ["call-1", "task-1"]
    with services.read() as tx:
        assert list_unrouted(tx) == []
    assert letters_of(services, D) == [] and letters_of(services, NEW) == []


def test_a_moved_waiting_record_keeps_its_time_and_its_letter_says_how_long_it_waited(
    services: Services,
) -> None:
    """It waits in the new domain for the rest of its hour, not an hour more; dead-lettered,
    it says how long it actually waited (it always said "60 minutes")."""
    with_template(services, "CTR")
    send(services, task("task-1", PreviousContactId="never-seen"))
    with services.read() as tx:
        [waiting] = list_unrouted(tx)
    move_instance(services)

    early = send_waiting_on(services, now=waiting.created_at + timedelta(seconds=WAIT_SECONDS - 1))
    assert early.sent_on == 0
    with services.read() as tx:
        assert len(list_unrouted(tx)) == 1

    late = send_waiting_on(services, now=waiting.created_at + timedelta(minutes=75))

    assert late.dead_lettered == {NEW: 1}
    [reason] = letters_of(services, NEW)
    assert "(the record was kept 75 minutes waiting for it)" in reason, reason
    assert letters_of(services, D) == []


def test_a_sweep_chunk_applies_a_task_after_the_leg_it_continues(services: Services) -> None:
    """A task that continues a leg that continues a contact an agent linked but whose record
    never came, both kept, the task first: due together, one chunk holds [task, leg], and the
    leg must be applied first (`_continued_first`) or the task finds no profile and is
    dead-lettered."""
    with_template(services, "CTR")
    send(services, task("task-1", PreviousContactId="leg"))
    send(services, ctr("leg", address=None, PreviousContactId="call-1"))
    maria = new_profile(services, FirstName="Maria")
    link_waking_nothing(services, maria, "call-1")
    with services.read() as tx:
        kept = list_unrouted(tx)
    assert [json.loads(k.object_json)["ContactId"] for k in kept] == ["task-1", "leg"]
    due = max(k.created_at for k in kept) + timedelta(seconds=WAIT_SECONDS)

    swept = send_waiting_on(services, now=due)

    assert swept.accepted == 2 and not swept.rejected, swept.rejected
    assert contacts_of(services, maria, "CTR") == ["leg", "task-1"]
    assert letters_of(services, D) == []


def test_a_contact_wakes_at_most_a_chunk_and_the_sweep_sends_the_rest(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The call woke every task waiting for it in its own transaction, however many. Capped,
    it wakes the oldest two; the rest wait on, and the sweep sends each on once."""
    monkeypatch.setattr(contacts_service, "WAKE_CHUNK", 2)
    with_template(services, "CTR")
    for n in range(5):
        assert send(services, task(f"task-{n}", PreviousContactId="call-1")).waiting == 1

    outcome = send(services, ctr("call-1", address=CALLER))

    assert outcome.woken is not None and outcome.woken.accepted == 2
    with services.read() as tx:
        assert len(list_unrouted(tx, waiting=True)) == 3
    profile_id = profile_of(services, "call-1")
    assert contacts_of(services, profile_id, "CTR") == ["call-1", "task-0", "task-1"]

    assert send_kept_on(services).accepted == 3  # the server's sweep

    expected = ["call-1", *(f"task-{n}" for n in range(5))]
    assert contacts_of(services, profile_id, "CTR") == expected
    with services.read() as tx:
        assert list_unrouted(tx) == []
    assert letters_of(services, D) == []


def test_the_cap_counts_every_round_of_a_wake(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The call wakes the leg, and the leg the tasks waiting for it: two of three records in
    the transaction; the task left waits for a leg now applied, and the sweep sends it on."""
    monkeypatch.setattr(contacts_service, "WAKE_CHUNK", 2)
    with_template(services, "CTR")
    send(services, task("leg-1", PreviousContactId="call-1"))
    send(services, task("task-1", PreviousContactId="leg-1"))
    send(services, task("task-2", PreviousContactId="leg-1"))

    outcome = send(services, ctr("call-1", address=CALLER))

    assert outcome.woken is not None and outcome.woken.accepted == 2
    profile_id = profile_of(services, "call-1")
    assert contacts_of(services, profile_id, "CTR") == ["call-1", "leg-1", "task-1"]
    assert send_kept_on(services).accepted == 1
    assert contacts_of(services, profile_id, "CTR") == ["call-1", "leg-1", "task-1", "task-2"]
    with services.read() as tx:
        assert list_unrouted(tx) == []
    assert letters_of(services, D) == []


def profile_of(services: Services, contact_id: str) -> str:
    with services.read() as tx:
        page, _ = search_profiles(
            tx, domain_name=D, criteria=[SearchCriterion("_ctrContactId", (contact_id,))]
        )
    [(found, _)] = page
    return found.profile_id
