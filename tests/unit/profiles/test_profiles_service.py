"""The profiles service on real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from openprofiles.context import Principal, RequestContext
from openprofiles.domains.handlers import create_domain
from openprofiles.errors import BadRequest, NotFound
from openprofiles.profiles import service
from openprofiles.store.schema import profile


@pytest.fixture
def domain(services) -> str:
    create_domain(
        RequestContext(services=services, principal=Principal("t", "admin")),
        {"DomainName": "unit", "DefaultExpirationDays": 5},
    )
    return "unit"


def _search(services, domain, *criteria, operator="OR", limit=20, after=None):
    with services.read() as tx:
        return service.search_profiles(
            tx,
            domain_name=domain,
            criteria=[service.SearchCriterion(k, tuple(v)) for k, v in criteria],
            logical_operator=operator,
            limit=limit,
            after=after,
        )


def test_create_marks_fields_as_set_by_a_person(services, domain):
    with services.write() as tx:
        record = service.create_profile(
            tx, domain_name=domain, fields={"FirstName": "Ada", "Address": {"City": "London"}}
        )
    with services.read() as tx:
        stored = service.get_profile(tx, domain_name=domain, profile_id=record.profile_id)
    assert stored.manual_fields == {"FirstName", "Address.City"}
    assert stored.version == 1


def test_ingestion_style_create_marks_nothing(services, domain):
    with services.write() as tx:
        record = service.create_profile(
            tx, domain_name=domain, fields={"FirstName": "Ada"}, manual=False
        )
    with services.read() as tx:
        assert (
            service.get_profile(tx, domain_name=domain, profile_id=record.profile_id).manual_fields
            == set()
        )


def test_empty_values_are_not_stored(services, domain):
    with services.write() as tx:
        record = service.create_profile(
            tx, domain_name=domain, fields={"FirstName": "", "Address": {"City": ""}, "X": "y"}
        )
    assert record.fields == {}


def test_update_bumps_version_and_reindexes(services, domain):
    with services.write() as tx:
        record = service.create_profile(tx, domain_name=domain, fields={"EmailAddress": "a@x.io"})
        service.update_profile(
            tx,
            domain_name=domain,
            profile_id=record.profile_id,
            changes={"EmailAddress": "b@x.io"},
        )
    with services.read() as tx:
        assert (
            service.get_profile(tx, domain_name=domain, profile_id=record.profile_id).version == 2
        )
        keys = service.profile_keys(tx, domain_name=domain, profile_id=record.profile_id)
    assert keys["_email"] == ["b@x.io"]
    assert _search(services, domain, ("_email", ["a@x.io"]))[0] == []


def test_profile_keys_returns_the_values_as_written(services, domain):
    with services.write() as tx:
        record = service.create_profile(
            tx,
            domain_name=domain,
            fields={"PhoneNumber": "+1 (206) 345-7890", "FirstName": "Ada", "LastName": "L"},
        )
        service.add_profile_key(
            tx, domain_name=domain, profile_id=record.profile_id, key_name="crm", values=["X-1"]
        )
    with services.read() as tx:
        keys = service.profile_keys(tx, domain_name=domain, profile_id=record.profile_id)
    assert keys["_phone"] == ["+1 (206) 345-7890"]
    assert keys["_fullName"] == ["Ada L"]
    assert keys["crm"] == ["X-1"]
    assert keys["_profileId"] == [record.profile_id]


def test_search_pages_by_cursor(services, domain):
    with services.write() as tx:
        ids = sorted(
            service.create_profile(tx, domain_name=domain, fields={"AccountNumber": "A"}).profile_id
            for _ in range(5)
        )
    page, cursor = _search(services, domain, ("_account", ["A"]), limit=2)
    assert [r.profile_id for r, _ in page] == ids[:2]
    assert cursor == ids[1]
    page, cursor = _search(services, domain, ("_account", ["A"]), limit=2, after=cursor)
    assert [r.profile_id for r, _ in page] == ids[2:4]
    page, cursor = _search(services, domain, ("_account", ["A"]), limit=2, after=cursor)
    assert [r.profile_id for r, _ in page] == ids[4:]
    assert cursor is None


def test_search_with_several_values_for_one_key(services, domain):
    with services.write() as tx:
        a = service.create_profile(tx, domain_name=domain, fields={"AccountNumber": "A"})
        b = service.create_profile(tx, domain_name=domain, fields={"AccountNumber": "B"})
    page, _ = _search(services, domain, ("_account", ["A", "B", "C"]))
    found = {r.profile_id: m for r, m in page}
    assert set(found) == {a.profile_id, b.profile_id}
    assert found[a.profile_id][0].values == ("A",)


def test_merged_away_ids_resolve_to_the_survivor(services, domain):
    with services.write() as tx:
        main = service.create_profile(tx, domain_name=domain, fields={"FirstName": "Main"})
        gone = service.create_profile(tx, domain_name=domain, fields={"FirstName": "Gone"})
        tx.conn.execute(
            update(profile)
            .where(profile.c.profile_id == gone.profile_id)
            .values(merged_into=main.profile_id)
        )
    with services.read() as tx:
        assert (
            service.resolve_profile_id(tx, domain_name=domain, profile_id=gone.profile_id)
            == main.profile_id
        )
        got = service.get_profiles(tx, domain_name=domain, profile_ids=[gone.profile_id])
    assert got[gone.profile_id].fields["FirstName"] == "Main"


def test_a_derived_value_cannot_be_deleted_by_hand_but_one_can_be_added(services, domain):
    with services.write() as tx:
        record = service.create_profile(
            tx, domain_name=domain, fields={"FirstName": "A", "EmailAddress": "a@b.c"}
        )
    with pytest.raises(BadRequest), services.write() as tx:
        service.delete_profile_key(
            tx,
            domain_name=domain,
            profile_id=record.profile_id,
            key_name="_email",
            values=["a@b.c"],
        )
    with services.write() as tx:
        service.add_profile_key(
            tx,
            domain_name=domain,
            profile_id=record.profile_id,
            key_name="_email",
            values=["X@B.c"],
        )
    assert _search(services, domain, ("_email", ["x@b.C"]))[0][0][0].profile_id == record.profile_id


def test_unknown_domain_or_profile(services, domain):
    with pytest.raises(NotFound), services.read() as tx:
        service.get_profile(tx, domain_name="nope", profile_id="0" * 32)
    with pytest.raises(NotFound), services.read() as tx:
        service.get_profile(tx, domain_name=domain, profile_id="0" * 32)


def test_a_failed_write_leaves_nothing_behind(services, domain):
    with pytest.raises(NotFound), services.write() as tx:
        service.create_profile(tx, domain_name=domain, fields={"FirstName": "Half"})
        service.add_profile_key(
            tx, domain_name=domain, profile_id="0" * 32, key_name="k", values=["v"]
        )
    assert _search(services, domain, ("_fullName", ["Half"]))[0] == []
