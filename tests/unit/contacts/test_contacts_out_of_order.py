"""Records without a customer endpoint that come before the contact they continue (contacts.links):
in one batch they are applied after it; across batches they wait for it in the kept-records
store and the sweep applies them once it comes, or dead-letters them after `WAIT_SECONDS` —
on SQLite and PostgreSQL, through the real service functions."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from tests.unit.contacts.test_contacts_without_endpoint import (
    CALLER,
    D,
    contacts_of,
    letters,
    link,
    link_waking_nothing,
    linked_to,
    new_profile,
    profile_count,
    task,
    with_template,
)
from tests.unit.integrations.integ_helpers import INSTANCE, ctr, send

from openprofiles.contacts.kept import count_unrouted, list_unrouted
from openprofiles.contacts.links import WAIT_SECONDS
from openprofiles.contacts.models import BatchOutcome
from openprofiles.contacts.service import Applied, apply_contact_event, retry_contact_record
from openprofiles.contacts.sweep import held_instances, send_kept_on, send_waiting_on
from openprofiles.context import Services
from openprofiles.domains.service import delete_domain


def kept(services: Services) -> list[str]:
    """The reasons of the records kept (waiting ones among them)."""
    with services.read() as tx:
        return [k.reason for k in list_unrouted(tx)]


# ---------------------------------------------------------------- one batch


@pytest.mark.parametrize("template", ["CTR", "CTR-NoInferred"])
def test_a_leg_before_its_initial_contact_in_a_batch_joins_it(
    services: Services, template: str
) -> None:
    """The leg was dead-lettered `no_profile` ("the contact it continues is on no profile")
    though its initial contact created the profile in the same batch."""
    with_template(services, template)
    follow_up = task("task-1", PreviousContactId="call-1-leg", InitialContactId="call-1")
    leg = ctr("call-1-leg", address=None, PreviousContactId="call-1", InitialContactId="call-1")
    other = ctr("call-2", address="+13035550199")

    outcome = send(services, follow_up, other, leg, ctr("call-1", address=CALLER))

    assert outcome.accepted == 4 and not outcome.rejected, outcome.rejected
    assert outcome.created_profiles == 2
    [customer] = linked_to(services, "call-1")
    assert contacts_of(services, customer, template) == ["call-1", "call-1-leg", "task-1"]
    assert letters(services) == [] and kept(services) == []


def test_a_task_continuing_a_leg_that_waits_for_a_later_contact_follows_the_leg(
    services: Services,
) -> None:
    """[leg → call-1, task → leg, call-1]: the leg moved after call-1, but the task, which
    continues the leg (earlier in the batch), stayed before it, found nothing and waited for
    the next sweep (review of 68e7bab)."""
    with_template(services, "CTR")
    leg = ctr("call-1-leg", address=None, PreviousContactId="call-1")
    follow_up = task("task-1", PreviousContactId="call-1-leg")

    outcome = send(services, leg, follow_up, ctr("call-1", address=CALLER))

    assert outcome.accepted == 3 and not outcome.rejected and outcome.waiting == 0
    [customer] = linked_to(services, "call-1")
    assert sorted(contacts_of(services, customer, "CTR")) == ["call-1", "call-1-leg", "task-1"]
    assert letters(services) == [] and kept(services) == []


def test_a_task_related_to_a_contact_joins_its_profile(services: Services) -> None:
    """RelatedContactId: a task started for a contact (StartTaskContact) is that customer's."""
    with_template(services, "CTR")

    related = task("task-1", RelatedContactId="call-1")

    outcome = send(services, related, ctr("call-1", address=CALLER))

    assert outcome.accepted == 2, outcome.rejected
    [customer] = linked_to(services, "call-1")
    assert contacts_of(services, customer, "CTR") == ["call-1", "task-1"]


# ---------------------------------------------------------------- across batches


