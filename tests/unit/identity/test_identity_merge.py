"""MergeProfiles on real databases (SQLite and PostgreSQL): field union and FieldSourceProfileIds
(spec §5.3), keys and objects moving, merged-away profiles' keys resolving (spec §1.6),
refusals, and the sealed merge log."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from openprofiles.domains.service import delete_domain
from openprofiles.errors import BadRequest, NotFound
from openprofiles.identity import service
from openprofiles.objects.service import list_profile_objects
from openprofiles.profiles import service as profiles
from openprofiles.store.schema import merge_log

from .conftest import fields_of, ingest, make_domain, new_profile, search


def merge(services: Any, main: str, ids: list[str], sources: Any = None, domain: str = "ident"):
    with services.write() as tx:
        return service.merge_profiles(
            tx, domain_name=domain, main_profile_id=main, profile_ids=ids, field_sources=sources
        )


def objects_of(services: Any, profile_id: str) -> list[str]:
    with services.read() as tx:
        items, _ = list_profile_objects(
            tx, domain_name="ident", object_type_name="Crm", profile_id=profile_id, limit=100
        )
    return sorted(item.unique_key for item in items)


def test_spec_example_main_wins_without_field_sources(services, domain):
    main = new_profile(services, FirstName="Jane")
    p1 = new_profile(services, LastName="Doe")
    p2 = new_profile(services, FirstName="Jorge")
    merge(services, main, [p1, p2])
    assert fields_of(services, main) == {"FirstName": "Jane", "LastName": "Doe"}


def test_spec_example_field_source_wins(services, domain):
    main = new_profile(services, FirstName="Jane")
    p1 = new_profile(services, LastName="Doe")
    p2 = new_profile(services, FirstName="Jorge")
    merge(services, main, [p1, p2], {"FirstName": p2})
    assert fields_of(services, main) == {"FirstName": "Jorge", "LastName": "Doe"}


def test_a_named_source_is_taken_even_when_empty(services, domain):
    main = new_profile(services, FirstName="Jane", BirthDate="1990-01-01")
    other = new_profile(services, LastName="Doe")
    merge(services, main, [other], {"BirthDate": other})
    assert fields_of(services, main) == {"FirstName": "Jane", "LastName": "Doe"}


def test_attributes_merge_key_by_key(services, domain):
    main = new_profile(services, Attributes={"Tier": "gold", "Lang": "en"})
    other = new_profile(services, Attributes={"Tier": "silver", "Pet": "cat", "Lang": "fr"})
    merge(services, main, [other], {"Attributes": {"Lang": other}})
    assert fields_of(services, main)["Attributes"] == {"Tier": "gold", "Lang": "fr", "Pet": "cat"}


def test_addresses_merge_as_a_whole(services, domain):
    main = new_profile(services, Address={"City": "London"})
    other = new_profile(services, Address={"Country": "UK"}, ShippingAddress={"City": "Leeds"})
    merge(services, main, [other])
    got = fields_of(services, main)
    assert got["Address"] == {"City": "London"}
    assert got["ShippingAddress"] == {"City": "Leeds"}


def test_keys_and_objects_move_and_old_ids_resolve(services, domain):
    first = ingest(services, {"id": "c1", "email": "ada@example.com", "first": "Ada"})
    second = ingest(services, {"id": "c2", "email": "ada@work.example", "first": "A."})
    main, other = first.profile_id, second.profile_id
    assert main != other
    with services.write() as tx:
        profiles.add_profile_key(
            tx, domain_name="ident", profile_id=other, key_name="loyalty", values=["L-7"]
        )
    merge(services, main, [other])

    assert objects_of(services, main) == sorted(
        [first.profile_object_unique_key, second.profile_object_unique_key]
    )
    # Search by the merged profile's id, email, explicit and ingested keys finds the main one.
    assert search(services, "_profileId", other) == [main]
    assert search(services, "_email", "ada@work.example") == [main]
    assert search(services, "loyalty", "L-7") == [main]
    assert search(services, "crmId", "c2") == [main]
    with services.read() as tx:
        got = profiles.get_profiles(tx, domain_name="ident", profile_ids=[other])
        assert got[other].profile_id == main
        assert profiles.profile_keys(tx, domain_name="ident", profile_id=other) == {}
    # The main profile's own fields win; the merged profile's email was not taken.
    assert fields_of(services, main) == {"EmailAddress": "ada@example.com", "FirstName": "Ada"}
    # A new object carrying the merged profile's key lands on the main one (spec §1.6).
    third = ingest(services, {"id": "c3", "email": "ada@work.example"})
    assert third.profile_id == main
    assert not third.created_profile
    # Changing the main profile keeps the merged id resolving.
    with services.write() as tx:
        profiles.update_profile(
            tx, domain_name="ident", profile_id=main, changes={"FirstName": "Adeline"}
        )
    assert search(services, "_profileId", other) == [main]


def test_merging_into_itself_is_refused(services, domain):
    main = new_profile(services, FirstName="Jane")
    with pytest.raises(BadRequest, match="into itself"):
        merge(services, main, [main])


def test_unknown_profiles_are_not_found(services, domain):
    main = new_profile(services, FirstName="Jane")
    with pytest.raises(NotFound, match="0" * 32):
        merge(services, main, ["0" * 32])
    with pytest.raises(NotFound, match="1" * 32):
        merge(services, "1" * 32, [main])


def test_profiles_of_another_domain_are_not_found(services, domain):
    make_domain(services, "elsewhere")
    main = new_profile(services, FirstName="Jane")
    foreign = new_profile(services, domain="elsewhere", FirstName="Jorge")
    with pytest.raises(NotFound, match="does not exist in domain ident"):
        merge(services, main, [foreign])


def test_unknown_domain_is_not_found(services, domain):
    with pytest.raises(NotFound):
        merge(services, "a" * 32, ["b" * 32], domain="nowhere")


def test_more_than_twenty_profiles_are_refused(services, domain):
    main = new_profile(services, FirstName="Jane")
    with pytest.raises(BadRequest, match="between 1 and 20"):
        merge(services, main, [f"{i:032x}" for i in range(21)])
    with pytest.raises(BadRequest, match="between 1 and 20"):
        merge(services, main, [])


def test_a_merged_away_profile_cannot_be_merged_again(services, domain):
    main = new_profile(services, FirstName="Jane")
    other = new_profile(services, FirstName="Jorge")
    third = new_profile(services, FirstName="Jo")
    merge(services, main, [other])
    # Gone, as MergeProfiles deletes the merged profiles (spec §5.3); the survivor is named.
    with pytest.raises(NotFound, match=f"it was merged into {main}"):
        merge(services, third, [other])
    with pytest.raises(NotFound, match=f"it was merged into {main}"):
        merge(services, other, [third])


def test_field_sources_must_name_a_profile_of_the_merge(services, domain):
    main = new_profile(services, FirstName="Jane")
    other = new_profile(services, FirstName="Jorge")
    outsider = new_profile(services, FirstName="Jo")
    with pytest.raises(BadRequest, match="FieldSourceProfileIds.FirstName"):
        merge(services, main, [other], {"FirstName": outsider})
    with pytest.raises(BadRequest, match="FieldSourceProfileIds.Attributes.Tier"):
        merge(services, main, [other], {"Attributes": {"Tier": outsider}})


def test_every_merge_is_logged_sealed(services, domain):
    first = ingest(services, {"id": "c1", "email": "ada@example.com"})
    second = ingest(services, {"id": "c2", "email": "secret@example.com"})
    record = merge(
        services, first.profile_id, [second.profile_id], {"EmailAddress": first.profile_id}
    )
    with services.read() as tx:
        listed = service.list_merges(tx, domain_name="ident")
        shown = service.get_merge(tx, domain_name="ident", merge_id=record.merge_id)
        raw = tx.conn.execute(select(merge_log.c.sealed)).scalar_one()
    assert [m.merge_id for m in listed] == [record.merge_id]
    assert listed[0].main_profile_id == first.profile_id
    assert listed[0].merged_profile_ids == (second.profile_id,)
    assert shown.field_sources == {"EmailAddress": first.profile_id}
    assert {(k.key_name, k.value) for k in shown.moved_keys} >= {
        ("_email", "secret@example.com"),
        ("crmId", "c2"),
        ("_profileId", second.profile_id),
    }
    assert [(o.object_type_name, o.unique_key) for o in shown.moved_objects] == [
        ("Crm", second.profile_object_unique_key)
    ]
    assert b"secret@example.com" not in bytes(raw)


def test_merge_log_rows_go_with_the_domain(services, domain):
    main = new_profile(services, FirstName="Jane")
    merge(services, main, [new_profile(services, FirstName="Jorge")])
    with services.write() as tx:
        delete_domain(tx, domain_name="ident")
    with services.read() as tx:
        assert tx.conn.execute(select(merge_log)).first() is None
