"""A withheld caller's endpoint ("anonymous", "Restricted", "+1000": an Address that cannot be
read as what its Type says) counts as no endpoint (contacts.records `_endpoint`): the contact
goes where a link places it, as a task does, and its unreadable Address lands on no profile;
unlinked, it is dead-lettered `no_profile` (retried once linked), never a new profile. It was
dead-lettered for good as an invalid record, even linked, and its start event refused with 400.
And a record or event holding a NUL (U+0000), which the API refuses in every value, is rejected
with the reason. On SQLite and PostgreSQL, through the real service functions."""

from __future__ import annotations

import json

import pytest
from tests.unit.contacts.test_contacts_without_endpoint import (
    CALLER,
    D,
    contacts_of,
    letters,
    link,
    new_profile,
    profile_count,
    start_event,
    with_template,
)
from tests.unit.integrations.integ_helpers import ctr, send

from openprofiles.contacts.models import ContactRecordInvalid
from openprofiles.contacts.records import parse_contact_record
from openprofiles.contacts.service import apply_contact_event
from openprofiles.context import Services
from openprofiles.dlq import service as dlq
from openprofiles.errors import BadRequest
from openprofiles.profiles.service import SearchCriterion, get_profile, search_profiles

WITHHELD = ["anonymous", "+anonymous", "Restricted", "+1000", "266696687"]


def keyed(services: Services, key_name: str, value: str) -> list[str]:
    with services.read() as tx:
        page, _ = search_profiles(tx, domain_name=D, criteria=[SearchCriterion(key_name, (value,))])
    return [p.profile_id for p, _ in page]


@pytest.mark.parametrize("address", WITHHELD)
def test_an_unreadable_number_is_parsed_as_no_endpoint(address: str) -> None:
    record = ctr("c1", address=address)
    parsed = parse_contact_record(record, json.dumps(record))
    assert parsed.customer_endpoint is None
    assert parsed.unreadable_endpoint == "TELEPHONE_NUMBER"
    # The pipeline maps it without its endpoint; it is stored as received.
    assert "CustomerEndpoint" not in parsed.source_to_map
    assert parsed.source["CustomerEndpoint"]["Address"] == address


def test_an_unreadable_email_address_is_parsed_as_no_endpoint() -> None:
    record = ctr("c1", channel="CHAT", address="kim at example")
    parsed = parse_contact_record(record, json.dumps(record))
    assert (parsed.customer_endpoint, parsed.unreadable_endpoint) == (None, "EMAIL_ADDRESS")


@pytest.mark.parametrize("template", ["CTR", "CTR-NoInferred"])
def test_a_linked_contact_from_a_withheld_number_lands_on_its_profile(
    services: Services, template: str
) -> None:
    """p29/p30: each was dead-lettered 'cannot be read as a telephone number' for good."""
    with_template(services, template)
    known = new_profile(services, FirstName="Known")
    for number in range(len(WITHHELD)):
        link(services, known, f"an{number}")

    outcome = send(services, *(ctr(f"an{n}", address=a) for n, a in enumerate(WITHHELD)))

    assert (outcome.accepted, outcome.created_profiles, outcome.rejected) == (5, 0, [])
    assert contacts_of(services, known, template) == [f"an{n}" for n in range(5)]
    assert letters(services) == []
    # The unreadable number is neither the profile's number nor a key any caller shares.
    with services.read() as tx:
        assert "PhoneNumber" not in get_profile(tx, domain_name=D, profile_id=known).fields
    assert keyed(services, "_ctrPhone", "anonymous") == keyed(services, "_phone", "+1000") == []
    assert profile_count(services) == 1


def test_an_unlinked_contact_from_a_withheld_number_is_placed_as_one_without_endpoint(
    services: Services,
) -> None:
    """No profile is made for it (every withheld caller would share it): dead-lettered
    `no_profile`, as a task is, and applied by a retry once an agent links it."""
    with_template(services, "CTR")

    outcome = send(services, ctr("an1", address="anonymous"))

    [rejection] = outcome.rejected
    assert "TELEPHONE_NUMBER CustomerEndpoint whose Address cannot be read" in rejection.message
    assert "anonymous" not in rejection.message
    assert [category for category, _ in letters(services)] == ["no_profile"]
    assert profile_count(services) == 0
    known = new_profile(services, FirstName="Known")
    link(services, known, "an1")
    with services.write() as tx:
        retried = dlq.retry(tx, domain_name=D)
    assert len(retried.succeeded) == 1 and not retried.failed
    assert contacts_of(services, known, "CTR") == ["an1"]


def test_a_start_event_from_a_withheld_number_links_as_one_without_endpoint(
    services: Services,
) -> None:
    """It was refused with 400; an event without an endpoint links by its `_ctrContactId` or
    says why it links nothing."""
    with_template(services, "CTR")
    withheld = {"Address": "anonymous", "Type": "TELEPHONE_NUMBER"}
    known = new_profile(services, FirstName="Known")
    link(services, known, "ev-1")

    with services.write() as tx:
        linked = apply_contact_event(
            tx, start_event("ev-1", Channel="VOICE", CustomerEndpoint=withheld)
        )
        unlinked = apply_contact_event(
            tx, start_event("ev-2", Channel="VOICE", CustomerEndpoint=withheld)
        )

    assert (linked.profile_id, linked.created_profile) == (known, False)
    assert unlinked.profile_id is None and unlinked.reason is not None
    assert "cannot be read as a telephone number" in unlinked.reason
    assert profile_count(services) == 1


NUL_RECORDS = {
    "contact-id": ctr("nul\x00id"),
    "email": ctr("n3", channel="CHAT", address="kim\x00@example.com"),
    "timestamp": ctr("n4", last_update="2022-04-08T15:03:02Z\x00"),
    "attribute": ctr("n5", Attributes={"note\x00": "x"}),
}


@pytest.mark.parametrize("which", sorted(NUL_RECORDS))
def test_a_record_holding_a_nul_is_rejected_with_the_reason(services: Services, which: str) -> None:
    """p27: accepted, making a profile whose EmailAddress CreateProfile refuses."""
    with_template(services, "CTR")

    outcome = send(services, NUL_RECORDS[which], ctr("fine", address=CALLER))

    assert outcome.accepted == 1
    [rejection] = outcome.rejected
    assert "holds a NUL character (U+0000" in rejection.message
    # Named when its ContactId can be; never a ContactId the API refuses.
    assert rejection.contact_id == (
        None if which == "contact-id" else NUL_RECORDS[which]["ContactId"]
    )
    assert [category for category, _ in letters(services)] == ["invalid_value"]
    assert profile_count(services) == 1


def test_an_escaped_backslash_before_u0000_is_no_nul() -> None:
    record = ctr("c1", Attributes={"note": "\\u0000"})
    assert parse_contact_record(record, json.dumps(record)).contact_id == "c1"


def test_a_start_event_holding_a_nul_is_refused(services: Services) -> None:
    with_template(services, "CTR")
    endpoint = {"Address": "kim\x00@example.com", "Type": "EMAIL_ADDRESS"}
    with services.write() as tx, pytest.raises(BadRequest, match="NUL character"):
        apply_contact_event(tx, start_event("ev-1", Channel="CHAT", CustomerEndpoint=endpoint))
    assert profile_count(services) == 0


def test_nul_check_names_the_record() -> None:
    record = ctr("c1", InitiationTimestamp="2022-04-08T14:59:38Z\x00")
    with pytest.raises(ContactRecordInvalid, match="NUL character") as caught:
        parse_contact_record(record, json.dumps(record))
    assert caught.value.contact_id == "c1"
