"""Undoing a merge on real databases (SQLite and PostgreSQL): the merged profiles, their fields,
keys and objects come back; data that arrived on the main profile after the merge stays there
and the result says so."""

from __future__ import annotations

from typing import Any

import pytest

from openprofiles.errors import BadRequest, NotFound
from openprofiles.identity import service
from openprofiles.objects.service import list_profile_objects
from openprofiles.profiles import service as profiles

from .conftest import fields_of, ingest, new_profile, put_billing_type, search


def merge(services: Any, main: str, ids: list[str], sources: Any = None) -> str:
    with services.write() as tx:
        return service.merge_profiles(
            tx, domain_name="ident", main_profile_id=main, profile_ids=ids, field_sources=sources
        ).merge_id


def undo(services: Any, merge_id: str) -> service.UndoResult:
    with services.write() as tx:
        return service.undo_merge(tx, domain_name="ident", merge_id=merge_id)


def objects_of(services: Any, profile_id: str) -> list[str]:
    with services.read() as tx:
        items, _ = list_profile_objects(
            tx, domain_name="ident", object_type_name="Crm", profile_id=profile_id, limit=100
        )
    return sorted(item.unique_key for item in items)


def keys_of(services: Any, profile_id: str) -> dict[str, list[str]]:
    with services.read() as tx:
        return profiles.profile_keys(tx, domain_name="ident", profile_id=profile_id)


def test_undo_restores_profiles_fields_keys_and_objects(services, domain):
    first = ingest(services, {"id": "c1", "email": "ada@example.com", "first": "Ada"})
    second = ingest(services, {"id": "c2", "email": "ada@work.example"})
    main, other = first.profile_id, second.profile_id
    with services.write() as tx:
        profiles.update_profile(
            tx,
            domain_name="ident",
            profile_id=other,
            changes={"LastName": "Lovelace", "Attributes": {"Tier": "gold"}},
        )
        profiles.add_profile_key(
            tx, domain_name="ident", profile_id=other, key_name="loyalty", values=["L-7"]
        )
    main_before, other_before = fields_of(services, main), fields_of(services, other)
    main_keys, other_keys = keys_of(services, main), keys_of(services, other)
    merge_id = merge(services, main, [other], {"EmailAddress": other})
    assert fields_of(services, main)["EmailAddress"] == "ada@work.example"

    result = undo(services, merge_id)

    assert result.restored_profile_ids == (other,)
    assert result.objects_moved_back == 1
    assert result.kept_objects == () and result.kept_keys == () and result.kept_fields == ()
    assert fields_of(services, main) == main_before
    assert fields_of(services, other) == other_before
    assert keys_of(services, main) == main_keys
    assert keys_of(services, other) == other_keys
    assert objects_of(services, main) == [first.profile_object_unique_key]
    assert objects_of(services, other) == [second.profile_object_unique_key]
    assert search(services, "_profileId", other) == [other]
    assert search(services, "_email", "ada@work.example") == [other]
    assert search(services, "loyalty", "L-7") == [other]
    # The restored profile's protection of manually set fields is back too.
    with services.read() as tx:
        record = profiles.get_profile(tx, domain_name="ident", profile_id=other)
    assert record.manual_fields == {"LastName", "Attributes.Tier"}
    with services.read() as tx:
        shown = service.get_merge(tx, domain_name="ident", merge_id=merge_id)
    assert shown.undone_at is not None
    assert shown.undo is not None and shown.undo.objects_moved_back == 1


def test_data_arriving_after_the_merge_stays_on_the_main_profile(services, domain):
    first = ingest(services, {"id": "c1", "email": "ada@example.com", "first": "Ada"})
    second = ingest(services, {"id": "c2", "email": "ada@work.example"})
    main, other = first.profile_id, second.profile_id
    merge_id = merge(services, main, [other])
    later = ingest(services, {"id": "c3", "email": "ada@work.example"})
    assert later.profile_id == main
    with services.write() as tx:
        profiles.add_profile_key(
            tx, domain_name="ident", profile_id=main, key_name="loyalty", values=["L-9"]
        )
        profiles.update_profile(
            tx, domain_name="ident", profile_id=main, changes={"FirstName": "Adeline"}
        )

    result = undo(services, merge_id)

    assert [(o.object_type_name, o.unique_key) for o in result.kept_objects] == [
        ("Crm", later.profile_object_unique_key)
    ]
    assert ("loyalty", "L-9") in {(k.key_name, k.value) for k in result.kept_keys}
    assert ("crmId", "c3") in {(k.key_name, k.value) for k in result.kept_keys}
    assert objects_of(services, main) == sorted(
        [first.profile_object_unique_key, later.profile_object_unique_key]
    )
    assert objects_of(services, other) == [second.profile_object_unique_key]
    assert fields_of(services, main)["FirstName"] == "Adeline"
    assert search(services, "crmId", "c3") == [main]
    assert search(services, "crmId", "c2") == [other]


