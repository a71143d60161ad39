"""The ingestion pipeline's rules (spec §1.6–1.9), one by one, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from openprofiles.context import Services, Tx
from openprofiles.ingest.pipeline import IngestRejected, ingest_object
from openprofiles.object_types.service import delete_object_type
from openprofiles.objects.service import find_object, list_profile_objects, purge_expired
from openprofiles.profiles.service import create_profile, get_profile, profile_keys
from openprofiles.store.schema import profile, profile_key, profile_object

from .conftest import DOMAIN, crm_type, ingest, put_type, ticket_type


def fields_of(services: Services, profile_id: str) -> dict[str, Any]:
    with services.read() as tx:
        return get_profile(tx, domain_name=DOMAIN, profile_id=profile_id).fields


def keys_of(services: Services, profile_id: str) -> dict[str, list[str]]:
    with services.read() as tx:
        return profile_keys(tx, domain_name=DOMAIN, profile_id=profile_id)


def key_origins(services: Services, profile_id: str) -> set[tuple[str, str]]:
    with services.read() as tx:
        rows = tx.conn.execute(
            select(profile_key.c.key_name, profile_key.c.origin).where(
                profile_key.c.domain_name == DOMAIN, profile_key.c.profile_id == profile_id
            )
        )
        return {(r.key_name, r.origin) for r in rows}


def objects_of(services: Services, type_name: str, profile_id: str) -> list[dict[str, Any]]:
    with services.read() as tx:
        records, _ = list_profile_objects(
            tx, domain_name=DOMAIN, object_type_name=type_name, profile_id=profile_id, limit=100
        )
    return [json.loads(r.object_json) for r in records]


def new_profile(services: Services, **fields: Any) -> str:
    with services.write() as tx:
        return create_profile(tx, domain_name=DOMAIN, fields=fields).profile_id


def profile_count(services: Services) -> int:
    with services.read() as tx:
        return len(list(tx.conn.execute(select(profile.c.profile_id))))


def calls_type(**overrides: Any) -> dict[str, Any]:
    """Calls: account number is the primary PROFILE key, _phone a SECONDARY one."""
    definition: dict[str, Any] = {
        "AllowProfileCreation": True,
        "Fields": {
            "callId": {"Source": "_source.callId"},
            "acct": {"Source": "_source.acct"},
            "phone": {"Source": "_source.phone", "ContentType": "PHONE_NUMBER"},
        },
        "Keys": {
            "callId": [{"StandardIdentifiers": ["UNIQUE"], "FieldNames": ["callId"]}],
            "_account": [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["acct"]}],
            "_phone": [{"StandardIdentifiers": ["PROFILE", "SECONDARY"], "FieldNames": ["phone"]}],
        },
    }
    definition.update(overrides)
    return definition


# ---------------------------------------------------------------------------- resolution


def test_primary_profile_key_wins_over_secondary(services: Services, domain: str) -> None:
    by_phone = new_profile(services, PhoneNumber="+12065550100")
    by_account = new_profile(services, AccountNumber="A-1")
    put_type(services, "Calls", calls_type())
    result = ingest(services, "Calls", {"callId": "c1", "acct": "A-1", "phone": "2065550100"})
    assert result.profile_id == by_account
    assert not result.created_profile
    assert by_phone != by_account


def test_secondary_key_used_when_no_primary_matches(services: Services, domain: str) -> None:
    by_phone = new_profile(services, PhoneNumber="+12065550100")
    put_type(services, "Calls", calls_type())
    result = ingest(
        services, "Calls", {"callId": "c1", "acct": "unknown", "phone": "(206) 555-0100"}
    )
    assert result.profile_id == by_phone
    assert not result.created_profile


def test_ambiguous_key_is_skipped(services: Services, domain: str) -> None:
    new_profile(services, PhoneNumber="+12065550100")
    new_profile(services, PhoneNumber="+12065550100")
    by_account = new_profile(services, AccountNumber="A-1")
    put_type(services, "Calls", calls_type())
    # _phone matches two profiles: skipped, nothing else matches -> a new inferred profile.
    first = ingest(services, "Calls", {"callId": "c1", "phone": "2065550100", "acct": "zz"})
    assert first.created_profile
    assert first.profile_id != by_account
    assert profile_count(services) == 4


def test_ambiguous_primary_falls_through_to_secondary(services: Services, domain: str) -> None:
    new_profile(services, AccountNumber="A-1")
    new_profile(services, AccountNumber="A-1")
    by_phone = new_profile(services, PhoneNumber="+12065550100")
    put_type(services, "Calls", calls_type())
    result = ingest(services, "Calls", {"callId": "c1", "acct": "A-1", "phone": "2065550100"})
    assert result.profile_id == by_phone


def test_no_match_without_profile_creation_is_rejected(services: Services, domain: str) -> None:
    put_type(services, "Calls", calls_type(AllowProfileCreation=False))
    with pytest.raises(IngestRejected) as exc:
        ingest(services, "Calls", {"callId": "c1", "acct": "A-1"})
    assert exc.value.category == "no_profile"
    assert "AllowProfileCreation" in exc.value.reason
    assert profile_count(services) == 0
    with services.read() as tx:
        assert tx.conn.execute(select(profile_object)).first() is None


def test_missing_unique_key_is_rejected(services: Services, domain: str) -> None:
    put_type(services, "Crm", crm_type())
    with pytest.raises(IngestRejected) as exc:
        ingest(services, "Crm", {"email": "ada@example.com"})
    assert exc.value.category == "missing_key"


def test_missing_profile_keys_are_rejected(services: Services, domain: str) -> None:
    put_type(services, "Calls", calls_type())
    with pytest.raises(IngestRejected) as exc:
        ingest(services, "Calls", {"callId": "c1"})
    assert exc.value.category == "missing_key"
    assert "PROFILE" in exc.value.reason


def test_unconvertible_value_is_rejected(services: Services, domain: str) -> None:
    definition = crm_type()
    definition["Fields"]["points"] = {"Source": "_source.points", "ContentType": "NUMBER"}
    put_type(services, "Crm", definition)
    with pytest.raises(IngestRejected) as exc:
        ingest(services, "Crm", {"id": "1", "points": "lots"})
    assert exc.value.category == "invalid_value"
    assert profile_count(services) == 0


# ---------------------------------------------------------------------------- inferred profiles


def test_inferred_profile_takes_first_email_and_phone_at_creation(
    services: Services, domain: str
) -> None:
    definition = ticket_type()
    definition["Fields"]["phone"] = {"Source": "_source.phone", "ContentType": "PHONE_NUMBER"}
    put_type(services, "Tickets", definition)
    first = ingest(
        services,
        "Tickets",
        {"email": "Ann@Example.com", "timestamp": "t1", "phone": "+1 206 555 0100"},
    )
    assert first.created_profile
    assert fields_of(services, first.profile_id) == {
        "EmailAddress": "Ann@Example.com",
        "PhoneNumber": "+1 206 555 0100",
    }
    # Only at creation: a later object with another phone does not change the profile.
    later = ingest(
        services, "Tickets", {"email": "ann@example.com", "timestamp": "t2", "phone": "5550199"}
    )
    assert later.profile_id == first.profile_id
    assert fields_of(services, first.profile_id)["PhoneNumber"] == "+1 206 555 0100"


# ---------------------------------------------------------------------------- key persistence


def test_new_only_stored_on_created_profile_lookup_only_never(
    services: Services, domain: str
) -> None:
    put_type(services, "Tickets", ticket_type())
    created = ingest(services, "Tickets", {"email": "ann@example.com", "timestamp": "t1"})
    origins = key_origins(services, created.profile_id)
    assert ("ticketEmail", "Tickets") in origins  # NEW_ONLY + created
    assert ("uniqueTicket", "Tickets") in origins  # plain key
    assert ("_email", "Tickets") not in origins  # LOOKUP_ONLY: never stored by the type


def test_new_only_not_stored_when_profile_existed(services: Services, domain: str) -> None:
    existing = new_profile(services, EmailAddress="bob@example.com")
    put_type(services, "Tickets", ticket_type())
    result = ingest(services, "Tickets", {"email": "BOB@example.com", "timestamp": "t1"})
    assert result.profile_id == existing
    assert not result.created_profile
    stored = keys_of(services, existing)
    assert "ticketEmail" not in stored
    assert stored["uniqueTicket"] == ["BOB@example.com_t1"]


def test_spec_ticket_example_with_three_profiles(services: Services, domain: str) -> None:
    """Spec §1.6: _email ambiguous, ticketEmail finds nothing -> new inferred profile that the
    next tickets from that email go to."""
    for _ in range(3):
        new_profile(services, EmailAddress="john@examplecorp.com")
    put_type(services, "Tickets", ticket_type())
    first = ingest(services, "Tickets", {"email": "john@examplecorp.com", "timestamp": "t1"})
    assert first.created_profile
    second = ingest(services, "Tickets", {"email": "john@examplecorp.com", "timestamp": "t2"})
    assert second.profile_id == first.profile_id
    assert not second.created_profile
    assert len(objects_of(services, "Tickets", first.profile_id)) == 2


# ---------------------------------------------------------------------------- UNIQUE objects


def test_same_unique_value_replaces_the_object(services: Services, domain: str) -> None:
    put_type(services, "Crm", crm_type())
    first = ingest(services, "Crm", {"id": "1", "email": "a@x.com", "first": "Ada", "n": 1})
    second = ingest(services, "Crm", {"id": "1", "email": "a@x.com", "n": 2})
    assert second.profile_object_unique_key == first.profile_object_unique_key
    assert objects_of(services, "Crm", first.profile_id) == [
        {"id": "1", "email": "a@x.com", "n": 2}
    ]


def test_unique_object_moves_to_the_profile_it_now_resolves_to(
    services: Services, domain: str
) -> None:
    ada = new_profile(services, AccountNumber="A-1")
    bob = new_profile(services, AccountNumber="B-1")
    put_type(services, "Calls", calls_type())
    first = ingest(services, "Calls", {"callId": "c1", "acct": "A-1"})
    assert first.profile_id == ada
    moved = ingest(services, "Calls", {"callId": "c1", "acct": "B-1"})
    assert moved.profile_id == bob
    assert objects_of(services, "Calls", ada) == []
    assert objects_of(services, "Calls", bob) == [{"callId": "c1", "acct": "B-1"}]


# ---------------------------------------------------------------------------- standard profile


def test_fields_accumulate_and_empty_never_clears(services: Services, domain: str) -> None:
    put_type(services, "Crm", crm_type())
    first = ingest(services, "Crm", {"id": "1", "email": "a@x.com", "first": "Ada", "tier": "Gold"})
    ingest(services, "Crm", {"id": "2", "email": "a@x.com", "last": "Lovelace", "first": ""})
    ingest(services, "Crm", {"id": "3", "email": "a@x.com", "city": "London"})
    assert fields_of(services, first.profile_id) == {
        "EmailAddress": "a@x.com",
        "FirstName": "Ada",
        "LastName": "Lovelace",
        "Attributes": {"Tier": "Gold"},
        "Address": {"City": "London"},
    }


def test_manual_fields_are_protected_without_source_priority(
    services: Services, domain: str
) -> None:
    person = new_profile(services, FirstName="John", EmailAddress="john@x.com")
    put_type(services, "Crm", crm_type())
    ingest(services, "Crm", {"id": "1", "email": "john@x.com", "first": "Jim", "last": "Doe"})
    fields = fields_of(services, person)
    assert fields["FirstName"] == "John"
    assert fields["LastName"] == "Doe"
    # The ingested value is still kept on the object.
    assert objects_of(services, "Crm", person)[0]["first"] == "Jim"


def test_source_priority_overrides_manual_fields(services: Services, domain: str) -> None:
    person = new_profile(services, FirstName="John", EmailAddress="john@x.com")
    put_type(services, "Trusted", crm_type(SourcePriority=1))
    ingest(services, "Trusted", {"id": "1", "email": "john@x.com", "first": "Jonathan"})
    assert fields_of(services, person)["FirstName"] == "Jonathan"


def test_lower_priority_type_cannot_overwrite_higher(services: Services, domain: str) -> None:
    put_type(services, "Gold", crm_type(SourcePriority=1))
    put_type(services, "Silver", crm_type(SourcePriority=2))
    put_type(services, "Plain", crm_type())
    put_type(services, "GoldToo", crm_type(SourcePriority=1))
    created = ingest(services, "Gold", {"id": "g", "email": "a@x.com", "first": "Ada"})
    ingest(services, "Silver", {"id": "s", "email": "a@x.com", "first": "Silvia", "last": "S"})
    ingest(services, "Plain", {"id": "p", "email": "a@x.com", "first": "Plainer"})
    fields = fields_of(services, created.profile_id)
    assert fields["FirstName"] == "Ada"
    assert fields["LastName"] == "S"  # nobody with a better priority had set it
    ingest(services, "GoldToo", {"id": "g2", "email": "a@x.com", "first": "Adeline"})
    assert fields_of(services, created.profile_id)["FirstName"] == "Adeline"


def test_deleting_a_type_drops_its_objects_and_scrubs_its_fields(
    services: Services, domain: str
) -> None:
    put_type(services, "Crm", crm_type())
    definition = crm_type()
    definition["Fields"] = {k: v for k, v in definition["Fields"].items() if k in ("id", "email")}
    put_type(services, "Other", definition)
    created = ingest(services, "Crm", {"id": "1", "email": "a@x.com", "first": "Ada"})
    ingest(services, "Other", {"id": "9", "email": "a@x.com"})
    with services.write() as tx:
        delete_object_type(tx, domain_name=DOMAIN, name="Crm")
    # EmailAddress was last written by Other, FirstName only by Crm.
    assert fields_of(services, created.profile_id) == {"EmailAddress": "a@x.com"}
    assert objects_of(services, "Other", created.profile_id) == [{"id": "9", "email": "a@x.com"}]
    # Crm's key value is gone; the one Other indexed under the same key name stays.
    assert keys_of(services, created.profile_id)["crmId"] == ["9"]
    with services.read() as tx:
        remaining = tx.conn.execute(
            select(profile_object.c.object_type_name).where(profile_object.c.domain_name == DOMAIN)
        )
        assert [r[0] for r in remaining] == ["Other"]


# ---------------------------------------------------------------------------- standard objects


def asset_type(name_field: str = "name", **overrides: Any) -> dict[str, Any]:
    definition: dict[str, Any] = {
        "AllowProfileCreation": True,
        "Fields": {
            "serial": {"Source": "_source.serial", "Target": "_asset.SerialNumber"},
            "email": {"Source": "_source.email", "ContentType": "EMAIL_ADDRESS"},
            name_field: {"Source": f"_source.{name_field}", "Target": "_asset.AssetName"},
        },
        "Keys": {
            "serialNumber": [
                {"StandardIdentifiers": ["ASSET", "UNIQUE"], "FieldNames": ["serial"]}
            ],
            "_email": [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["email"]}],
        },
    }
    definition.update(overrides)
    return definition


def test_standard_objects_accumulate_and_are_listed(services: Services, domain: str) -> None:
    put_type(services, "Registrations", asset_type())
    status = asset_type()
    status["Fields"] = {
        "serial": {"Source": "_source.serial"},
        "email": {"Source": "_source.email", "ContentType": "EMAIL_ADDRESS"},
        "status": {"Source": "_source.status", "Target": "_asset.Status"},
    }
    status["Keys"]["statusId"] = [{"StandardIdentifiers": ["UNIQUE"], "FieldNames": ["status"]}]
    status["Keys"]["serialNumber"] = [{"StandardIdentifiers": ["ASSET"], "FieldNames": ["serial"]}]
    put_type(services, "AssetStatus", status)
    created = ingest(
        services, "Registrations", {"serial": "SN1", "email": "a@x.com", "name": "Kettle"}
    )
    ingest(services, "AssetStatus", {"serial": "SN1", "email": "a@x.com", "status": "Active"})
    assets = objects_of(services, "_asset", created.profile_id)
    assert assets == [
        {"AssetId": "SN1", "SerialNumber": "SN1", "AssetName": "Kettle", "Status": "Active"}
    ]


def test_ambiguous_standard_object_identifier_is_rejected(services: Services, domain: str) -> None:
    definition = asset_type()
    definition["Fields"]["part"] = {"Source": "_source.part"}
    definition["Keys"]["partNumber"] = [{"StandardIdentifiers": ["ASSET"], "FieldNames": ["part"]}]
    put_type(services, "Registrations", definition)
    ingest(services, "Registrations", {"serial": "SN1", "part": "P1", "email": "a@x.com"})
    ingest(services, "Registrations", {"serial": "SN2", "part": "P2", "email": "a@x.com"})
    with pytest.raises(IngestRejected) as exc:
        # SN1 finds one asset and P2 another: which asset is meant is ambiguous.
        ingest(services, "Registrations", {"serial": "SN1", "part": "P2", "email": "a@x.com"})
    assert exc.value.category == "ambiguous"


# ---------------------------------------------------------------------------- limits


def test_eviction_of_type_over_its_limit_then_self_eviction(
    services: Services, domain: str
) -> None:
    from openprofiles.object_types.service import PROFILE_OBJECT_QUOTA

    small = crm_type(MaxProfileObjectCount=2)
    put_type(services, "Small", small)
    put_type(services, "Big", crm_type())
    owner = ingest(services, "Small", {"id": "s0", "email": "a@x.com"}).profile_id
    for i in range(1, 5):
        ingest(services, "Small", {"id": f"s{i}", "email": "a@x.com"})
    ingest(services, "Big", {"id": "b0", "email": "a@x.com"})  # the oldest Big object
    with services.write() as tx:  # one transaction: the rest share a timestamp
        for i in range(1, PROFILE_OBJECT_QUOTA - 5):
            obj = {"id": f"b{i}", "email": "a@x.com"}
            ingest_object(
                tx, domain_name=DOMAIN, object_type_name="Big", source=obj, raw=json.dumps(obj)
            )

    def count(type_name: str) -> int:
        return len(objects_of_all(services, type_name, owner))

    assert count("Small") == 5
    # Full: the next object evicts the oldest object of Small (3 over its limit).
    ingest(services, "Big", {"id": "extra1", "email": "a@x.com"})
    assert count("Small") == 4
    small_ids = {o["id"] for o in objects_of_all(services, "Small", owner)}
    assert "s0" not in small_ids
    ingest(services, "Big", {"id": "extra2", "email": "a@x.com"})
    ingest(services, "Big", {"id": "extra3", "email": "a@x.com"})
    assert count("Small") == 2
    # Nobody over its limit: the incoming Big object evicts the oldest Big one.
    ingest(services, "Big", {"id": "extra4", "email": "a@x.com"})
    big_ids = {o["id"] for o in objects_of_all(services, "Big", owner)}
    assert count("Small") == 2
    assert "b0" not in big_ids and "extra4" in big_ids
    assert len(big_ids) == PROFILE_OBJECT_QUOTA - 2


def test_expired_objects_not_purged_yet_do_not_make_a_batch_evict(
    services: Services, domain: str
) -> None:
    """A batch tells a profile far from the quota by a count that includes expired objects
    not purged yet; at that bound it must count the live ones before evicting anything."""
    from openprofiles.ingest.pipeline import ingest_batch
    from openprofiles.object_types.service import PROFILE_OBJECT_QUOTA

    put_type(services, "Short", crm_type(ExpirationDays=1))
    put_type(services, "Crm", crm_type())
    owner = ingest(services, "Crm", {"id": "c0", "email": "a@x.com"}).profile_id
    with services.write() as tx:
        for i in range(5):
            obj = {"id": f"s{i}", "email": "a@x.com"}
            ingest_object(
                tx, domain_name=DOMAIN, object_type_name="Short", source=obj, raw=json.dumps(obj)
            )
        for i in range(1, PROFILE_OBJECT_QUOTA - 5):
            obj = {"id": f"c{i}", "email": "a@x.com"}
            ingest_object(
                tx, domain_name=DOMAIN, object_type_name="Crm", source=obj, raw=json.dumps(obj)
            )
    # Two days on, the Short objects are expired and not purged: the profile stores
    # PROFILE_OBJECT_QUOTA objects of which PROFILE_OBJECT_QUOTA - 5 are live.
    with services.database.write() as conn:
        later = Tx(conn=conn, services=services, now=datetime.now(UTC) + timedelta(days=2))
        batch = [{"id": f"new{i}", "email": "a@x.com"} for i in range(3)]
        outcomes = ingest_batch(
            later,
            domain_name=DOMAIN,
            object_type_name="Crm",
            records=[(obj, json.dumps(obj)) for obj in batch],
        )
    assert [getattr(o, "profile_id", o) for o in outcomes] == [owner] * 3
    crm_ids = {o["id"] for o in objects_of_all(services, "Crm", owner)}
    # Nothing live was evicted: the oldest Crm object is still there, beside the new ones.
    assert len(crm_ids) == PROFILE_OBJECT_QUOTA - 5 + 3
    assert {"c0", "new0", "new1", "new2"} <= crm_ids


def objects_of_all(services: Services, type_name: str, profile_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after = None
    with services.read() as tx:
        while True:
            records, more = list_profile_objects(
                tx,
                domain_name=DOMAIN,
                object_type_name=type_name,
                profile_id=profile_id,
                limit=100,
                after=after,
            )
            out += [json.loads(r.object_json) for r in records]
            if not more:
                return out
            last = records[-1]
            after = (last.updated_at, last.write_order, bytes.fromhex(last.unique_key))


def test_expiration_hides_then_purge_removes(services: Services, domain: str) -> None:
    put_type(services, "Crm", crm_type(ExpirationDays=2))
    put_type(services, "Lasting", crm_type())  # the domain default: 30 days
    result = ingest(services, "Crm", {"id": "1", "email": "a@x.com"})
    ingest(services, "Lasting", {"id": "1", "email": "a@x.com"})
    digest = bytes.fromhex(result.profile_object_unique_key)
    with services.database.read() as conn:
        tx = Tx(conn=conn, services=services)
        assert find_object(tx, domain_name=DOMAIN, object_type_name="Crm", unique_digest=digest)
        later = Tx(conn=conn, services=services, now=tx.now + timedelta(days=3))
        assert (
            find_object(later, domain_name=DOMAIN, object_type_name="Crm", unique_digest=digest)
            is None
        )
        records, _ = list_profile_objects(
            later,
            domain_name=DOMAIN,
            object_type_name="Crm",
            profile_id=result.profile_id,
            limit=10,
        )
        assert records == []
    with services.write() as tx:
        assert purge_expired(tx, tx.now + timedelta(days=1)) == 0
        assert purge_expired(tx, tx.now + timedelta(days=3)) == 1
    with services.read() as tx:
        left = tx.conn.execute(select(profile_object.c.object_type_name)).all()
    assert [r[0] for r in left] == ["Lasting"]
