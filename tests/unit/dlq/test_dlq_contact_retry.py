"""Retrying dead-lettered contact records (spec §3.1: dedupe by ContactId + LastUpdateTimestamp):
a retry goes through the contact-record intake, so it never puts an older or invalid record
over the version of its contact already applied — on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient
from tests.unit.integrations.integ_helpers import associate, ctr, make_domain, send
from tests.unit.ui.test_ui_admin_ops import csrf_of

from openprofiles.app import create_app
from openprofiles.context import Services
from openprofiles.dlq import service
from openprofiles.dlq.models import DeadLetter, RetryOutcome
from openprofiles.ingest.pipeline import IngestRejected
from openprofiles.object_types.service import delete_object_type, put_object_type
from openprofiles.objects.service import list_profile_objects
from openprofiles.profiles.service import SearchCriterion, search_profiles
from openprofiles.settings import Settings
from openprofiles.users import service as users

D = "retry"
TYPE = "Contacts"
OLD = "2024-03-01T10:05:00Z"
NEW = "2024-03-01T11:05:00Z"


@pytest.fixture
def domain(services: Services) -> str:
    make_domain(services, D)
    put_contacts_type(services)
    associate(services, D, object_type_name=TYPE)
    return D


def put_contacts_type(services: Services) -> None:
    with services.write() as tx:
        put_object_type(
            tx, domain_name=D, name=TYPE, params={"Description": "calls", "TemplateId": "CTR"}
        )


def drop_contacts_type(services: Services) -> None:
    with services.write() as tx:
        delete_object_type(tx, domain_name=D, name=TYPE)


def versions(services: Services, contact_id: str) -> list[tuple[str, str]]:
    """(LastUpdateTimestamp, Attributes.v) of every stored record of the contact."""
    with services.read() as tx:
        found, _ = search_profiles(
            tx, domain_name=D, criteria=[SearchCriterion("_ctrContactId", (contact_id,))]
        )
        out = []
        for record, _ in found:
            objects, _ = list_profile_objects(
                tx, domain_name=D, object_type_name=TYPE, profile_id=record.profile_id, limit=10
            )
            for obj in objects:
                body = json.loads(obj.object_json)
                out.append((body["LastUpdateTimestamp"], body["Attributes"]["v"]))
    return out


def letters(services: Services) -> list[DeadLetter]:
    with services.read() as tx:
        return service.list_messages(tx, domain_name=D)


def retry(services: Services) -> RetryOutcome:
    with services.write() as tx:
        return service.retry(tx, domain_name=D)


def test_an_older_version_is_removed_as_superseded(services: Services, domain: str) -> None:
    drop_contacts_type(services)
    assert send(services, ctr("B", last_update=OLD, Attributes={"v": "1"})).rejected
    [letter] = letters(services)
    put_contacts_type(services)
    assert send(services, ctr("B", last_update=NEW, Attributes={"v": "2"})).accepted == 1

    outcome = retry(services)

    assert outcome.superseded == [letter.message_id] == outcome.succeeded
    assert outcome.failed == []
    assert versions(services, "B") == [(NEW, "2")]
    assert letters(services) == []


def test_an_invalid_record_stays_dead_lettered_with_its_reason(
    services: Services, domain: str
) -> None:
    bad = ctr("A", last_update=OLD, Attributes={"v": "1"}, Channel="FAX")
    assert send(services, bad).rejected
    good = ctr("A", address="+12065550301", last_update=NEW, Attributes={"v": "2"})
    assert send(services, good).accepted == 1

    outcome = retry(services)

    [letter] = letters(services)
    assert outcome.failed == [letter.message_id] and outcome.succeeded == []
    assert letter.attempts == 2 and letter.category == "invalid_value"
    assert 'Channel "FAX" is not one of' in letter.reason
    assert versions(services, "A") == [(NEW, "2")]
    # The newer version is still the one applied: delivering it again changes nothing.
    assert send(services, good).unchanged == 1
    assert versions(services, "A") == [(NEW, "2")]


def test_a_newer_version_is_applied_and_counts_as_applied(services: Services, domain: str) -> None:
    assert send(services, ctr("C", last_update=OLD, Attributes={"v": "1"})).accepted == 1
    drop_contacts_type(services)
    assert send(services, ctr("C", last_update=NEW, Attributes={"v": "2"})).rejected
    [letter] = letters(services)
    put_contacts_type(services)
    assert send(services, ctr("C", last_update=OLD, Attributes={"v": "1"})).accepted == 1

    outcome = retry(services)

    assert outcome.succeeded == [letter.message_id] and outcome.superseded == []
    assert versions(services, "C") == [(NEW, "2")]
    # The retried version is remembered as applied: the old one delivered again is a repeat.
    assert send(services, ctr("C", last_update=OLD, Attributes={"v": "1"})).unchanged == 1
    assert versions(services, "C") == [(NEW, "2")]


def test_versions_retried_together_end_on_the_newest(services: Services, domain: str) -> None:
    drop_contacts_type(services)
    send(services, ctr("E", last_update=NEW, Attributes={"v": "2"}))
    send(services, ctr("E", last_update=OLD, Attributes={"v": "1"}))
    put_contacts_type(services)
    newer, older = letters(services)

    outcome = retry(services)

    assert outcome.succeeded == [newer.message_id, older.message_id]
    assert outcome.superseded == [older.message_id]
    assert versions(services, "E") == [(NEW, "2")]


def test_a_contact_record_whose_type_is_still_gone_stays(services: Services, domain: str) -> None:
    drop_contacts_type(services)
    send(services, ctr("F", last_update=OLD, Attributes={"v": "1"}))

    outcome = retry(services)

    [letter] = letters(services)
    assert outcome.failed == [letter.message_id]
    # The integration is disabled until the type is defined again, and the reason says so.
    assert "object type Contacts was deleted" in letter.reason and letter.attempts == 2


def test_a_record_without_contact_id_stays_dead_lettered(services: Services, domain: str) -> None:
    from tests.unit.integrations.integ_helpers import INSTANCE

    assert send(services, {"Attributes": {"v": "1"}, "InstanceARN": INSTANCE}).rejected

    outcome = retry(services)

    [letter] = letters(services)
    assert outcome.failed == [letter.message_id]
    assert "no ContactId" in letter.reason and letter.attempts == 2


def test_other_objects_of_a_contact_type_keep_the_plain_pipeline(
    services: Services, domain: str
) -> None:
    """An object put with PutProfileObject as CTR, not shaped as a contact record, is retried
    as such (the contact intake would refuse it for lacking an InstanceARN)."""
    from openprofiles.dlq.sinks import dead_letter

    letter = dead_letter(
        services,
        domain_name=D,
        object_type_name=TYPE,
        object_json=json.dumps({"ContactId": "G", "Attributes": {"v": "1"}}),
        reason="no profile matched",
        category="no_profile",
    )

    outcome = retry(services)

    assert outcome.succeeded == [letter.message_id] and outcome.superseded == []


def test_the_admin_page_says_how_many_were_superseded(
    settings: Settings, services: Services, domain: str
) -> None:
    drop_contacts_type(services)
    assert send(services, ctr("B", last_update=OLD, Attributes={"v": "1"})).rejected
    put_contacts_type(services)
    assert send(services, ctr("B", last_update=NEW, Attributes={"v": "2"})).accepted == 1
    with TestClient(create_app(settings), follow_redirects=False) as client:
        app_services = client.app.state.services  # type: ignore[attr-defined]
        with app_services.write() as tx:
            users.create_user(tx, username="admin1", password="long enough password", role="admin")
        page = client.get("/ui/sign-in")
        client.post(
            "/ui/sign-in",
            data={
                "username": "admin1",
                "password": "long enough password",
                "csrf_token": csrf_of(page.text),
            },
        )
        token = csrf_of(client.get(f"/admin/domains/{D}/dlq").text)
        done = client.post(f"/admin/domains/{D}/dlq/retry", data={"csrf_token": token})
        shown = client.get(done.headers["location"]).text
        app_services.database.dispose()
    assert "Retried: 0 applied, 0 still failing, 1 removed as superseded" in shown
    assert letters(services) == []


def test_a_retry_while_the_object_type_is_still_missing_keeps_the_letter(
    services: Services, domain: str
) -> None:
    drop_contacts_type(services)
    assert send(services, ctr("C", last_update=OLD, Attributes={"v": "1"})).rejected
    [letter] = letters(services)

    outcome = retry(services)

    assert outcome.failed == [letter.message_id] and outcome.succeeded == []
    [kept] = letters(services)
    assert kept.attempts == letter.attempts + 1 and TYPE in kept.reason


def test_a_contact_letter_that_is_not_strict_json_stays_with_the_reason(
    services: Services, domain: str
) -> None:
    """Retried contact records are read as strictly as every other JSON from outside."""
    record = json.dumps(ctr("N", last_update=OLD, Attributes={"v": "1"}))
    with_nan = record[:-1] + ', "Score": NaN}'
    with services.write() as tx:
        letter = service.put(
            tx,
            domain_name=D,
            object_type_name=TYPE,
            object_json=with_nan,
            reason="stored before",
            category="invalid_value",
        )

    outcome = retry(services)

    assert outcome.failed == [letter.message_id]
    [kept] = letters(services)
    assert "NaN is not a JSON value" in kept.reason
    assert versions(services, "N") == []


def test_a_contact_letter_nested_too_deep_for_python_stays_with_the_reason(
    services: Services, domain: str
) -> None:
    """A file loaded as the contact type dead-letters a record nested too deep as it came. The
    retry read each contact-type letter twice, the first time with Python's json, whose
    RecursionError stopped the whole retry; read once, strictly, the letter keeps its reason."""
    from openprofiles.ingest.bulk import ingest_records

    depth = 100_000
    record = json.dumps(ctr("Z", last_update=OLD))[:-1] + ', "Deep": ' + "[" * depth + "]" * depth
    summary = ingest_records(services, domain_name=D, object_type_name=TYPE, records=[record + "}"])
    assert summary.dead_lettered == 1
    [letter] = letters(services)

    outcome = retry(services)

    assert outcome.failed == [letter.message_id]
    [kept] = letters(services)
    assert (kept.reason, kept.category, kept.attempts) == (letter.reason, "invalid_value", 2)
    assert "nested" in kept.reason
    assert versions(services, "Z") == []


def test_a_contact_record_is_retried_as_parsed_by_the_caller(
    services: Services, domain: str
) -> None:
    """`retry_contact_record` takes the record the retry parsed (once) with its text."""
    from openprofiles.contacts.service import retry_contact_record

    parsed = ctr("P", last_update=NEW, Attributes={"v": "2"})
    with services.write() as tx:
        done = retry_contact_record(
            tx, domain_name=D, object_type_name=TYPE, parsed=parsed, raw=json.dumps(parsed)
        )
    assert not isinstance(done, IngestRejected) and done.changed
    assert versions(services, "P") == [(NEW, "2")]
