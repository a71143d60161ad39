"""Object-type service on a real database (SQLite and PostgreSQL): upsert, get, list, delete,
implicit template-named types, templates, rule 8 and 11 against the domain, and how key
ContentTypes reach search."""

from __future__ import annotations

import pytest
from tests.unit.object_types.conftest import profile_mapping

from openprofiles.context import Services
from openprofiles.errors import BadRequest, NotFound
from openprofiles.normalize import ContentType
from openprofiles.object_types import service
from openprofiles.profiles import service as profiles


def test_put_is_an_upsert_and_get_returns_it(services: Services, domain: str) -> None:
    with services.write() as tx:
        created = service.put_object_type(
            tx, domain_name=domain, name="Customers", params=profile_mapping()
        )
    assert created.allow_profile_creation is True
    assert created.fields["email"].content_type is ContentType.EMAIL_ADDRESS
    assert not created.implicit
    with services.write() as tx:
        service.put_object_type(
            tx,
            domain_name=domain,
            name="Customers",
            params=profile_mapping(Description="changed", SourcePriority=2),
        )
    with services.read() as tx:
        found = service.get_object_type(tx, domain_name=domain, name="Customers")
    assert found.description == "changed"
    assert found.source_priority == 2
    assert found.created_at == created.created_at


def test_get_unknown(services: Services, domain: str) -> None:
    with services.read() as tx, pytest.raises(NotFound) as exc:
        service.get_object_type(tx, domain_name=domain, name="Nope")
    assert exc.value.message == f"The object type Nope does not exist in domain {domain}."
    with services.read() as tx, pytest.raises(NotFound):
        service.get_object_type(tx, domain_name="no-such-domain", name="CTR")


def test_implicit_type_appears_once_used(services: Services, domain: str) -> None:
    with services.read() as tx:
        implicit = service.find_object_type(tx, domain_name=domain, name="CTR")
        listed, _ = service.list_object_types(tx, domain_name=domain, after=None, limit=10)
    assert implicit is not None and implicit.implicit and implicit.template_id == "CTR"
    assert "_ctrContactId" in implicit.keys
    assert listed == []
    with services.write() as tx:
        service.note_implicit_type_used(tx, domain_name=domain, name="CTR")
        service.note_implicit_type_used(tx, domain_name=domain, name="CTR")
        service.note_implicit_type_used(tx, domain_name=domain, name="NotATemplate")
    with services.read() as tx:
        listed, more = service.list_object_types(tx, domain_name=domain, after=None, limit=10)
    assert [(t.name, t.implicit) for t in listed] == [("CTR", True)]
    assert not more


def test_explicit_definition_replaces_implicit_type(services: Services, domain: str) -> None:
    with services.write() as tx:
        service.note_implicit_type_used(tx, domain_name=domain, name="CTR")
        service.put_object_type(tx, domain_name=domain, name="CTR", params=profile_mapping())
    with services.read() as tx:
        found = service.get_object_type(tx, domain_name=domain, name="CTR")
    assert not found.implicit and "customerId" in found.keys


def test_put_from_template(services: Services, domain: str) -> None:
    with services.write() as tx:
        created = service.put_object_type(
            tx,
            domain_name=domain,
            name="Contacts",
            params={"Description": "contacts", "TemplateId": "CTR-NoInferred", "ExpirationDays": 9},
        )
    assert created.template_id == "CTR-NoInferred"
    assert created.expiration_days == 9
    assert set(created.keys) == {"_ctrContactId", "_phone", "_email"}
    assert created.definition["TemplateId"] == "CTR-NoInferred"


@pytest.mark.parametrize("member", ["Fields", "Keys", "AllowProfileCreation"])
def test_rule11_template_with_fields_or_keys(services: Services, domain: str, member: str) -> None:
    params = {"Description": "x", "TemplateId": "CTR", member: profile_mapping()[member]}
    with services.write() as tx, pytest.raises(BadRequest) as exc:
        service.put_object_type(tx, domain_name=domain, name="Contacts", params=params)
    assert "or you can specify TemplateId" in exc.value.message
    assert member in exc.value.message


