"""The answer to a `POST /contact-records` body gives each rejected record's place in the body
(`Index`, 0-based: an array's index, or the count of records before it in JSON lines), so the
sender can tell which records were rejected even when their ContactId cannot be read (answered
null). On SQLite and PostgreSQL, whose bodies of more than `PG_RECORDS_PER_TRANSACTION` records
are applied in several transactions: the place is the body's, not the transaction's."""

from __future__ import annotations

import json

from tests.unit.contacts.test_contact_records_woken_in_request import body, fillers
from tests.unit.integrations.integ_helpers import INSTANCE, associate, ctr, make_domain

from openprofiles.contacts.http import outcome_json, process_body
from openprofiles.contacts.models import BatchOutcome, Rejection
from openprofiles.contacts.service import claim_woken
from openprofiles.context import Services
from openprofiles.store.chunks import PG_RECORDS_PER_TRANSACTION

D = "placed"


def test_rejected_records_are_answered_with_their_place_in_an_array(services: Services) -> None:
    make_domain(services, D)
    associate(services, D)
    records = [
        ctr("good-1"),
        {**ctr("x"), "ContactId": None},
        42,
        {**ctr("x"), "ContactId": 5},
        ctr("bad-channel", Channel=["VOICE"]),
        ctr("good-2", address="+12065550100"),
    ]

    answer = outcome_json(process_body(services, json.dumps(records)))

    assert answer["Accepted"] == 2
    assert [(r["ContactId"], r["Index"]) for r in answer["Rejected"]] == [
        (None, 1),
        (None, 2),
        (None, 3),
        ("bad-channel", 4),
    ]
    assert all(set(r) == {"ContactId", "Message", "Index"} for r in answer["Rejected"])


def test_in_json_lines_the_place_counts_records_not_blank_lines(services: Services) -> None:
    make_domain(services, D)
    associate(services, D)
    text = "\n".join(
        [json.dumps(ctr("good-1")), "", "not json", "", json.dumps({"InstanceARN": INSTANCE})]
    )

    answer = outcome_json(process_body(services, text))

    assert answer["Accepted"] == 1
    assert [(r["ContactId"], r["Index"]) for r in answer["Rejected"]] == [(None, 1), (None, 2)]


def test_the_place_is_the_bodys_across_its_transactions(services: Services) -> None:
    """On PostgreSQL the unreadable record is in the body's second transaction: its place is
    counted from the body's start, not the transaction's."""
    make_domain(services, D)
    associate(services, D)
    records = [
        {**ctr("x"), "ContactId": None},
        *fillers(PG_RECORDS_PER_TRANSACTION),
        {**ctr("y"), "ContactId": None},
    ]

    answer = outcome_json(process_body(services, body(*records)))

    assert answer["Accepted"] == PG_RECORDS_PER_TRANSACTION
    assert [r["Index"] for r in answer["Rejected"]] == [0, PG_RECORDS_PER_TRANSACTION + 1]


def test_a_record_of_the_batch_woken_and_rejected_keeps_its_place() -> None:
    """Its sending on placed it among the kept records sent (index 0 there); the answer gives
    its place in the body."""
    waiting = Rejection("leg", "kept waiting for call-1", kept_as="m-1", index=7)
    fate = BatchOutcome(rejected=[Rejection("leg", "dead-lettered: ambiguous", index=0)])
    outcome = BatchOutcome(
        rejected=[waiting],
        held=1,
        waiting=1,
        woken=BatchOutcome(rejected=list(fate.rejected), sent={"m-1": fate}),
    )

    claim_woken(outcome)

    assert outcome.rejected == [Rejection("leg", "dead-lettered: ambiguous", index=7)]
