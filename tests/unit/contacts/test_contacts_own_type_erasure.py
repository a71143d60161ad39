"""A contact record stored as an object of a type of one's own whose keys lack `_ctrContactId`
(its own keys say what finds it: contacts.links): deleting the object (DeleteProfileObject,
expiry, eviction) forgot nothing of its delivery, as it does for the templates' types
(contacts.erasure). The `contact_record` row stayed, naming the erased contact, and the contact
delivered again was answered as a repeat (Accepted, changing nothing) while nothing of it was
stored. Now the delivery goes with the object, and the record delivered again is stored again —
on SQLite and PostgreSQL, through the real service functions."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from tests.unit.contacts.test_contact_links_and_ambiguity import MY_CTR, D, objects_of, search
from tests.unit.integrations.integ_helpers import associate, ctr, make_domain, send

from openprofiles.context import Services
from openprofiles.normalize import ContentType, normalize
from openprofiles.object_types.service import put_object_type
from openprofiles.objects.service import delete_profile_object, list_profile_objects, purge_expired
from openprofiles.store.schema import contact_record

NUMBER = "+12065551400"


def deliveries(services: Services) -> list[str]:
    """The object types of the domain's remembered deliveries."""
    with services.read() as tx:
        rows = tx.conn.execute(
            select(contact_record.c.object_type_name).where(contact_record.c.domain_name == D)
        )
        return sorted(rows.scalars())


def own_type(services: Services, **more: object) -> None:
    make_domain(services, D)
    with services.write() as tx:
        put_object_type(tx, domain_name=D, name="MyCTR", params={**MY_CTR, **more})
    associate(services, D, object_type_name="MyCTR")


def test_a_deleted_record_of_an_own_type_is_stored_again_when_delivered_again(
    services: Services,
) -> None:
    own_type(services)
    record = ctr("c1", address=NUMBER)
    kept = ctr("c2", address=NUMBER)
    assert send(services, record, kept).accepted == 2
    [profile_id] = search(services, "_phone", NUMBER)

    with services.write() as tx:
        unique = tx.cipher(D).digest("contactKey", normalize(ContentType.STRING, "c1"))
        delete_profile_object(
            tx,
            domain_name=D,
            object_type_name="MyCTR",
            profile_id=profile_id,
            unique_key=unique.hex(),
        )

    # c2's delivery stays: its record does.
    assert deliveries(services) == ["MyCTR"]
    again = send(services, record)
    assert (again.accepted, again.unchanged) == (1, 0), again
    assert sorted(o["ContactId"] for o in objects_of(services, profile_id, "MyCTR")) == [
        "c1",
        "c2",
    ]
    assert send(services, kept).unchanged == 1


def test_an_expired_record_of_an_own_type_takes_its_delivery_along(services: Services) -> None:
    """Updated (its object keys written again by the pipeline), then expired and purged."""
    own_type(services, ExpirationDays=1)
    send(services, ctr("c1", address=NUMBER))
    assert send(services, ctr("c1", address=NUMBER, last_update="2022-04-08T16:00:00Z")).accepted
    [profile_id] = search(services, "_phone", NUMBER)

    with services.write() as tx:
        purge_expired(tx, tx.now + timedelta(days=2))

    assert deliveries(services) == []
    with services.read() as tx:
        listed, _ = list_profile_objects(
            tx, domain_name=D, object_type_name="MyCTR", profile_id=profile_id, limit=10
        )
    assert listed == []
    again = send(services, ctr("c1", address=NUMBER, last_update="2022-04-08T16:00:00Z"))
    assert (again.accepted, again.unchanged) == (1, 0), again
