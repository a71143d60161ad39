"""Records kept waiting for the contact they continue, sent on by an agent's link at once
(AddProfileKey `_ctrContactId`: contacts.service `_wake_linked`); and an instance moved to
another domain: an update of a contact applied in the domain it left goes there
(`_applied_where_moved_from`), and a record a batch left waiting in the old domain as the move
committed follows it at the next sweep (`_follow_strays`) — on SQLite and PostgreSQL, through
the real service functions."""

from __future__ import annotations

import json

import pytest
from tests.unit.contacts.test_contacts_without_endpoint import (
    CALLER,
    D,
    contacts_of,
    link,
    new_profile,
    task,
    with_template,
)
from tests.unit.contacts.test_waiting_records_moves import (
    NEW,
    letters_of,
    move_instance,
    on_profile_in_new,
)
from tests.unit.integrations.integ_helpers import INSTANCE, associate, ctr, make_domain, send

from openprofiles.contacts.records import split_body
from openprofiles.contacts.service import (
    connect_instance,
    ingest_contact_items,
    list_unrouted,
    send_kept_on,
)
from openprofiles.context import Services
from openprofiles.domains.service import delete_domain
from openprofiles.objects.service import list_profile_objects
from openprofiles.profiles.service import SearchCriterion, search_profiles

LATER = "2022-04-08T16:00:00Z"


@pytest.mark.parametrize("linked", ["call-1", "task-1"])
def test_an_agents_link_sends_the_waiting_record_on_at_once(
    services: Services, linked: str
) -> None:
    """The link (of the contact the task continues, or of the task itself) placed the task,
    but only the sweep sent it on, up to a minute later: the agent did not see it."""
    with_template(services, "CTR")
    assert send(services, task("task-1", PreviousContactId="call-1")).waiting == 1
    maria = new_profile(services, FirstName="Maria")

    link(services, maria, linked)  # no sweep after it

    assert contacts_of(services, maria, "CTR") == ["task-1"]
    with services.read() as tx:
        assert list_unrouted(tx) == []
    assert letters_of(services, D) == []


def stored(services: Services, domain_name: str, contact_id: str) -> list[dict[str, str]]:
    """The CTR records of the profiles `contact_id` finds in the domain (none: no profile)."""
    with services.read() as tx:
        page, _ = search_profiles(
            tx, domain_name=domain_name, criteria=[SearchCriterion("_ctrContactId", (contact_id,))]
        )
        out = []
        for found, _ in page:
            records, _ = list_profile_objects(
                tx,
                domain_name=domain_name,
                object_type_name="CTR",
                profile_id=found.profile_id,
                limit=10,
            )
            out.extend(json.loads(r.object_json) for r in records)
    return out


def test_an_update_of_a_contact_applied_before_a_move_goes_where_the_contact_is(
    services: Services,
) -> None:
    """It went to the new domain as a new contact (a second profile, a second copy), the old
    domain's copy left stale. A new contact goes to the new domain."""
    with_template(services, "CTR")
    send(services, ctr("call-1", address=CALLER))
    move_instance(services)

    update = ctr("call-1", address=CALLER, last_update=LATER, Attributes={"outcome": "sold"})
    outcome = send(services, update, ctr("call-2", address=CALLER))

    assert outcome.accepted == 2 and not outcome.rejected
    [record] = stored(services, D, "call-1")
    assert (record["LastUpdateTimestamp"], record["Attributes"]) == (LATER, {"outcome": "sold"})
    assert stored(services, NEW, "call-1") == []
    assert on_profile_in_new(services, "call-2") == ["call-2"]
    assert stored(services, D, "call-2") == []


def test_back_in_its_old_domain_an_instance_sends_updates_where_their_contacts_are(
    services: Services,
) -> None:
    """Moved back, the domain is the instance's own again, and the one it left in turn keeps
    the updates of the contacts applied there meanwhile."""
    with_template(services, "CTR")
    send(services, ctr("call-1", address=CALLER))
    move_instance(services)
    send(services, ctr("call-2", address=CALLER))
    with services.write() as tx:
        connect_instance(tx, domain_name=D, instance_arn=INSTANCE, move=True)

    send(
        services,
        ctr("call-1", address=CALLER, last_update=LATER),
        ctr("call-2", address=CALLER, last_update=LATER),
    )

    assert [r["LastUpdateTimestamp"] for r in stored(services, D, "call-1")] == [LATER]
    assert [r["LastUpdateTimestamp"] for r in stored(services, NEW, "call-2")] == [LATER]
    assert stored(services, D, "call-2") == stored(services, NEW, "call-1") == []


def test_an_update_goes_to_the_new_domain_once_the_old_one_is_deleted(
    services: Services,
) -> None:
    """A deleted domain holds nothing: its contacts are new to the instance's domain."""
    with_template(services, "CTR")
    send(services, ctr("call-1", address=CALLER))
    move_instance(services)
    with services.write() as tx:
        delete_domain(tx, domain_name=D)

    outcome = send(services, ctr("call-1", address=CALLER, last_update=LATER))

    assert outcome.accepted == 1 and not outcome.rejected
    assert on_profile_in_new(services, "call-1") == ["call-1"]


def test_a_record_left_waiting_in_the_domain_its_instance_left_follows_it_at_the_sweep(
    services: Services,
) -> None:
    """What a batch that routed the task to the old domain just before the move committed
    leaves (the move's own transaction could not see it; moved here without the move's
    re-keying, as the race leaves it): it waited in the old domain, where its contact never
    comes, until the hour's end."""
    with_template(services, "CTR")
    send(services, task("task-1", PreviousContactId="call-1"))
    move_instance_bare(services)
    send(services, ctr("call-1", address=CALLER))

    send_kept_on(services)  # the server's sweep

    assert on_profile_in_new(services, "call-1") == ["call-1", "task-1"]
    with services.read() as tx:
        assert list_unrouted(tx) == []
    assert letters_of(services, D) == [] and letters_of(services, NEW) == []


def move_instance_bare(services: Services) -> None:
    """The integration moved and nothing else: the state a record kept waiting by a batch
    that committed after the move is in."""
    make_domain(services, NEW)
    associate(services, NEW, move=True)


@pytest.mark.parametrize("settings", ["postgres"], indirect=True)
def test_the_race_itself_a_batch_keeping_a_record_as_the_instance_moves(
    services: Services,
) -> None:
    """The batch routed the task to the old domain and kept it waiting; the move committed
    meanwhile (it takes no lock the batch holds, nor sees its uncommitted rows); then the
    batch committed. (PostgreSQL: SQLite's one writer serialises the two.)"""
    with_template(services, "CTR")
    with services.write() as batch:
        body = json.dumps(task("task-1", PreviousContactId="call-1"))
        assert ingest_contact_items(batch, split_body(body)).waiting == 1
        move_instance(services)
    send(services, ctr("call-1", address=CALLER))

    send_kept_on(services)

    assert on_profile_in_new(services, "call-1") == ["call-1", "task-1"]
    with services.read() as tx:
        assert list_unrouted(tx) == []
