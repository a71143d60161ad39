"""The local dead-letter store: put, list, get, retry (after fixing the object type), purge."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import update
from tests.unit.ingest.conftest import DOMAIN, crm_type, ingest, make_domain, put_type

from openprofiles.context import Services
from openprofiles.dlq import service
from openprofiles.dlq.sinks import dead_letter
from openprofiles.errors import NotFound
from openprofiles.ingest.pipeline import IngestRejected
from openprofiles.objects.expiry import purge_once
from openprofiles.profiles.service import SearchCriterion, search_profiles
from openprofiles.store.schema import dlq_message


@pytest.fixture
def domain(services: Services) -> str:
    return make_domain(services)


def reject(services: Services, obj: dict[str, object], type_name: str = "Crm") -> str:
    with pytest.raises(IngestRejected) as exc:
        ingest(services, type_name, obj)
    letter = dead_letter(
        services,
        domain_name=DOMAIN,
        object_type_name=type_name,
        object_json=json.dumps(obj),
        reason=exc.value.reason,
        category=exc.value.category,
    )
    return letter.message_id


def test_put_list_get_purge(services: Services, domain: str) -> None:
    put_type(services, "Crm", crm_type(AllowProfileCreation=False))
    first = reject(services, {"id": "1", "email": "a@x.com"})
    second = reject(services, {"id": "2", "email": "b@x.com"})
    with services.read() as tx:
        letters = service.list_messages(tx, domain_name=DOMAIN)
        assert [x.message_id for x in letters] == [first, second]
        got = service.get(tx, domain_name=DOMAIN, message_id=first)
    assert json.loads(got.object_json) == {"id": "1", "email": "a@x.com"}
    assert got.category == "no_profile"
    # Dead-lettered while the domain has no queue: kept here only, marked so.
    assert got.attempts == 1 and got.sink_error == service.NO_QUEUE
    with services.write() as tx:
        assert service.purge(tx, domain_name=DOMAIN, message_ids=[first]) == 1
    with services.read() as tx:
        assert [x.message_id for x in service.list_messages(tx, domain_name=DOMAIN)] == [second]
        with pytest.raises(NotFound):
            service.get(tx, domain_name=DOMAIN, message_id=first)
    with services.write() as tx:
        assert service.purge(tx, domain_name=DOMAIN) == 1
        assert service.count(tx, domain_name=DOMAIN) == 0


def test_retry_after_fixing_the_object_type(services: Services, domain: str) -> None:
    put_type(services, "Crm", crm_type(AllowProfileCreation=False))
    message_id = reject(services, {"id": "1", "email": "a@x.com", "first": "Ada"})
    with services.write() as tx:
        outcome = service.retry(tx, domain_name=DOMAIN)
    assert outcome.succeeded == [] and outcome.failed == [message_id]
    with services.read() as tx:
        assert service.get(tx, domain_name=DOMAIN, message_id=message_id).attempts == 2
    put_type(services, "Crm", crm_type(AllowProfileCreation=True))
    with services.write() as tx:
        outcome = service.retry(tx, domain_name=DOMAIN, message_ids=[message_id])
    assert outcome.succeeded == [message_id] and outcome.failed == []
    with services.read() as tx:
        assert service.count(tx, domain_name=DOMAIN) == 0
        found, _ = search_profiles(
            tx, domain_name=DOMAIN, criteria=[SearchCriterion("_email", ("a@x.com",))]
        )
    assert [record.fields["FirstName"] for record, _ in found] == ["Ada"]


def test_retry_keeps_records_whose_type_is_gone(services: Services, domain: str) -> None:
    from openprofiles.object_types.service import delete_object_type

    put_type(services, "Crm", crm_type(AllowProfileCreation=False))
    message_id = reject(services, {"id": "1", "email": "a@x.com"})
    with services.write() as tx:
        delete_object_type(tx, domain_name=DOMAIN, name="Crm")
    with services.write() as tx:
        outcome = service.retry(tx, domain_name=DOMAIN)
    assert outcome.failed == [message_id]
    with services.read() as tx:
        letter = service.get(tx, domain_name=DOMAIN, message_id=message_id)
    assert "does not exist" in letter.reason


@pytest.mark.parametrize(
    ("stored", "why"),
    [("[1, 2, 3]", "must be a JSON object"), ('{"id": NaN}', "NaN")],
)
def test_retry_reads_a_letter_as_strictly_as_a_load(
    services: Services, domain: str, stored: str, why: str
) -> None:
    """A letter that is JSON but no object (a flow's line) was retried as {} and got a
    misleading 'Missing unique key'; one with NaN was read leniently."""
    put_type(services, "Crm", crm_type())
    letter = dead_letter(
        services,
        domain_name=DOMAIN,
        object_type_name="Crm",
        object_json=stored,
        reason="Flow crm: the record is not a JSON object.",
        category="invalid_value",
    )
    with services.write() as tx:
        outcome = service.retry(tx, domain_name=DOMAIN)
    assert outcome.failed == [letter.message_id]
    with services.read() as tx:
        kept = service.get(tx, domain_name=DOMAIN, message_id=letter.message_id)
    assert why in kept.reason and "unique key" not in kept.reason


def test_a_rule_matching_notice_is_not_retried(services: Services, domain: str) -> None:
    """The low-cardinality guard's notice (spec §5.1) is a dead letter with no record: a retry
    tried to ingest its {} as an object type RuleBasedMatching, and replaced the notice with why
    that failed (the type does not exist) under another category."""
    from openprofiles.domains.service import update_domain
    from openprofiles.identity import matching
    from openprofiles.profiles.service import create_profile

    rules = {
        "Enabled": True,
        "MatchingRules": [{"Rule": ["LastName"]}],
        "AttributeTypesSelector": {"AttributeMatchingModel": "ONE_TO_ONE"},
    }
    with services.write() as tx:
        for _ in range(matching.GUARD_LIMIT + 1):
            create_profile(tx, domain_name=DOMAIN, fields={"LastName": "Smith"})
        update_domain(tx, domain_name=DOMAIN, changes={"RuleBasedMatching": rules})
        matching.rebuild(tx, domain_name=DOMAIN)
    with services.read() as tx:
        [notice] = service.list_messages(tx, domain_name=DOMAIN)
    assert notice.reason == matching.GUARD_MESSAGE.format(level=1)

    with services.write() as tx:
        outcome = service.retry(tx, domain_name=DOMAIN)

    assert outcome.failed == [notice.message_id] and list(outcome.not_retried) == outcome.failed
    assert "notice" in outcome.not_retried[notice.message_id]
    with services.read() as tx:
        [kept] = service.list_messages(tx, domain_name=DOMAIN)
    assert (kept.reason, kept.category, kept.attempts) == (
        notice.reason,
        matching.GUARD_CATEGORY,
        1,
    )


def test_why_a_send_failed_is_stored_sealed_and_read_whole(services: Services, domain: str) -> None:
    """A queue's refusal may quote what was sent (the reason, and a value in it): the stored
    sink error is only the fixed mark, the text is sealed beside it; reading the letter gives
    the whole text back, and a resend still finds and takes the record."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import select

    from openprofiles.store.schema import dlq_message

    refusal = "SQS refused the message: Value jane.roe@example.org for Message is invalid"
    omitted = "the queue refused the message with it (Value jane.roe@example.org is too long)"
    with services.write() as tx:
        failed, sent = (
            service.put(
                tx,
                domain_name=DOMAIN,
                object_type_name="Crm",
                object_json="{}",
                reason="r",
                category="no_profile",
                sink_error=service.SQS_PENDING,
            ).message_id
            for _ in range(2)
        )
        service.settle_sends(
            tx,
            domain_name=DOMAIN,
            sent=[sent],
            failed={refusal: [failed]},
            without_object={sent: omitted},
        )
    with services.read() as tx:
        rows = {
            r.message_id: r
            for r in tx.conn.execute(
                select(
                    dlq_message.c.message_id, dlq_message.c.sink_error, dlq_message.c.sink_sealed
                )
            )
        }
        letters = {x.message_id: x for x in service.list_messages(tx, domain_name=DOMAIN)}
    assert rows[failed].sink_error == service.SQS_FAILED
    assert rows[sent].sink_error == service.SENT_WITHOUT_OBJECT
    for row in rows.values():
        assert b"jane.roe" not in bytes(row.sink_sealed)
    assert letters[failed].sink_error == refusal
    assert letters[sent].sink_error == service.SENT_WITHOUT_OBJECT + omitted
    assert service.delivery_status(letters[failed]) == f"Not sent: {refusal}"

    later = datetime.now(UTC) + timedelta(hours=1)
    with services.write() as tx:
        scan = service.due_sends(
            tx,
            domain_name=DOMAIN,
            pending_before=later,
            resending_before=later,
            after=None,
            limit=10,
        )
        assert scan.due == {failed: service.SQS_FAILED}
        mark = service.resend_mark(later)
        (taken,) = service.claim_sends(tx, domain_name=DOMAIN, marks=scan.due, claim=mark)
    assert (taken.message_id, taken.sink_error) == (failed, mark)


def test_dead_letters_are_purged_after_their_domains_retention(
    services: Services, domain: str
) -> None:
    """A dead letter holds a whole record; it was kept for ever, past the retention the domain
    sets for everything else it holds (DefaultExpirationDays, 30 here)."""
    put_type(services, "Crm", crm_type(AllowProfileCreation=False))
    old = reject(services, {"id": "1", "email": "a@x.com"})
    recent = reject(services, {"id": "2", "email": "b@x.com"})
    with services.write() as tx:
        tx.conn.execute(
            update(dlq_message)
            .where(dlq_message.c.message_id == old)
            .values(created_at=tx.now - timedelta(days=30, seconds=1))
        )
        tx.conn.execute(
            update(dlq_message)
            .where(dlq_message.c.message_id == recent)
            .values(created_at=tx.now - timedelta(days=29))
        )
    assert purge_once(services) == 1
    with services.read() as tx:
        assert [x.message_id for x in service.list_messages(tx, domain_name=DOMAIN)] == [recent]
    assert purge_once(services) == 0