def test_unknown_template_id(services: Services, domain: str) -> None:
    with services.write() as tx, pytest.raises(BadRequest) as exc:
        service.put_object_type(
            tx, domain_name=domain, name="X", params={"Description": "x", "TemplateId": "Nope"}
        )
    assert "TemplateId Nope is not a known template" in exc.value.message


def test_rule8_against_other_object_types(services: Services, domain: str) -> None:
    with services.write() as tx:
        service.put_object_type(tx, domain_name=domain, name="A", params=profile_mapping())
    numeric = profile_mapping()
    numeric["Fields"]["id"] = {"Source": "_source.id", "ContentType": "NUMBER"}
    with services.write() as tx, pytest.raises(BadRequest) as exc:
        service.put_object_type(tx, domain_name=domain, name="B", params=numeric)
    assert "Key customerId is already defined by object type A" in exc.value.message
    # Replacing A itself with the new ContentType is allowed: no other type uses the key.
    with services.write() as tx:
        service.put_object_type(tx, domain_name=domain, name="A", params=numeric)


def test_list_pages_in_name_order(services: Services, domain: str) -> None:
    with services.write() as tx:
        for name in ("b", "a", "c"):
            service.put_object_type(tx, domain_name=domain, name=name, params=profile_mapping())
    with services.read() as tx:
        first, more = service.list_object_types(tx, domain_name=domain, after=None, limit=2)
        rest, more2 = service.list_object_types(tx, domain_name=domain, after="b", limit=2)
    assert [t.name for t in first] == ["a", "b"] and more
    assert [t.name for t in rest] == ["c"] and not more2


def test_delete_calls_hooks_and_forgets_the_type(services: Services, domain: str) -> None:
    calls: list[tuple[str, str]] = []
    service.on_object_type_deleted.append(lambda tx, d, n: calls.append((d, n)))
    try:
        with services.write() as tx:
            service.put_object_type(tx, domain_name=domain, name="A", params=profile_mapping())
        with services.write() as tx:
            service.delete_object_type(tx, domain_name=domain, name="A")
            # A template name can be deleted (to drop its data) even if never used.
            service.delete_object_type(tx, domain_name=domain, name="CTR")
        with services.read() as tx:
            assert service.find_object_type(tx, domain_name=domain, name="A") is None
        with services.write() as tx, pytest.raises(NotFound):
            service.delete_object_type(tx, domain_name=domain, name="A")
    finally:
        service.on_object_type_deleted.pop()
    assert calls == [(domain, "A"), (domain, "CTR")]


def test_key_content_type_reaches_search(services: Services, domain: str) -> None:
    definition = profile_mapping()
    definition["Fields"]["work"] = {"Source": "_source.work", "ContentType": "EMAIL_ADDRESS"}
    definition["Keys"]["workEmail"] = [{"FieldNames": ["work"]}]
    with services.write() as tx:
        service.put_object_type(tx, domain_name=domain, name="A", params=definition)
        assert (
            service.key_content_type(tx, domain_name=domain, key_name="workEmail")
            is ContentType.EMAIL_ADDRESS
        )
        assert service.key_content_type(tx, domain_name=domain, key_name="other") is None
        record = profiles.create_profile(tx, domain_name=domain, fields={"FirstName": "Ada"})
        profiles.add_profile_key(
            tx,
            domain_name=domain,
            profile_id=record.profile_id,
            key_name="workEmail",
            values=["Ada@Work.example"],
        )
    with services.read() as tx:
        page, _ = profiles.search_profiles(
            tx,
            domain_name=domain,
            criteria=[profiles.SearchCriterion("workEmail", ("  ada@WORK.example",))],
        )
    assert [r.profile_id for r, _ in page] == [record.profile_id]


def test_delete_domain_removes_object_types(services: Services, domain: str) -> None:
    from openprofiles.domains.service import delete_domain
    from openprofiles.store.schema import object_type

    with services.write() as tx:
        service.put_object_type(tx, domain_name=domain, name="A", params=profile_mapping())
        delete_domain(tx, domain_name=domain)
        assert tx.conn.execute(object_type.select()).first() is None