def test_a_main_field_changed_after_the_merge_keeps_its_later_value(services, domain):
    main = new_profile(services, FirstName="Jane")
    other = new_profile(services, LastName="Doe", MiddleName="Q")
    merge_id = merge(services, main, [other])
    with services.write() as tx:
        profiles.update_profile(
            tx, domain_name="ident", profile_id=main, changes={"LastName": "Smith"}
        )
    result = undo(services, merge_id)
    assert result.kept_fields == ("LastName",)
    assert fields_of(services, main) == {"FirstName": "Jane", "LastName": "Smith"}
    assert fields_of(services, other) == {"LastName": "Doe", "MiddleName": "Q"}


def test_a_later_write_of_one_address_part_keeps_that_part_only(services, domain):
    """The merge takes an address whole, but writes come part by part: the part written since
    stays, the rest of the merged address goes, and the main profile's own part comes back."""
    main = new_profile(services, FirstName="Jane", Address={"City": "Paris"})
    other = new_profile(services, LastName="Doe", Address={"City": "Rome", "Address1": "Via 1"})
    merge_id = merge(services, main, [other], {"Address": other})
    with services.write() as tx:
        profiles.update_profile(
            tx, domain_name="ident", profile_id=main, changes={"Address": {"PostalCode": "75001"}}
        )

    result = undo(services, merge_id)

    assert fields_of(services, main) == {
        "FirstName": "Jane",
        "Address": {"City": "Paris", "PostalCode": "75001"},
    }
    assert result.kept_fields == ()
    assert result.reverted_fields == ("LastName", "Address.Address1", "Address.City")
    assert fields_of(services, other) == {
        "LastName": "Doe",
        "Address": {"City": "Rome", "Address1": "Via 1"},
    }


def test_a_person_writing_the_merged_value_again_keeps_it(services, domain):
    """The merge brought a value an object type had set; a person writes that same value after
    the merge: the later write wins, and is reported."""
    main = new_profile(services, FirstName="Jane")
    other = ingest(services, {"id": "c2", "email": "bob@example.com"}).profile_id
    merge_id = merge(services, main, [other])
    with services.write() as tx:
        profiles.update_profile(
            tx, domain_name="ident", profile_id=main, changes={"EmailAddress": "bob@example.com"}
        )

    result = undo(services, merge_id)

    assert result.kept_fields == ("EmailAddress",)
    assert result.reverted_fields == ()
    assert fields_of(services, main) == {"FirstName": "Jane", "EmailAddress": "bob@example.com"}
    assert fields_of(services, other) == {"EmailAddress": "bob@example.com"}


def test_an_object_writing_the_merged_value_again_keeps_it(services, domain):
    """The merge brought values a person had set; an object type with a SourcePriority writes
    one of them again after the merge: that one stays, the other goes."""
    put_billing_type(services)
    main = new_profile(services, EmailAddress="jane@example.com")
    other = new_profile(services, FirstName="Bob", LastName="Doe")
    merge_id = merge(services, main, [other])
    billed = ingest(
        services, {"id": "b1", "email": "jane@example.com", "first": "Bob"}, object_type="Billing"
    )
    assert billed.profile_id == main

    result = undo(services, merge_id)

    assert result.kept_fields == ("FirstName",)
    assert result.reverted_fields == ("LastName",)
    assert fields_of(services, main) == {"FirstName": "Bob", "EmailAddress": "jane@example.com"}


def test_undo_says_what_it_put_back_and_whether_the_main_profile_was_written_since(
    services, domain
):
    main = new_profile(services, FirstName="Jane")
    first = merge(services, main, [new_profile(services, LastName="Doe", MiddleName="Q")])

    untouched = undo(services, first)

    assert untouched.reverted_fields == ("MiddleName", "LastName")
    assert not untouched.main_written_since
    second = merge(services, main, [new_profile(services, LastName="Roe")])
    with services.write() as tx:
        # The same value the merge gave, by the same setter (a person): no trace of it stays.
        profiles.update_profile(
            tx, domain_name="ident", profile_id=main, changes={"LastName": "Roe"}
        )

    rewritten = undo(services, second)

    assert rewritten.reverted_fields == ("LastName",)
    assert rewritten.main_written_since
    assert fields_of(services, main) == {"FirstName": "Jane"}
    with services.read() as tx:
        shown = service.get_merge(tx, domain_name="ident", merge_id=second).undo
    assert shown is not None
    assert shown.reverted_fields == ("LastName",) and shown.main_written_since


