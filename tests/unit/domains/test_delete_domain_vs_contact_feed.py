"""Contact records of an instance arriving while DeleteDomain removes the instance's domain
(PostgreSQL, READ COMMITTED, several server processes): the batch either goes to the domain
before the deletion, or waits for it and then finds the instance associated with no domain, and
keeps its records for it, as when the deletion comes first; never a batch failed whole because
the domain it was routed to vanished (HTTP 404, which a sender may take as final). SQLite's
single writer serialises the two already.

The deletion takes the association locks of the domain's instances (integrations.service
`lock_domain_instances`), which a batch takes shared before it reads where its instances go
(contacts.routing.Router.look_up). The test keeps the deletion's transaction open until the
batch waits for one of its locks (tests.support.lock_waits): before, the batch routed the
records to the domain being deleted and failed once the deletion committed (a foreign-key
violation here; NotFound for the domain when the deletion committed between the routing and
the batch's first read of the domain)."""

from __future__ import annotations

import json

import pytest
from tests.support.lock_waits import second_writer_meets_first
from tests.unit.integrations.integ_helpers import INSTANCE, associate, ctr, make_domain

from openprofiles.contacts.kept import count_unrouted
from openprofiles.contacts.models import BatchOutcome
from openprofiles.contacts.records import split_body
from openprofiles.contacts.service import apply_contact_event, ingest_contact_items
from openprofiles.context import Services, Tx
from openprofiles.domains.service import delete_domain, find_domain
from openprofiles.errors import BadRequest

D = "deleted-under-feed"
pytestmark = pytest.mark.parametrize("settings", ["postgres"], indirect=True)


# hold_unavailable: the Kinesis connector's call; without: POST /contact-records and
# `openprofiles ingest contact-records` (contacts.http.process_batch).
@pytest.mark.parametrize("hold_unavailable", [False, True], ids=["http-and-file", "kinesis"])
def test_records_sent_while_their_domain_is_deleted_are_kept_for_their_instance(
    services: Services, hold_unavailable: bool
) -> None:
    make_domain(services, D)
    associate(services, D)

    def deleting(tx: Tx) -> None:
        delete_domain(tx, domain_name=D)

    def feed() -> BatchOutcome:
        records = [ctr("c1", address="+17208401003"), ctr("c2", address="+17208401004")]
        body = "\n".join(json.dumps(r) for r in records)
        with services.write() as tx:
            return ingest_contact_items(tx, split_body(body), hold_unavailable=hold_unavailable)

    outcome = second_writer_meets_first(services, deleting, feed)

    assert isinstance(outcome, BatchOutcome), outcome
    assert outcome.accepted == 0
    assert [r.contact_id for r in outcome.rejected] == ["c1", "c2"]
    assert all("is not associated with any domain" in r.message for r in outcome.rejected)
    assert outcome.unrouted == {INSTANCE: 2}
    with services.read() as tx:
        assert find_domain(tx, domain_name=D) is None
        assert count_unrouted(tx, instance_arn=INSTANCE) == {INSTANCE: 2}


def test_a_start_event_sent_while_its_domain_is_deleted_finds_its_instance_unassociated(
    services: Services,
) -> None:
    """POST /contact-events (contacts.service.apply_contact_event) routes as a batch does: it
    waits for the deletion and is refused as for an instance associated with no domain, as
    when the deletion comes first."""
    make_domain(services, D)
    associate(services, D)
    event = {
        "ContactId": "live-1",
        "InitiationTimestamp": "2026-11-03T09:00:00Z",
        "Channel": "VOICE",
        "InstanceARN": INSTANCE,
        "CustomerEndpoint": {"Address": "+17208401003", "Type": "TELEPHONE_NUMBER"},
    }

    def start() -> object:
        with services.write() as tx:
            return apply_contact_event(tx, event)

    outcome = second_writer_meets_first(
        services, lambda tx: delete_domain(tx, domain_name=D), start
    )

    assert isinstance(outcome, BadRequest), outcome
    assert outcome.message == f"The instance {INSTANCE} is not associated with any domain."
