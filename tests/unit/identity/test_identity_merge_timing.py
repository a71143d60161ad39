"""When the profile-written hooks (rule matching, auto-merge) run relative to the rest of a
write (profiles.service.hooks_after), on both backends: after a batch's objects are stored, so
an auto-merge moves all of them; after a manual merge is done, so it is not merged twice."""

from __future__ import annotations

import json
from typing import Any

from openprofiles.context import Services
from openprofiles.identity import service as identity
from openprofiles.ingest.pipeline import ingest_batch
from openprofiles.object_types.service import put_object_type
from openprofiles.objects.service import list_profile_objects

from .conftest import DOMAIN, fields_of, new_profile, search
from .test_identity_matching import enable

RULES: dict[str, Any] = {
    "MatchingRules": [{"Rule": ["EmailAddress"]}],
    "MaxAllowedRuleLevelForMerging": 1,
}


# Customers found by their own account id; the email only fills the profile, so two accounts
# with one email are two profiles until the rules merge them.
ACCOUNTS: dict[str, Any] = {
    "Description": "accounts",
    "AllowProfileCreation": True,
    "Fields": {
        "id": {"Source": "_source.id"},
        "account": {"Source": "_source.account"},
        "email": {"Source": "_source.email", "Target": "_profile.EmailAddress"},
    },
    "Keys": {
        "uid": [{"StandardIdentifiers": ["UNIQUE"], "FieldNames": ["id"]}],
        "accountId": [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["account"]}],
    },
}


def objects_on(services: Services, profile_id: str) -> list[str]:
    with services.read() as tx:
        items, _ = list_profile_objects(
            tx, domain_name=DOMAIN, object_type_name="Accounts", profile_id=profile_id, limit=100
        )
    return sorted(json.loads(item.object_json)["id"] for item in items)


def test_an_auto_merge_in_a_batch_moves_every_object_of_the_batch(services, domain):
    enable(services, **RULES)
    with services.write() as tx:
        put_object_type(tx, domain_name=DOMAIN, name="Accounts", params=ACCOUNTS)
    records = [
        {"id": "o1", "account": "C1", "email": "same@x.com"},
        {"id": "o2", "account": "C2", "email": "same@x.com"},
    ]
    with services.write() as tx:
        outcomes = ingest_batch(
            tx,
            domain_name=DOMAIN,
            object_type_name="Accounts",
            records=[(r, json.dumps(r)) for r in records],
        )
    assert [o.created_profile for o in outcomes] == [True, True]  # type: ignore[union-attr]
    [live] = search(services, "_email", "same@x.com")
    assert search(services, "accountId", "C1") == search(services, "accountId", "C2") == [live]
    assert objects_on(services, live) == ["o1", "o2"]


def test_a_manual_merge_is_logged_once_and_undone_whole(services, domain):
    enable(services, **RULES)
    a = new_profile(services, FirstName="Ann")
    b = new_profile(services, EmailAddress="b@x.com", FirstName="Bee")
    before_a, before_b = fields_of(services, a), fields_of(services, b)
    with services.write() as tx:
        merge = identity.merge_profiles(tx, domain_name=DOMAIN, main_profile_id=a, profile_ids=[b])
    with services.read() as tx:
        merges = identity.list_merges(tx, domain_name=DOMAIN)
    assert [m.merge_id for m in merges] == [merge.merge_id]

    with services.write() as tx:
        identity.undo_merge(tx, domain_name=DOMAIN, merge_id=merge.merge_id)

    assert fields_of(services, a) == before_a
    assert fields_of(services, b) == before_b
    assert search(services, "_email", "b@x.com") == [b]
