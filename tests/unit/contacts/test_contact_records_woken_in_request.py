"""The answer to a `POST /contact-records` body says what became of each record by the time it is
sent. A record that continues a contact of a later transaction of the body (PostgreSQL applies a
body `store.chunks.PG_RECORDS_PER_TRANSACTION` records a transaction), or of a later group of the
same transaction (another object type: SQLite's one transaction too), waits for it, and the
transaction that applies that contact sends it on. It was answered "held" (rejected) while it had
been applied before the answer, and counted among the woken records as if another request had
kept it. It is answered as what it became: accepted, or rejected for what its sending on found —
on SQLite and PostgreSQL, through contacts.http `process_body` and the real service functions."""

from __future__ import annotations

import json
from typing import Any

from tests.unit.contacts.test_contacts_out_of_order import kept
from tests.unit.contacts.test_contacts_without_endpoint import (
    CALLER,
    D,
    contacts_of,
    letters,
    linked_to,
    new_profile,
    task,
    with_template,
)
from tests.unit.integrations.integ_helpers import OTHER_INSTANCE, associate, ctr, send

from openprofiles.contacts.http import outcome_json, process_body
from openprofiles.contacts.models import BatchOutcome, Rejection
from openprofiles.contacts.service import claim_woken
from openprofiles.context import Services
from openprofiles.store.chunks import PG_RECORDS_PER_TRANSACTION


def body(*records: dict[str, Any]) -> str:
    return "\n".join(json.dumps(r) for r in records)


def fillers(count: int) -> list[dict[str, Any]]:
    """Records of other customers, each with its own phone number."""
    return [ctr(f"other-{n}", address=f"+1206{5000000 + n:07d}") for n in range(count)]


def test_a_leg_before_its_contact_in_a_later_transaction_of_the_body_is_answered_accepted(
    services: Services,
) -> None:
    """The leg is in the body's first transaction on PostgreSQL, its call in the second; on
    SQLite both are in the one transaction (the leg is applied after the call)."""
    with_template(services, "CTR")
    leg = ctr("call-1-leg", address=None, PreviousContactId="call-1")
    records = [leg, *fillers(PG_RECORDS_PER_TRANSACTION), ctr("call-1", address=CALLER)]

    outcome = process_body(services, body(*records))

    assert outcome_json(outcome) == {"Accepted": len(records), "Rejected": []}
    assert (outcome.held, outcome.waiting, outcome.woken) == (0, 0, None)
    [customer] = linked_to(services, "call-1")
    assert contacts_of(services, customer, "CTR") == ["call-1", "call-1-leg"]
    assert kept(services) == [] and letters(services) == []


def test_a_chain_woken_by_a_later_transaction_of_the_body_is_answered_accepted(
    services: Services,
) -> None:
    """A task waiting for a leg that waits for the call of a later transaction, the task sent
    twice in the body (kept once): all of them are applied, and answered so."""
    with_template(services, "CTR")
    follow_up = task("task-1", PreviousContactId="leg")
    records = [
        follow_up,
        ctr("leg", address=None, PreviousContactId="call-1"),
        follow_up,
        *fillers(PG_RECORDS_PER_TRANSACTION),
        ctr("call-1", address=CALLER),
    ]

    outcome = process_body(services, body(*records))

    assert outcome_json(outcome) == {"Accepted": len(records), "Rejected": []}
    assert outcome.unchanged == 1, outcome  # the task's second copy: a repeat
    assert (outcome.held, outcome.waiting, outcome.woken) == (0, 0, None)
    [customer] = linked_to(services, "call-1")
    assert contacts_of(services, customer, "CTR") == ["call-1", "leg", "task-1"]
    assert kept(services) == [] and letters(services) == []


def test_a_leg_of_another_object_type_than_its_call_is_answered_accepted(
    services: Services,
) -> None:
    """One transaction, as on SQLite: the leg comes through an instance whose records are CTR,
    its call through one whose records are CTR-NoInferred. The batch applies a group (domain,
    type) at a time, CTR's first: the leg waited, and the CTR-NoInferred group's call sent it on
    in the same transaction."""
    with_template(services, "CTR")
    associate(services, D, OTHER_INSTANCE, object_type_name="CTR-NoInferred")
    customer = new_profile(services, PhoneNumber=CALLER)
    leg = ctr("call-1-leg", address=None, PreviousContactId="call-1")
    call = ctr("call-1", address=CALLER, instance=OTHER_INSTANCE)

    outcome = process_body(services, body(leg, call))

    assert outcome_json(outcome) == {"Accepted": 2, "Rejected": []}
    assert (outcome.held, outcome.waiting, outcome.woken) == (0, 0, None)
    assert contacts_of(services, customer, "CTR") == ["call-1-leg"]
    assert contacts_of(services, customer, "CTR-NoInferred") == ["call-1"]
    assert kept(services) == [] and letters(services) == []


def test_a_record_kept_by_another_request_is_still_reported_as_woken(services: Services) -> None:
    """Records kept waiting before the body stay the body's woken ones, not its own."""
    with_template(services, "CTR")
    assert send(services, task("task-1", PreviousContactId="call-1")).waiting == 1

    outcome = process_body(services, body(ctr("call-1", address=CALLER)))

    assert outcome_json(outcome) == {"Accepted": 1, "Rejected": []}
    assert outcome.woken is not None and outcome.woken.accepted == 1, outcome
    [customer] = linked_to(services, "call-1")
    assert contacts_of(services, customer, "CTR") == ["call-1", "task-1"]


def test_a_record_of_the_batch_woken_and_rejected_is_answered_with_why() -> None:
    """What a record's sending on made it replaces its "held", in its place among the
    rejected: here its dead letter's reason (contacts.service `claim_woken`, on the outcomes a
    batch reports)."""
    waiting = Rejection("leg", "kept waiting for call-1", kept_as="m-1")
    lettered = Rejection("leg", "dead-lettered: ambiguous")
    fate = BatchOutcome(rejected=[lettered], dead_lettered={D: 1})
    other = BatchOutcome(accepted=1)
    outcome = BatchOutcome(
        accepted=1,
        rejected=[waiting, Rejection("bad", "not a contact record")],
        held=1,
        waiting=1,
        woken=BatchOutcome(
            accepted=1,
            rejected=[lettered],
            dead_lettered={D: 1},
            sent={"m-1": fate, "m-2": other},
        ),
    )

    claim_woken(outcome)

    assert outcome.rejected == [lettered, Rejection("bad", "not a contact record")]
    assert (outcome.accepted, outcome.held, outcome.waiting) == (1, 0, 0)
    assert outcome.dead_lettered == {D: 1}
    assert outcome.woken == BatchOutcome(accepted=1, sent={"m-2": other})
