"""`dlq retry` of a letter whose object was written again since: a file fixed and loaded again
put a newer version of the record there, which the retry must not put the old one back over."""

from __future__ import annotations

import json

from tests.unit.ingest.conftest import DOMAIN, crm_type, ingest, make_domain, put_type

from openprofiles.context import Services
from openprofiles.dlq import service
from openprofiles.dlq.sinks import dead_letter
from openprofiles.objects.service import list_profile_objects
from openprofiles.profiles.service import SearchCriterion, search_profiles


def _letter(services: Services, record: dict[str, str]) -> str:
    return dead_letter(
        services,
        domain_name=DOMAIN,
        object_type_name="Crm",
        object_json=json.dumps(record),
        reason="No profile matched.",
        category="no_profile",
    ).message_id


def _emails(services: Services, email: str) -> int:
    with services.read() as tx:
        page, _ = search_profiles(
            tx, domain_name=DOMAIN, criteria=[SearchCriterion("_email", (email,))]
        )
    return len(page)


def test_a_letter_older_than_its_object_is_removed_as_superseded(services: Services) -> None:
    make_domain(services)
    put_type(services, "Crm", crm_type())
    old = _letter(services, {"id": "c1", "first": "OldName", "email": "old@example.com"})
    # The fixed file loaded again: the same record (UNIQUE id c1), newer.
    ingest(services, "Crm", {"id": "c1", "first": "NewName", "email": "new@example.com"})
    outcome = service.retry_in_batches(services, domain_name=DOMAIN)
    assert outcome.succeeded == [old]
    assert outcome.superseded == [old]
    assert outcome.failed == []
    with services.read() as tx:
        assert service.list_messages(tx, domain_name=DOMAIN) == []
    # Nothing of the old record was applied: not its key, not its name.
    assert _emails(services, "old@example.com") == 0
    assert _emails(services, "new@example.com") == 1


def test_a_letter_newer_than_its_object_is_still_applied(services: Services) -> None:
    make_domain(services)
    put_type(services, "Crm", crm_type())
    ingest(services, "Crm", {"id": "c2", "first": "First", "email": "first@example.com"})
    newer = _letter(services, {"id": "c2", "first": "Second", "email": "second@example.com"})
    outcome = service.retry_in_batches(services, domain_name=DOMAIN)
    assert outcome.succeeded == [newer]
    assert outcome.superseded == []
    assert _emails(services, "second@example.com") == 1


def test_two_letters_of_one_object_apply_oldest_first(services: Services) -> None:
    """Neither is superseded by what the retry itself writes: the older letter's object, just
    applied, does not make the newer letter look stale."""
    make_domain(services)
    put_type(services, "Crm", crm_type())
    older = _letter(services, {"id": "c3", "first": "Older", "email": "older@example.com"})
    newer = _letter(services, {"id": "c3", "first": "Newer", "email": "newer@example.com"})
    outcome = service.retry_in_batches(services, domain_name=DOMAIN)
    assert outcome.succeeded == [older, newer]
    assert outcome.superseded == []
    with services.read() as tx:
        ((profile, _),), _ = search_profiles(
            tx, domain_name=DOMAIN, criteria=[SearchCriterion("_email", ("newer@example.com",))]
        )
        (stored,), _ = list_profile_objects(
            tx, domain_name=DOMAIN, object_type_name="Crm", profile_id=profile.profile_id, limit=10
        )
    assert json.loads(stored.object_json)["first"] == "Newer"