def test_a_leg_before_its_initial_contact_waits_and_lands_when_it_comes(
    services: Services,
) -> None:
    """Across batches (requests, shards) the leg was dead-lettered, and nothing retried it."""
    with_template(services, "CTR")

    first = send(services, task("task-1", PreviousContactId="call-1"))

    [rejection] = first.rejected
    assert first.held == first.waiting == 1 and first.rejected_for_good == 0
    assert "nothing of the contact it continues (call-1) is applied yet" in rejection.message
    assert kept(services) == [rejection.message] and letters(services) == []
    # Waiting, it is no held record for the held-records replay to send on again and again.
    with services.read() as tx:
        assert held_instances(tx) == []
    # Delivered again while it waits: kept once.
    assert send(services, task("task-1", PreviousContactId="call-1")).waiting == 1
    assert len(kept(services)) == 1
    # Nothing of call-1 yet: the sweep leaves it waiting.
    assert send_kept_on(services).accepted == 0 and len(kept(services)) == 1

    came = send(services, ctr("call-1", address=CALLER))

    # Sent on by the batch that applied call-1, in its transaction: no sweep in between (it
    # waited up to a minute for the next one, and a loaded file for the server's).
    [customer] = linked_to(services, "call-1")
    assert contacts_of(services, customer, "CTR") == ["call-1", "task-1"]
    assert came.accepted == 1 and [r.contact_id for r in came.rejected] == []
    assert came.woken is not None
    assert came.woken.accepted == 1 and not came.woken.rejected, came.woken.rejected
    assert linked_to(services, "task-1") == [customer]
    assert kept(services) == [] and letters(services) == [] and profile_count(services) == 1
    assert send_kept_on(services).sent_on == 0


def test_a_chain_of_waiting_records_lands_with_its_initial_contact(services: Services) -> None:
    """A task waiting for a leg that waits for the initial contact: the batch that applies the
    contact sends the leg on, and that the task."""
    with_template(services, "CTR")
    send(services, task("task-1", PreviousContactId="leg"))
    send(services, ctr("leg", address=None, PreviousContactId="call-1"))

    came = send(services, ctr("call-1", address=CALLER))

    [customer] = linked_to(services, "call-1")
    assert contacts_of(services, customer, "CTR") == ["call-1", "leg", "task-1"]
    assert came.woken is not None
    assert came.woken.accepted == 2 and not came.woken.rejected, came.woken.rejected
    assert kept(services) == [] and send_waiting_on(services).sent_on == 0


def test_a_start_event_sends_the_records_waiting_for_its_contact_on(services: Services) -> None:
    """The waiting reason promises it: applied once that contact's record or start event
    comes."""
    with_template(services, "CTR")
    send(services, task("task-1", PreviousContactId="call-1"))

    with services.write() as tx:
        live = apply_contact_event(
            tx,
            {
                "ContactId": "call-1",
                "InstanceARN": INSTANCE,
                "Channel": "VOICE",
                "InitiationTimestamp": "2026-11-03T09:00:00Z",
                "CustomerEndpoint": {"Address": CALLER, "Type": "TELEPHONE_NUMBER"},
            },
        )

    assert live.profile_id is not None
    assert contacts_of(services, live.profile_id, "CTR") == ["call-1", "task-1"]
    assert kept(services) == []


def test_a_retried_dead_letter_sends_the_records_waiting_for_its_contact_on(
    services: Services,
) -> None:
    """`openprofiles dlq retry` applies a contact as a batch does: what waits for it follows."""
    with_template(services, "CTR")
    send(services, task("task-1", PreviousContactId="call-1"))
    call = ctr("call-1", address=CALLER)

    with services.write() as tx:
        retried = retry_contact_record(
            tx, domain_name=D, object_type_name="CTR", parsed=call, raw=json.dumps(call)
        )

    assert isinstance(retried, Applied) and retried.profile_id is not None
    assert contacts_of(services, retried.profile_id, "CTR") == ["call-1", "task-1"]
    assert kept(services) == []