def test_a_moved_key_value_another_source_gave_since_stays_and_is_listed(services, domain):
    put_billing_type(services)
    main = ingest(services, {"id": "c1", "email": "ada@example.com"}).profile_id
    other = ingest(services, {"id": "c2", "email": "ada@work.example"}).profile_id
    merge_id = merge(services, main, [other])
    later = ingest(services, {"id": "b1", "email": "ada@work.example"}, object_type="Billing")
    assert later.profile_id == main

    result = undo(services, merge_id)

    assert {(k.key_name, k.value) for k in result.kept_keys} == {
        ("_email", "ada@work.example"),
        ("billId", "b1"),
    }
    assert sorted(search(services, "_email", "ada@work.example")) == sorted([main, other])


def test_an_object_deleted_since_is_reported_missing(services, domain):
    first = ingest(services, {"id": "c1", "email": "ada@example.com"})
    second = ingest(services, {"id": "c2", "email": "ada@work.example"})
    merge_id = merge(services, first.profile_id, [second.profile_id])
    with services.write() as tx:
        from openprofiles.objects.service import delete_profile_object

        delete_profile_object(
            tx,
            domain_name="ident",
            object_type_name="Crm",
            profile_id=first.profile_id,
            unique_key=second.profile_object_unique_key,
        )
    result = undo(services, merge_id)
    assert [o.unique_key for o in result.missing_objects] == [second.profile_object_unique_key]
    assert result.objects_moved_back == 0


def test_undo_twice_is_refused(services, domain):
    main = new_profile(services, FirstName="Jane")
    merge_id = merge(services, main, [new_profile(services, FirstName="Jorge")])
    undo(services, merge_id)
    with pytest.raises(BadRequest, match="already undone"):
        undo(services, merge_id)


def test_unknown_merge_is_not_found(services, domain):
    with pytest.raises(NotFound, match="merge"):
        undo(services, "f" * 32)


def test_undo_waits_for_a_later_merge_of_the_main_profile(services, domain):
    a = new_profile(services, FirstName="A")
    b = new_profile(services, FirstName="B")
    c = new_profile(services, FirstName="C")
    first = merge(services, b, [c])
    second = merge(services, a, [b])
    with pytest.raises(BadRequest, match="undo that merge first"):
        undo(services, first)
    undo(services, second)
    undo(services, first)
    assert [fields_of(services, p)["FirstName"] for p in (a, b, c)] == ["A", "B", "C"]
    assert search(services, "_profileId", c) == [c]


def test_deleting_the_main_profile_deletes_its_merge_logs(services, domain):
    """The logs hold the merged profiles' before-images: personal data an erasure must take
    (an undo of them could only be refused anyway). Logs of other profiles stay."""
    main = new_profile(services, FirstName="Jane", EmailAddress="jane@example.com")
    merge_id = merge(services, main, [new_profile(services, FirstName="Jorge")])
    other = new_profile(services, FirstName="Kim")
    kept = merge(services, other, [new_profile(services, FirstName="Kym")])
    # An undone merge keeps its log; the profile it gave back is deleted later.
    given_back = new_profile(services, FirstName="Lee")
    undone = merge(services, other, [given_back])
    undo(services, undone)
    with services.write() as tx:
        profiles.delete_profile(tx, domain_name="ident", profile_id=main)
        profiles.delete_profile(tx, domain_name="ident", profile_id=given_back)
    with services.read() as tx:
        assert [m.merge_id for m in service.list_merges(tx, domain_name="ident")] == [kept]
    with pytest.raises(NotFound):
        undo(services, merge_id)


def test_merges_are_listed_newest_first(services, domain):
    main = new_profile(services, FirstName="Jane")
    one = merge(services, main, [new_profile(services, FirstName="x")])
    two = merge(services, main, [new_profile(services, FirstName="y")])
    with services.read() as tx:
        listed = service.list_merges(tx, domain_name="ident")
    assert [m.merge_id for m in listed] == [two, one]


