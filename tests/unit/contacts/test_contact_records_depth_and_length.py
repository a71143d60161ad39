"""A contact record is read as strictly as PutProfileObject's Object (on SQLite and PostgreSQL):
one nested deeper than MAX_JSON_DEPTH is rejected — in a body, a file's line, or a record kept
for its instance and replayed — with its ContactId, the rest of its batch applied; and a record
over the length limit names its ContactId when it has one that can be read."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytest
from tests.support import contact_loader
from tests.unit.integrations.integ_helpers import (
    OTHER_INSTANCE,
    associate,
    ctr,
    make_domain,
    send,
)

from openprofiles.contacts.http import process_body
from openprofiles.contacts.kept import list_unrouted
from openprofiles.contacts.models import ContactRecordInvalid
from openprofiles.contacts.records import parse_contact_record, split_records
from openprofiles.contacts.service import replay_unrouted
from openprofiles.context import Services
from openprofiles.dlq.service import list_messages
from openprofiles.ingest import MAX_OBJECT_CHARS
from openprofiles.json_text import MAX_JSON_DEPTH

D = "strict"
TOO_DEEP = f"nested at most {MAX_JSON_DEPTH} levels deep"


@pytest.fixture
def domain(services: Services) -> str:
    make_domain(services, D)
    associate(services, D)
    return D


# Profiles of D a contact's `_ctrContactId` finds.
found = partial(contact_loader.found, domain_name=D)


def nested(record: dict[str, Any], levels: int) -> str:
    """`record`'s JSON with a member `deep` of `levels` nested arrays."""
    return json.dumps(record)[:-1] + ', "deep": ' + "[" * levels + "]" * levels + "}"


def letters(services: Services) -> list[tuple[str, str]]:
    with services.read() as tx:
        return [
            (json.loads(m.object_json)["ContactId"], m.reason)
            for m in list_messages(tx, domain_name=D)
        ]


def test_a_record_nested_too_deeply_is_rejected_and_the_rest_of_the_body_applied(
    services: Services, domain: str
) -> None:
    """A body's record nested 300 deep was accepted and stored, though PutProfileObject refuses
    it; one nested 900 deep with an escape in its text crashed the request (RecursionError in
    the lone-surrogate check). Both are rejected with their ContactIds and dead-lettered."""
    deep = nested(ctr("deep-1"), MAX_JSON_DEPTH + 100)
    deeper = nested(ctr("deep-2", Attributes={"note": "caf\u00e9"}), 900)
    assert "\\u00e9" in deeper
    just = nested(ctr("ok-2"), MAX_JSON_DEPTH - 2)
    bodies = {
        "lines": "\n".join([json.dumps(ctr("ok-1")), deep, deeper, just]),
        "array": f"[{json.dumps(ctr('ok-1'))},{deep},{deeper},{just}]",
    }
    for body in bodies.values():
        outcome = process_body(services, body)
        assert outcome.accepted == 2
        assert [r.contact_id for r in outcome.rejected] == ["deep-1", "deep-2"]
        assert all(TOO_DEEP in r.message for r in outcome.rejected)
    assert [found(services, c) for c in ("ok-1", "ok-2", "deep-1", "deep-2")] == [1, 1, 0, 0]
    # Each rejected twice: a letter each time, or one letter with two attempts where the two
    # bodies kept the same text of the record (a feed's resend counts on its letter).
    assert sorted({c for c, _ in letters(services)}) == ["deep-1", "deep-2"]
    assert all(TOO_DEEP in reason for _, reason in letters(services))
    with services.read() as tx:
        attempts: dict[str, int] = {}
        for m in list_messages(tx, domain_name=D):
            contact = json.loads(m.object_json)["ContactId"]
            attempts[contact] = attempts.get(contact, 0) + m.attempts
    assert attempts == {"deep-1": 2, "deep-2": 2}
    # One record as the whole body.
    outcome = process_body(services, nested(ctr("deep-3"), MAX_JSON_DEPTH + 1))
    assert outcome.accepted == 0 and outcome.rejected[0].contact_id == "deep-3"


