"""A contact-start event of an instance moved to another domain is routed as its record would
be (contacts.moves `applied_where_moved_from`, docs/contact-feeds.md): the event of a contact
applied in the domain the instance left (sent again), or of a transfer leg of such a contact,
goes there. It went to the instance's domain now, making a second profile of the contact there,
or answering a leg with "the contact it continues is on no profile of the domain". On SQLite
and PostgreSQL, through the real service functions."""

from __future__ import annotations

import pytest
from tests.unit.contacts.test_contacts_after_a_move import stored
from tests.unit.contacts.test_contacts_without_endpoint import (
    CALLER,
    D,
    start_event,
    task,
    with_template,
)
from tests.unit.contacts.test_waiting_records_moves import NEW, move_instance
from tests.unit.integrations.integ_helpers import ctr, send

from openprofiles.auth.scope import DomainScope
from openprofiles.contacts.kept import list_unrouted
from openprofiles.contacts.service import apply_contact_event
from openprofiles.context import Services
from openprofiles.errors import AccessDenied

ENDPOINT = {"Address": CALLER, "Type": "TELEPHONE_NUMBER"}


def test_an_event_sent_again_after_a_move_finds_its_contact_in_the_domain_left(
    services: Services,
) -> None:
    with_template(services, "CTR")
    with services.write() as tx:
        first = apply_contact_event(
            tx, start_event("call-1", Channel="VOICE", CustomerEndpoint=ENDPOINT)
        )
    move_instance(services)

    with services.write() as tx:
        again = apply_contact_event(
            tx, start_event("call-1", Channel="VOICE", CustomerEndpoint=ENDPOINT)
        )

    assert (again.domain_name, again.profile_id) == (D, first.profile_id)
    assert not again.created_profile
    assert stored(services, NEW, "call-1") == []
    # Its record follows it there: one profile, one copy.
    assert send(services, ctr("call-1", address=CALLER)).accepted == 1
    assert [r["ContactId"] for r in stored(services, D, "call-1")] == ["call-1"]
    assert stored(services, NEW, "call-1") == []


def test_a_transfer_legs_event_after_a_move_joins_its_calls_profile(services: Services) -> None:
    with_template(services, "CTR")
    send(services, ctr("call-1", address=CALLER))
    move_instance(services)

    with services.write() as tx:
        leg = apply_contact_event(tx, start_event("leg-1", PreviousContactId="call-1"))

    assert leg.domain_name == D and leg.profile_id is not None and leg.reason is None
    send(services, task("leg-1", PreviousContactId="call-1"))
    assert sorted(r["ContactId"] for r in stored(services, D, "call-1")) == ["call-1", "leg-1"]
    assert stored(services, NEW, "leg-1") == []


def test_a_legs_event_sends_on_the_task_waiting_for_it_in_the_instances_domain(
    services: Services,
) -> None:
    """A task that continues the leg, kept waiting in the new domain, follows the leg to the
    call's profile as a batch that sends the leg back wakes it."""
    with_template(services, "CTR")
    send(services, ctr("call-1", address=CALLER))
    move_instance(services)
    assert send(services, task("task-1", PreviousContactId="leg-1")).waiting == 1

    with services.write() as tx:
        apply_contact_event(tx, start_event("leg-1", PreviousContactId="call-1"))

    with services.read() as tx:
        assert list_unrouted(tx) == []
    contacts = sorted(r["ContactId"] for r in stored(services, D, "call-1"))
    assert contacts == ["call-1", "leg-1", "task-1"]
    assert stored(services, NEW, "task-1") == []


def test_an_event_going_back_is_refused_to_a_key_limited_to_the_new_domain(
    services: Services,
) -> None:
    """The domain it goes to decides, as for a record going back."""
    with_template(services, "CTR")
    send(services, ctr("call-1", address=CALLER))
    move_instance(services)
    settings = services.settings
    scope = DomainScope("AKIDSCOPEDTONEW", frozenset({NEW}), settings.region, settings.account_id)

    with services.write() as tx, pytest.raises(AccessDenied):
        apply_contact_event(
            tx, start_event("call-1", Channel="VOICE", CustomerEndpoint=ENDPOINT), scope=scope
        )

    assert stored(services, NEW, "call-1") == []