def test_a_merge_logged_before_migration_0017_is_undone_the_same_way(services, domain):
    """Logs written before 0017 name origins "profile", "explicit", "merge" and carry no
    `"origins": 2`; the rows they describe were renamed by the migration."""
    from sqlalchemy import update

    from openprofiles.store.schema import merge_log

    first = ingest(services, {"id": "c1", "email": "ada@example.com", "first": "Ada"})
    second = ingest(services, {"id": "c2", "email": "ada@work.example"})
    main, other = first.profile_id, second.profile_id
    with services.write() as tx:
        profiles.add_profile_key(
            tx, domain_name="ident", profile_id=other, key_name="loyalty", values=["L-7"]
        )
    main_keys, other_keys = keys_of(services, main), keys_of(services, other)
    merge_id = merge(services, main, [other])
    old_names = {"@profile": "profile", "@explicit": "explicit", "@merge": "merge"}
    with services.write() as tx:
        cipher = tx.cipher("ident")
        sealed = (
            tx.conn.execute(merge_log.select().where(merge_log.c.merge_id == merge_id)).one().sealed
        )
        payload = cipher.open_record(service.MERGE_TABLE, merge_id, bytes(sealed))
        assert payload.pop("origins") == 2
        del payload["main_version"]  # nor the main profile's version after the merge
        assert {k["origin"] for k in payload["keys"]} >= {"@profile", "@explicit"}
        for key in payload["keys"]:
            key["origin"] = old_names.get(key["origin"], key["origin"])
        tx.conn.execute(
            update(merge_log)
            .where(merge_log.c.merge_id == merge_id)
            .values(sealed=cipher.seal_record(service.MERGE_TABLE, merge_id, payload))
        )

    result = undo(services, merge_id)

    assert result.kept_keys == ()
    assert not result.main_written_since
    assert keys_of(services, main) == main_keys
    assert keys_of(services, other) == other_keys
    assert search(services, "_profileId", other) == [other]
    assert search(services, "loyalty", "L-7") == [other]


def test_a_key_deleted_from_the_main_profile_since_stays_deleted(services, domain):
    main = new_profile(services, FirstName="Main")
    other = new_profile(services, FirstName="Donor")
    with services.write() as tx:
        profiles.add_profile_key(
            tx, domain_name="ident", profile_id=other, key_name="loyalty", values=["WRONG-LINK"]
        )
        profiles.add_profile_key(
            tx, domain_name="ident", profile_id=other, key_name="loyalty", values=["L-1"]
        )
    merge_id = merge(services, main, [other])
    with services.write() as tx:
        profiles.delete_profile_key(
            tx, domain_name="ident", profile_id=main, key_name="loyalty", values=["WRONG-LINK"]
        )

    result = undo(services, merge_id)

    assert search(services, "loyalty", "WRONG-LINK") == []
    assert search(services, "loyalty", "L-1") == [other]
    # DeleteProfileKey took the value out of the merge log too: the undo does not list it.
    assert result.missing_keys == ()
    assert ("loyalty", "WRONG-LINK") not in {(k.key_name, k.value) for k in result.kept_keys}
    with services.read() as tx:
        logged = service.get_merge(tx, domain_name="ident", merge_id=merge_id).undo
    assert logged is not None and logged.missing_keys == result.missing_keys


def test_what_an_object_type_deleted_since_wrote_stays_deleted(services, domain):
    from openprofiles.object_types.service import delete_object_type

    main = new_profile(services, LastName="Main")
    crm = ingest(services, {"id": "c9", "email": "only-crm@example.com", "first": "FromCrm"})
    other = crm.profile_id
    merge_id = merge(services, main, [other], {"FirstName": other, "EmailAddress": other})
    with services.write() as tx:
        delete_object_type(tx, domain_name="ident", name="Crm")

    result = undo(services, merge_id)

    assert "FirstName" not in fields_of(services, other)
    assert "EmailAddress" not in fields_of(services, other)
    assert fields_of(services, main) == {"LastName": "Main"}
    assert search(services, "_email", "only-crm@example.com") == []
    assert search(services, "crmId", "c9") == []
    # The type's keys left the merge log with it (identity.service.forget_deleted_type).
    assert result.missing_keys == ()
    assert {(d.profile_id, d.path, d.object_type_name) for d in result.dropped_fields} == {
        (other, "FirstName", "Crm"),
        (other, "EmailAddress", "Crm"),
    }
    assert result.reverted_fields == ()


def test_a_main_field_an_object_type_deleted_since_wrote_is_not_put_back(services, domain):
    from openprofiles.object_types.service import delete_object_type

    main = ingest(services, {"id": "c8", "first": "FromCrm"}).profile_id
    other = new_profile(services, FirstName="Typed")
    merge_id = merge(services, main, [other], {"FirstName": other})
    with services.write() as tx:
        delete_object_type(tx, domain_name="ident", name="Crm")
    assert fields_of(services, main)["FirstName"] == "Typed"

    result = undo(services, merge_id)

    assert "FirstName" not in fields_of(services, main)
    assert fields_of(services, other) == {"FirstName": "Typed"}
    assert [(d.profile_id, d.path) for d in result.dropped_fields] == [(main, "FirstName")]
    assert result.reverted_fields == ()
