"""A key's stored profile-key values are re-digested when its ContentType changes
(profiles.key_reindex): every page of them, whatever their origin (AddProfileKey, an ingested
type, a merge), a template's keys on its first use, and a value with no normal form under the
new ContentType, which stays findable and erasable. On SQLite and PostgreSQL; the race of
AddProfileKey with the PutProfileObjectType that changes the key's ContentType on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from tests.support.backends import postgres_schema_url
from tests.support.lock_waits import second_writer_meets_first

from openprofiles.app import build_services
from openprofiles.context import Services
from openprofiles.identity import service as identity
from openprofiles.object_types import service
from openprofiles.profiles import key_reindex
from openprofiles.profiles import service as profiles
from openprofiles.settings import Settings
from openprofiles.store.schema import profile_key

from .conftest import make_domain, profile_mapping


def with_key(key_name: str, content_type: str) -> dict[str, Any]:
    """A definition with a search-only key `key_name` over a field of `content_type`."""
    definition = profile_mapping()
    definition["Fields"]["ref"] = {"Source": "_source.ref", "ContentType": content_type}
    definition["Keys"][key_name] = [{"FieldNames": ["ref"]}]
    return definition


def new_profile(services: Services, domain: str, key_name: str, values: list[str]) -> str:
    with services.write() as tx:
        pid = profiles.create_profile(tx, domain_name=domain, fields={"FirstName": "A"}).profile_id
        profiles.add_profile_key(
            tx, domain_name=domain, profile_id=pid, key_name=key_name, values=values
        )
    return pid


def found(services: Services, domain: str, key_name: str, value: str) -> list[str]:
    with services.read() as tx:
        page, _ = profiles.search_profiles(
            tx, domain_name=domain, criteria=[profiles.SearchCriterion(key_name, (value,))]
        )
    return [record.profile_id for record, _ in page]


def rows_of(services: Services, domain: str, key_name: str) -> int:
    with services.read() as tx:
        return int(
            tx.conn.execute(
                select(func.count()).where(
                    profile_key.c.domain_name == domain, profile_key.c.key_name == key_name
                )
            ).scalar_one()
        )


def test_every_page_of_the_key_is_redigested(
    services: Services, domain: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(key_reindex, "PAGE_ROWS", 2)
    pids = [new_profile(services, domain, "member", [f"User{i}@Example.com"]) for i in range(7)]
    both = new_profile(services, domain, "member", ["Two@Example.com", "TWO@example.COM"])
    with services.write() as tx:
        service.put_object_type(
            tx, domain_name=domain, name="A", params=with_key("member", "EMAIL_ADDRESS")
        )
    for i, pid in enumerate(pids):
        assert found(services, domain, "member", f"user{i}@example.com") == [pid]
    assert found(services, domain, "member", "two@example.com") == [both]
    # The two forms of one address are one value now: one row.
    assert rows_of(services, domain, "member") == 8


def test_a_merged_profiles_value_is_redigested_on_the_survivor(
    services: Services, domain: str
) -> None:
    main = new_profile(services, domain, "member", ["Main@Example.com"])
    merged = new_profile(services, domain, "member", ["Merged@Example.com"])
    with services.write() as tx:
        identity.merge_profiles(tx, domain_name=domain, main_profile_id=main, profile_ids=[merged])
        service.put_object_type(
            tx, domain_name=domain, name="A", params=with_key("member", "EMAIL_ADDRESS")
        )
    assert found(services, domain, "member", "merged@example.com") == [main]
    assert found(services, domain, "member", "main@example.com") == [main]


def test_a_templates_key_is_redigested_on_the_templates_first_use(
    services: Services, domain: str
) -> None:
    pid = new_profile(services, domain, "_ctrPhone", ["(206) 555-0199"])
    assert found(services, domain, "_ctrPhone", "+12065550199") == []
    with services.write() as tx:
        # The CTR template's `_ctrPhone` is a PHONE_NUMBER key once the type is used.
        service.note_implicit_type_used(tx, domain_name=domain, name="CTR")
    assert found(services, domain, "_ctrPhone", "+12065550199") == [pid]
    assert found(services, domain, "_ctrPhone", "206.555.0199") == [pid]


def test_a_value_without_a_normal_form_stays_findable_and_erasable(
    services: Services, domain: str
) -> None:
    pid = new_profile(services, domain, "altPhone", ["n/a", "(206) 555-0100"])
    with services.write() as tx:
        service.put_object_type(
            tx, domain_name=domain, name="A", params=with_key("altPhone", "PHONE_NUMBER")
        )
    assert found(services, domain, "altPhone", "206 555 0100") == [pid]
    assert found(services, domain, "altPhone", "n/a") == [pid]
    with services.write() as tx:
        profiles.delete_profile_key(
            tx, domain_name=domain, profile_id=pid, key_name="altPhone", values=["n/a"]
        )
    assert found(services, domain, "altPhone", "n/a") == []
    assert rows_of(services, domain, "altPhone") == 1


def test_predefined_keys_are_left_alone(services: Services, domain: str) -> None:
    with services.write() as tx:
        changed = key_reindex.renormalise_key(
            tx,
            domain_name=domain,
            key_name="_email",
            content_type=profiles.ContentType.STRING,
        )
    assert changed == 0


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[tuple[Services, str]]:
    with postgres_schema_url() as url:
        services = build_services(Settings(data_dir=tmp_path / "data", database_url=url))
        try:
            yield services, make_domain(services)
        finally:
            services.database.dispose()


@pytest.mark.postgres
def test_a_value_added_while_the_key_is_being_defined_is_written_under_the_new_type(
    pg: tuple[Services, str],
) -> None:
    """AddProfileKey read the ContentType before the put committed and wrote its value as a
    STRING after the put's re-digest ran; it waits for the put now."""
    services, domain = pg
    with services.write() as tx:
        pid = profiles.create_profile(tx, domain_name=domain, fields={"FirstName": "A"}).profile_id

    def add() -> str:
        with services.write() as tx:
            return profiles.add_profile_key(
                tx,
                domain_name=domain,
                profile_id=pid,
                key_name="member",
                values=["Bob.Smith@Example.com"],
            )

    outcome = second_writer_meets_first(
        services,
        lambda tx: service.put_object_type(
            tx, domain_name=domain, name="A", params=with_key("member", "EMAIL_ADDRESS")
        ),
        add,
    )
    assert outcome == pid, outcome
    assert found(services, domain, "member", "bob.smith@example.com") == [pid]
