"""Checking contact records and splitting bodies (spec §3.1): a field of the wrong JSON type, a
lone UTF-16 surrogate, an endpoint that cannot be a phone number or an email address, or a
timestamp outside UTC's calendar rejects its record with a reason, never the batch (which is
applied, on SQLite and PostgreSQL); a body that is neither JSON nor JSON lines is refused
whole, never cut into line fragments."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytest
from tests.support import contact_loader
from tests.unit.integrations.integ_helpers import (
    INSTANCE,
    OTHER_INSTANCE,
    associate,
    ctr,
    make_domain,
    send,
)

from openprofiles.contacts.history import summarise
from openprofiles.contacts.kept import list_unrouted
from openprofiles.contacts.models import BodyInvalid, ContactRecordInvalid
from openprofiles.contacts.records import parse_contact_record, split_body, split_records
from openprofiles.contacts.service import ingest_contact_items, replay_unrouted
from openprofiles.context import Services
from openprofiles.dlq.service import list_messages

D = "checked"

WRONG_TYPES: list[tuple[dict[str, Any], str]] = [
    ({"Channel": ["VOICE"]}, 'Channel ["VOICE"] is not one of'),
    ({"Channel": {"Name": "VOICE"}}, "Channel {"),
    ({"Channel": 7}, "Channel 7 is not one of"),
    ({"InstanceARN": [INSTANCE]}, "is not a contact-centre instance ARN"),
    ({"InstanceARN": {"ARN": INSTANCE}}, "is not a contact-centre instance ARN"),
    ({"CustomerEndpoint": ["+17208401003"]}, "CustomerEndpoint must be an object"),
    ({"CustomerEndpoint": {"Address": ["x"], "Type": "TELEPHONE_NUMBER"}}, "Address must be"),
    ({"CustomerEndpoint": {"Address": {"a": 1}, "Type": "EMAIL_ADDRESS"}}, "Address must be"),
    ({"CustomerEndpoint": {"Address": "+17208401003", "Type": ["X"]}}, "CustomerEndpoint.Type"),
    ({"CustomerEndpoint": {"Address": "+17208401003", "Type": {}}}, "CustomerEndpoint.Type"),
    ({"InitiationTimestamp": ["2022-04-08T14:59:38Z"]}, "InitiationTimestamp must be"),
    ({"LastUpdateTimestamp": {"t": 1}}, "LastUpdateTimestamp must be"),
    ({"LastUpdateTimestamp": 1649430182}, "LastUpdateTimestamp must be"),
    # Valid ISO 8601, but outside UTC's calendar (astimezone overflows): said to be out of
    # range, not malformed.
    ({"LastUpdateTimestamp": "0001-01-01T00:00:00+01:00"}, "is out of range"),
    ({"InitiationTimestamp": "9999-12-31T23:59:59-01:00"}, "is out of range"),
    ({"LastUpdateTimestamp": "9999-12-31T23:59:59-05:00"}, "is out of range"),
    # The contact a record continues: a wrong JSON type, or text that cannot be a ContactId,
    # rejects the record (never dropped, the contact then said to continue none).
    ({"PreviousContactId": 5}, "PreviousContactId 5 is not a ContactId"),
    ({"InitialContactId": {}}, "InitialContactId {} is not a ContactId"),
    ({"RelatedContactId": True}, "RelatedContactId true is not a ContactId"),
    ({"PreviousContactId": ["c0"]}, "PreviousContactId"),
    ({"RelatedContactId": "   "}, "RelatedContactId"),
    ({"InitialContactId": "c" * 256}, "InitialContactId"),
    ({"PreviousContactId": " c0"}, "begins or ends with white space"),
]


@pytest.mark.parametrize(("change", "reason"), WRONG_TYPES)
def test_wrong_typed_field_rejects_the_record(change: dict[str, Any], reason: str) -> None:
    record = ctr("c1", **change)
    with pytest.raises(ContactRecordInvalid) as caught:
        parse_contact_record(record, json.dumps(record))
    assert reason in caught.value.reason
    assert caught.value.contact_id == "c1"


def test_a_malformed_timestamp_is_still_said_to_be_no_iso_8601_one() -> None:
    record = ctr("c1", LastUpdateTimestamp="2022-13-45T99:00:00Z")
    with pytest.raises(ContactRecordInvalid, match="is not an ISO 8601 timestamp"):
        parse_contact_record(record, json.dumps(record))


@pytest.mark.parametrize("value", [None, "", "c0", "c" * 255])
def test_continued_contact_ids_absent_empty_or_a_contact_id_are_taken(value: Any) -> None:
    record = ctr("c1", PreviousContactId=value, InitialContactId=value, RelatedContactId=value)
    assert parse_contact_record(record, json.dumps(record)).contact_id == "c1"


def test_a_stored_timestamp_outside_utc_does_not_break_the_contact_history() -> None:
    """DisconnectTimestamp is not checked on the way in; the summary reads it as unknown."""
    summary = summarise(ctr("c1", end="0001-01-01T00:00:00+01:00"))
    assert summary.end is None and summary.duration_seconds is None


@pytest.mark.parametrize("contact_id", [5, ["c1"], {"id": "c1"}, True, "   "])
def test_contact_id_must_be_a_string(contact_id: Any) -> None:
    record = ctr("c1", ContactId=contact_id)
    with pytest.raises(ContactRecordInvalid, match="ContactId must be a non-blank string"):
        parse_contact_record(record, json.dumps(record))


@pytest.mark.parametrize("contact_id", [" c1", "c1 ", "\tc1", "c1\n", "\u00a0c1"])
def test_contact_id_with_white_space_at_an_end_is_rejected_not_trimmed(contact_id: str) -> None:
    """A ContactId " c1" used to be taken as another contact than "c1" (an audit)."""
    record = ctr("c1", ContactId=contact_id)
    with pytest.raises(ContactRecordInvalid, match="begins or ends with white space") as caught:
        parse_contact_record(record, json.dumps(record))
    assert caught.value.contact_id == contact_id


def test_contact_id_longer_than_a_key_value_is_rejected() -> None:
    fits = ctr("c" * 255)
    assert parse_contact_record(fits, json.dumps(fits)).contact_id == "c" * 255
    record = ctr("c" * 5000)
    with pytest.raises(ContactRecordInvalid, match="is 5000 characters long; the limit is 255"):
        parse_contact_record(record, json.dumps(record))


@pytest.mark.parametrize(
    "address", ["000", "+++0 0 0", "+999", "911", "+1 206 555 01", "+1+2065550100", "nope!"]
)
def test_not_a_possible_phone_number(address: str) -> None:
    """Not an invalid record: it counts as one without an endpoint (a withheld caller's)."""
    record = ctr("c1", address=address)
    parsed = parse_contact_record(record, json.dumps(record))
    assert (parsed.customer_endpoint, parsed.unreadable_endpoint) == (None, "TELEPHONE_NUMBER")


@pytest.mark.parametrize(
    "address",
    [
        "+12065550100",
        "+1 (206) 555-0100",
        "206-555-0100",
        "+12060000001",
        "+1 720 840 1003",
        "+44 20 7946 0958",
        "+33 1 23 45 67 89",
    ],
)
def test_possible_phone_numbers(address: str) -> None:
    record = ctr("c1", address=address)
    parsed = parse_contact_record(record, json.dumps(record))
    assert parsed.customer_endpoint is not None
    assert parsed.customer_endpoint.address == address


@pytest.mark.parametrize(
    "address", ["a@@b.", "A@@B.", "a@b", "a@b.", "a@.b.c", "a@b..c", "@b.c", "a b@c.d", "a@b\tc.d"]
)
def test_not_an_email_address(address: str) -> None:
    """Not an invalid record: it counts as one without an endpoint."""
    record = ctr("c1", channel="CHAT", address=address)
    parsed = parse_contact_record(record, json.dumps(record))
    assert (parsed.customer_endpoint, parsed.unreadable_endpoint) == (None, "EMAIL_ADDRESS")


@pytest.mark.parametrize("address", ["kim@example.com", "Ada.L+x@mail.Example.co.uk", "a@b.c"])
def test_email_addresses(address: str) -> None:
    record = ctr("c1", channel="CHAT", address=address)
    assert parse_contact_record(record, json.dumps(record)).customer_endpoint is not None


def test_lone_surrogate_rejects_the_record_and_its_text_stays_storable() -> None:
    good = json.dumps(ctr("good"))
    bad = json.dumps(ctr("bad", Attributes={"note": "\ud800"}))
    assert "\\ud800" in bad
    for body in (f"[{good},{bad}]", f"{good}\n{bad}", bad):
        items = split_records(body)
        outcomes = []
        for raw, parsed in items:
            raw.encode("utf-8")  # what is dead-lettered must be storable
            try:
                outcomes.append(parse_contact_record(parsed, raw).contact_id)
            except ContactRecordInvalid as exc:
                assert "lone UTF-16 surrogate" in exc.reason
                outcomes.append(f"rejected {exc.contact_id}")
        assert outcomes[-1] == "rejected bad"
        assert outcomes[:-1] == (["good"] if len(items) == 2 else [])
    # A record parsed elsewhere (a contact event, a replayed or retried one) is checked too.
    event = json.loads(bad)
    with pytest.raises(ContactRecordInvalid, match="lone UTF-16 surrogate"):
        parse_contact_record(event, json.dumps(event, ensure_ascii=False))
    with pytest.raises(ContactRecordInvalid, match="lone UTF-16 surrogate"):
        parse_contact_record(event, bad)


def test_malformed_multi_line_json_is_refused_whole() -> None:
    records = [ctr("p1"), ctr("p2")]
    # A pretty-printed array with a stray trailing comma.
    pretty = json.dumps(records, indent=2)[:-2] + ",\n]"
    with pytest.raises(BodyInvalid, match=r"neither a JSON contact record.*line \d+ column \d+"):
        split_records(pretty)
    with pytest.raises(BodyInvalid):
        split_records(json.dumps(records[0], indent=2)[:-1])
    # Half the lines are records: JSON lines with one bad line, not a body refused whole.
    [(_, bad), (_, good)] = split_records("not json\n" + json.dumps(records[0]))
    assert isinstance(bad, ContactRecordInvalid) and good == records[0]
    # Stream data is kept whatever it holds: one invalid record, whole.
    [(raw, invalid)] = split_body(pretty)
    assert raw == pretty.strip()
    assert isinstance(invalid, ContactRecordInvalid)
    assert "neither a JSON contact record" in invalid.reason


def test_json_lines_with_a_bad_line_still_split() -> None:
    lines = [json.dumps(ctr("j1")), "{bad", json.dumps(ctr("j2"))]
    items = split_records("\n".join(lines))
    assert [raw for raw, _ in items] == lines
    assert isinstance(items[1][1], ContactRecordInvalid)
    # The first line broken: every line still starts a JSON object.
    assert len(split_records("\n".join(lines[1:]))) == 2
    # A line that is a JSON value of another kind: still JSON lines, that line rejected.
    assert len(split_records('[1]\n{"x":\n' + lines[0])) == 3
    # One line that is not JSON is not JSON lines: the body is refused whole.
    with pytest.raises(BodyInvalid, match=r"neither a JSON contact record.*line 1 column 2"):
        split_records("{truncated")


@pytest.fixture
def domain(services: Services) -> str:
    make_domain(services, D)
    associate(services, D)
    return D


# Profiles of D a contact's `_ctrContactId` finds.
found = partial(contact_loader.found, domain_name=D)


def test_wrong_types_in_a_batch_reject_only_their_records(services: Services, domain: str) -> None:
    wrong = [ctr(f"bad{i}", **change) for i, (change, _) in enumerate(WRONG_TYPES)]
    # Naming an unknown instance, with a wrong-typed field: kept unrouted, not dead-lettered.
    wrong.append(ctr("far", instance=OTHER_INSTANCE, Channel=["VOICE"]))
    outcome = send(services, ctr("before"), *wrong, ctr("after", address="+1 206 555 0100"))
    assert outcome.accepted == 2
    assert len(outcome.rejected) == len(wrong)
    assert found(services, "before") == found(services, "after") == 1
    with services.read() as tx:
        letters = list_messages(tx, domain_name=D)
        kept = list_unrouted(tx)
    # Those naming the associated instance are in its dead-letter queue, with their reasons.
    instance_named = [r for r in wrong if r["InstanceARN"] == INSTANCE]
    assert len(letters) == len(instance_named)
    assert sorted(json.loads(letter.object_json)["ContactId"] for letter in letters) == sorted(
        r["ContactId"] for r in instance_named
    )
    assert sorted(json.loads(k.object_json)["ContactId"] for k in kept) == sorted(
        r["ContactId"] for r in wrong if r["InstanceARN"] != INSTANCE
    )


def test_a_padded_contact_id_is_dead_lettered_not_a_second_contact(
    services: Services, domain: str
) -> None:
    outcome = send(services, ctr("c1", agent="plain"), ctr(" c1", agent="padded"))
    assert outcome.accepted == 1
    [rejection] = outcome.rejected
    assert rejection.contact_id == " c1" and "white space" in rejection.message
    assert found(services, "c1") == 1 and found(services, " c1") == 0
    with services.read() as tx:
        [letter] = list_messages(tx, domain_name=D)
    assert json.loads(letter.object_json)["ContactId"] == " c1"


def test_lone_surrogates_are_dead_lettered_or_kept(services: Services, domain: str) -> None:
    body = "\n".join(
        [
            json.dumps(ctr("good")),
            json.dumps(ctr("bad", Attributes={"note": "\udc00"})),
            json.dumps(ctr("bad-id-\ud800")),
            # The instance itself unreadable: no domain can take it, so it is kept.
            json.dumps(ctr("bad-instance", instance=INSTANCE + "\ud800")),
        ]
    )
    with services.write() as tx:
        outcome = ingest_contact_items(tx, split_records(body))
    assert outcome.accepted == 1 and found(services, "good") == 1
    assert len(outcome.rejected) == 3
    assert all("lone UTF-16 surrogate" in r.message for r in outcome.rejected)
    assert outcome.rejected[0].contact_id == "bad"
    with services.read() as tx:
        letters = list_messages(tx, domain_name=D)
        [kept] = list_unrouted(tx)
    # Stored as received (the escape), so a retry or a replay is judged the same way.
    assert sorted(letter.object_json for letter in letters) == sorted(body.splitlines()[1:3])
    assert kept.object_json == body.splitlines()[3]


def test_replayed_record_with_a_lone_surrogate_is_rejected(services: Services) -> None:
    make_domain(services, D)
    send(services, ctr("late", instance=OTHER_INSTANCE, Attributes={"note": "\ud800"}))
    associate(services, D, OTHER_INSTANCE)
    with services.write() as tx:
        outcome = replay_unrouted(tx, instance_arn=OTHER_INSTANCE)
    assert outcome.accepted == 0
    assert "lone UTF-16 surrogate" in outcome.rejected[0].message
    with services.read() as tx:
        [letter] = list_messages(tx, domain_name=D)
    assert json.loads(letter.object_json)["ContactId"] == "late"