def test_a_record_kept_for_its_instance_is_checked_again_when_replayed(
    services: Services,
) -> None:
    """A record too deep for an instance with no domain yet is kept, as any rejected record of
    an unassociated instance is; the replay when the instance is associated (which parses the
    kept text itself) rejects it rather than storing it."""
    make_domain(services, D)
    outcome = send(services, nested(ctr("late", instance=OTHER_INSTANCE), 300))
    assert outcome.accepted == 0
    with services.read() as tx:
        [kept] = list_unrouted(tx)
    assert kept.instance_arn == OTHER_INSTANCE
    associate(services, D, OTHER_INSTANCE)
    with services.write() as tx:
        replayed = replay_unrouted(tx, instance_arn=OTHER_INSTANCE)
    assert replayed.accepted == 0
    assert [r.contact_id for r in replayed.rejected] == ["late"]
    assert TOO_DEEP in replayed.rejected[0].message
    assert found(services, "late") == 0
    # A record parsed elsewhere (json.loads, as the replay does) is checked by itself too.
    text = nested(ctr("elsewhere"), 300)
    with pytest.raises(ContactRecordInvalid, match=TOO_DEEP) as caught:
        parse_contact_record(json.loads(text), text)
    assert caught.value.contact_id == "elsewhere"


def test_a_line_too_deep_to_parse_says_so() -> None:
    """Nesting the JSON parser itself cannot follow is said to be too deep, not a parser
    crash message; the record's ContactId cannot then be read."""
    from openprofiles.contacts.records import read_record

    raw, parsed = read_record(nested(ctr("abyss"), 200_000))
    assert isinstance(parsed, ContactRecordInvalid)
    assert TOO_DEEP in parsed.reason and parsed.contact_id is None
    raw, parsed = read_record("not json")
    assert isinstance(parsed, ContactRecordInvalid) and "not valid JSON" in parsed.reason
    raw, parsed = read_record(json.dumps(ctr("fine")))
    assert parse_contact_record(parsed, raw).contact_id == "fine"


def test_an_over_long_record_names_its_contact_id(services: Services, domain: str) -> None:
    """A record over MAX_OBJECT_CHARS was rejected with the ContactId null although it had one;
    a ContactId that could not be shown as one (too long, not text) is still null."""
    filler = {"note": "z" * (MAX_OBJECT_CHARS + 10)}
    records = [
        ctr("long-1", Attributes=filler),
        ctr("i" * 300, Attributes=filler),
        {**ctr("x", Attributes=filler), "ContactId": 12},
        ctr("short"),
    ]
    outcome = process_body(services, "\n".join(json.dumps(r) for r in records))
    assert outcome.accepted == 1
    assert [r.contact_id for r in outcome.rejected] == ["long-1", None, None]
    assert all(f"the limit is {MAX_OBJECT_CHARS}" in r.message for r in outcome.rejected)
    [(raw, parsed)] = split_records(json.dumps(records[0]))
    with pytest.raises(ContactRecordInvalid, match="characters long") as caught:
        parse_contact_record(parsed, raw)
    assert caught.value.contact_id == "long-1"


def test_a_contact_id_with_a_lone_surrogate_is_not_reported_as_another() -> None:
    """A ContactId holding a lone surrogate was reported with U+FFFD in its place: a ContactId
    no record has. It is null; a good ContactId of a record with one elsewhere is reported."""
    body = "\n".join(
        [json.dumps(ctr("bad-id-\ud800")), json.dumps(ctr("ok-id", Attributes={"n": "\udc00"}))]
    )
    rejected = []
    for raw, parsed in split_records(body):
        with pytest.raises(ContactRecordInvalid, match="lone UTF-16 surrogate") as caught:
            parse_contact_record(parsed, raw)
        rejected.append(caught.value.contact_id)
    assert rejected == [None, "ok-id"]