def test_a_record_delivered_while_its_contact_s_batch_wakes_it_is_applied_once(
    services: Services,
) -> None:
    """The batch that applies call-1 and a sweep that finds task-1 due, at once: each takes
    the rows it sends on (the batch skips those a sweep holds, on PostgreSQL), so the task is
    applied or dead-lettered once, never both or twice."""
    with_template(services, "CTR")
    send(services, task("task-1", PreviousContactId="call-1"))
    with services.read() as tx:
        [waiting] = list_unrouted(tx)
    due = waiting.created_at + timedelta(seconds=WAIT_SECONDS)
    start = threading.Barrier(2)

    def batch() -> BatchOutcome:
        start.wait()
        return send(services, ctr("call-1", address=CALLER))

    def sweep() -> BatchOutcome:
        start.wait()
        return send_waiting_on(services, now=due)

    with ThreadPoolExecutor(2) as pool:
        came, swept = [f.result() for f in [pool.submit(batch), pool.submit(sweep)]]

    woken = came.woken or BatchOutcome()
    assert woken.sent_on + swept.sent_on == 1
    [customer] = linked_to(services, "call-1")
    placed = contacts_of(services, customer, "CTR")
    assert len(placed) + len(letters(services)) == 2  # call-1, and task-1 placed or lettered
    assert kept(services) == []


def test_a_waiting_record_lands_once_an_agent_links_its_contact(services: Services) -> None:
    with_template(services, "CTR")
    send(services, task("task-1", PreviousContactId="never-seen"))
    maria = new_profile(services, FirstName="Maria")
    link(services, maria, "task-1")

    # The link sent it on in its transaction (contacts.service `_wake_linked`): the agent sees
    # it at once, and the sweep finds nothing left.
    assert contacts_of(services, maria, "CTR") == ["task-1"]
    assert send_waiting_on(services).sent_on == 0
    assert kept(services) == [] and letters(services) == []


def test_a_record_waits_a_bounded_time_then_is_dead_lettered(services: Services) -> None:
    with_template(services, "CTR")
    send(services, task("task-1", PreviousContactId="never-seen"))
    with services.read() as tx:
        arn = next(iter(count_unrouted(tx)))
        [waiting] = list_unrouted(tx)

    # Not yet due.
    early = send_waiting_on(services, now=waiting.created_at + timedelta(seconds=WAIT_SECONDS - 1))
    assert early.accepted == 0 and not early.rejected and len(kept(services)) == 1

    late = send_waiting_on(services, now=waiting.created_at + timedelta(seconds=WAIT_SECONDS))

    [rejection] = late.rejected
    assert late.held == 0 and late.dead_lettered == {"noendpoint": 1}
    [(category, reason)] = letters(services)
    assert category == "no_profile" and reason == rejection.message
    assert "(never-seen) is on no profile" in reason and "waiting for it" in reason
    assert kept(services) == []
    with services.read() as tx:
        assert count_unrouted(tx, instance_arn=arn) == {}


def test_sweeps_in_several_processes_apply_a_waiting_record_once(services: Services) -> None:
    """Each sweep takes the rows it sends on out of the store first: two at once (server
    processes, a stream's connector) apply and count a waiting record once."""
    with_template(services, "CTR")
    send(services, task("task-1", PreviousContactId="call-1"))
    send(services, task("task-2", PreviousContactId="call-1"))
    # An agent's link whose own wake sent nothing on: the sweep sends the tasks on.
    customer = new_profile(services, FirstName="Maria")
    link_waking_nothing(services, customer, "call-1")
    start = threading.Barrier(2)

    def sweep() -> BatchOutcome:
        start.wait()
        return send_waiting_on(services)

    with ThreadPoolExecutor(2) as pool:
        swept = [f.result() for f in [pool.submit(sweep), pool.submit(sweep)]]

    assert sum(s.accepted for s in swept) == 2 and not any(s.rejected for s in swept)
    assert contacts_of(services, customer, "CTR") == ["task-1", "task-2"]
    assert kept(services) == [] and letters(services) == []


def test_a_deleted_domain_s_waiting_records_go_with_it(services: Services) -> None:
    """DeleteDomain took the domain's contact_awaited rows but not the kept records they
    belonged to: a plain kept record of the instance then, its customer's data outlived the
    domain and flowed into the next domain the instance was associated with."""
    with_template(services, "CTR")
    assert send(services, task("task-1", PreviousContactId="call-1")).waiting == 1
    assert len(kept(services)) == 1

    with services.write() as tx:
        delete_domain(tx, domain_name=D)

    assert kept(services) == []
