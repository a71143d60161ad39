"""`ingest_batch`: records of one batch apply in order, each seeing what the records before it
did, a rejected record writes nothing and does not stop the others, and the result equals
ingesting the records one by one (spec §1.6-1.8)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, select

from openprofiles.context import Services
from openprofiles.ingest.pipeline import IngestRejected, IngestResult, ingest_batch
from openprofiles.objects.service import list_profile_objects
from openprofiles.profiles.service import create_profile, get_profile, profile_keys
from openprofiles.store.schema import profile, profile_object

from .conftest import DOMAIN, crm_type, ingest, make_domain, put_type
from .test_ingest_pipeline import asset_type


def run(services: Services, type_name: str, objs: list[dict[str, Any]]) -> list[Any]:
    with services.write() as tx:
        return ingest_batch(
            tx,
            domain_name=DOMAIN,
            object_type_name=type_name,
            records=[(o, json.dumps(o)) for o in objs],
        )


def count(services: Services, table: Any) -> int:
    with services.read() as tx:
        return int(tx.conn.execute(select(func.count()).select_from(table)).scalar() or 0)


def test_later_records_find_profiles_and_keys_of_earlier_ones(
    services: Services, domain: str
) -> None:
    put_type(services, "Crm", crm_type())
    first, second, third = run(
        services,
        "Crm",
        [
            {"id": "c1", "email": "ann@example.com", "first": "Ann"},
            # Found by the _email key the first record indexed (the new profile's derived key).
            {"id": "c2", "email": "ANN@example.com", "last": "Lee", "tier": "Gold"},
            # Found by the crmId key the first record stored.
            {"id": "c1", "email": "", "city": "Oslo", "first": "Anna"},
        ],
    )
    assert isinstance(first, IngestResult) and first.created_profile
    assert isinstance(second, IngestResult) and isinstance(third, IngestResult)
    assert second.profile_id == third.profile_id == first.profile_id
    assert not second.created_profile and not third.created_profile
    assert count(services, profile) == 1
    # c1 twice: the second replaced the first wholesale.
    assert count(services, profile_object) == 2
    with services.read() as tx:
        record = get_profile(tx, domain_name=DOMAIN, profile_id=first.profile_id)
        keys = profile_keys(tx, domain_name=DOMAIN, profile_id=first.profile_id)
        stored, _ = list_profile_objects(
            tx, domain_name=DOMAIN, object_type_name="Crm", profile_id=first.profile_id, limit=10
        )
    assert record.fields["FirstName"] == "Anna"
    assert record.fields["LastName"] == "Lee"
    assert record.fields["Address"] == {"City": "Oslo"}
    assert record.fields["Attributes"] == {"Tier": "Gold"}
    assert record.fields["EmailAddress"] == "ANN@example.com"  # the latest value wins
    assert sorted(keys["crmId"]) == ["c1", "c2"]
    assert {json.loads(o.object_json)["id"] for o in stored} == {"c1", "c2"}
    assert any(json.loads(o.object_json).get("city") == "Oslo" for o in stored)


def test_changed_field_moves_derived_key_within_the_batch(services: Services, domain: str) -> None:
    put_type(services, "Crm", crm_type())
    with services.write() as tx:
        existing = create_profile(
            tx, domain_name=DOMAIN, fields={"EmailAddress": "old@example.com"}, manual=False
        ).profile_id
    results = run(
        services,
        "Crm",
        [
            {"id": "c1", "email": "old@example.com"},
            {"id": "c1", "email": "old@example.com", "first": "Olga"},
        ],
    )
    assert [r.profile_id for r in results] == [existing, existing]
    with services.read() as tx:
        keys = profile_keys(tx, domain_name=DOMAIN, profile_id=existing)
        record = get_profile(tx, domain_name=DOMAIN, profile_id=existing)
    assert keys["_fullName"] == ["Olga"]
    assert record.version == 3  # a version per record that changed it, as one by one


def test_rejected_record_in_the_middle_writes_nothing_and_others_apply(
    services: Services, domain: str
) -> None:
    put_type(services, "Crm", crm_type(AllowProfileCreation=False))
    with services.write() as tx:
        known = create_profile(
            tx, domain_name=DOMAIN, fields={"EmailAddress": "known@example.com"}
        ).profile_id
    ok1, rejected, missing, ok2 = run(
        services,
        "Crm",
        [
            {"id": "a", "email": "known@example.com", "first": "Kim"},
            {"id": "b", "email": "stranger@example.com", "first": "Sam"},
            {"email": "known@example.com"},
            {"id": "c", "email": "known@example.com", "tier": "Gold"},
        ],
    )
    assert isinstance(rejected, IngestRejected) and rejected.category == "no_profile"
    assert isinstance(missing, IngestRejected) and missing.category == "missing_key"
    assert isinstance(ok1, IngestResult) and isinstance(ok2, IngestResult)
    assert ok1.profile_id == ok2.profile_id == known
    assert count(services, profile) == 1
    assert count(services, profile_object) == 2
    with services.read() as tx:
        record = get_profile(tx, domain_name=DOMAIN, profile_id=known)
    # A manual field is kept (no SourcePriority); the others accumulate.
    assert record.fields["FirstName"] == "Kim"
    assert record.fields["Attributes"] == {"Tier": "Gold"}


def test_standard_object_record_sees_earlier_records_of_the_batch(
    services: Services, domain: str
) -> None:
    put_type(services, "Registrations", asset_type())
    first, ambiguous, second = run(
        services,
        "Registrations",
        [
            {"serial": "SN1", "email": "a@x.com", "name": "Kettle"},
            {"serial": "", "email": "a@x.com", "name": "Nothing"},
            {"serial": "SN2", "email": "a@x.com", "name": "Toaster"},
        ],
    )
    assert isinstance(first, IngestResult) and isinstance(second, IngestResult)
    assert isinstance(ambiguous, IngestRejected)
    assert first.profile_id == second.profile_id and first.created_profile
    with services.read() as tx:
        assets, _ = list_profile_objects(
            tx, domain_name=DOMAIN, object_type_name="_asset", profile_id=first.profile_id, limit=9
        )
    assert sorted(json.loads(a.object_json)["AssetName"] for a in assets) == ["Kettle", "Toaster"]


def test_batch_equals_one_by_one(services: Services, domain: str) -> None:
    """Overlapping keys (a record joining two customers' keys makes later lookups ambiguous):
    the batch resolves exactly as sequential ingestion in another domain does."""
    make_domain(services, "Sequential")
    put_type(services, "Crm", crm_type())
    put_type(services, "Crm", crm_type(), domain="Sequential")
    objs = [
        {"id": f"c{i % 7}", "email": f"p{i % 3}@example.com", "first": f"N{i}", "tier": str(i)}
        for i in range(30)
    ]
    batch = run(services, "Crm", objs)
    one_by_one = [ingest(services, "Crm", o, domain="Sequential") for o in objs]

    def shape(results: list[Any], domain_name: str) -> list[Any]:
        ids: dict[str, int] = {}
        with services.read() as tx:
            return [
                (
                    ids.setdefault(r.profile_id, len(ids)),
                    r.created_profile,
                    get_profile(tx, domain_name=domain_name, profile_id=r.profile_id).fields,
                    sorted(profile_keys(tx, domain_name=domain_name, profile_id=r.profile_id)),
                )
                for r in results
            ]

    assert shape(batch, DOMAIN) == shape(one_by_one, "Sequential")
