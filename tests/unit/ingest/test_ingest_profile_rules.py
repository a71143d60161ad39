"""Ingestion's rules for what it writes to a profile and beside it, on real databases (SQLite
and PostgreSQL): Gender with GenderString and PartyType with PartyTypeString are one field,
protected and written as one; ProfileType takes only its enum's values and no field takes a
NUL (the record is refused, as CreateProfile and UpdateProfile refuse them); standard objects
(`_asset`, ...) are held to the per-profile object quota as the profile's other objects are."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from tests.unit.ingest.conftest import DOMAIN, crm_type, ingest, put_type

from openprofiles.context import Services
from openprofiles.ingest import pipeline
from openprofiles.ingest.pipeline import IngestRejected
from openprofiles.objects.service import count_objects_by_type
from openprofiles.profiles.service import (
    add_profile_key,
    create_profile,
    get_profile,
    update_profile,
)
from openprofiles.store.schema import profile, profile_object


def person_type() -> dict[str, Any]:
    definition = crm_type()
    definition["Fields"].update(
        {
            "gender": {"Source": "_source.gender", "Target": "_profile.Gender"},
            "party": {"Source": "_source.party", "Target": "_profile.PartyType"},
            "kind": {"Source": "_source.kind", "Target": "_profile.ProfileType"},
        }
    )
    return definition


def fields_of(services: Services, profile_id: str) -> dict[str, Any]:
    with services.read() as tx:
        return get_profile(tx, domain_name=DOMAIN, profile_id=profile_id).fields


def pairs(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if k.startswith(("Gender", "PartyType"))}


def test_an_enum_and_its_free_text_twin_hold_one_value(services: Services, domain: str) -> None:
    put_type(services, "Crm", person_type())
    pid = ingest(services, "Crm", {"id": "1", "gender": "MALE", "party": "BUSINESS"}).profile_id
    ingest(services, "Crm", {"id": "1", "gender": "Female", "party": "Company"})
    assert pairs(fields_of(services, pid)) == {
        "GenderString": "Female",
        "PartyTypeString": "Company",
    }
    ingest(services, "Crm", {"id": "1", "gender": "FEMALE", "party": "OTHER"})
    assert pairs(fields_of(services, pid)) == {"Gender": "FEMALE", "PartyType": "OTHER"}


def test_a_person_set_enum_protects_its_twin(services: Services, domain: str) -> None:
    put_type(services, "Crm", person_type())
    with services.write() as tx:
        pid = create_profile(
            tx,
            domain_name=DOMAIN,
            fields={"AccountNumber": "a1", "Gender": "MALE", "PartyTypeString": "Sole trader"},
        ).profile_id
        add_profile_key(tx, domain_name=DOMAIN, profile_id=pid, key_name="crmId", values=["1"])
    result = ingest(services, "Crm", {"id": "1", "gender": "Female", "party": "BUSINESS"})
    assert result.profile_id == pid
    assert pairs(fields_of(services, pid)) == {"Gender": "MALE", "PartyTypeString": "Sole trader"}


def test_a_cleared_enum_protects_its_twin(services: Services, domain: str) -> None:
    put_type(services, "Crm", person_type())
    pid = ingest(services, "Crm", {"id": "1", "gender": "MALE"}).profile_id
    with services.write() as tx:
        update_profile(tx, domain_name=DOMAIN, profile_id=pid, changes={"Gender": ""})
    ingest(services, "Crm", {"id": "1", "gender": "Female"})
    assert pairs(fields_of(services, pid)) == {}


@pytest.mark.parametrize("kind", ["VIP customer", "account", "PROFILE "])
def test_profile_type_outside_its_enum_is_refused(
    services: Services, domain: str, kind: str
) -> None:
    put_type(services, "Crm", person_type())
    with pytest.raises(IngestRejected) as exc:
        ingest(services, "Crm", {"id": "1", "kind": kind})
    assert exc.value.category == "invalid_value"
    assert "ACCOUNT_PROFILE, PROFILE" in exc.value.reason
    assert kind not in exc.value.reason
    with services.read() as tx:
        assert tx.conn.execute(select(profile)).first() is None


def test_profile_type_of_its_enum_is_written(services: Services, domain: str) -> None:
    put_type(services, "Crm", person_type())
    pid = ingest(services, "Crm", {"id": "1", "kind": "ACCOUNT_PROFILE"}).profile_id
    assert fields_of(services, pid)["ProfileType"] == "ACCOUNT_PROFILE"


@pytest.mark.parametrize("field", ["first", "city", "tier", "gender"])
def test_a_nul_in_a_profile_value_is_refused(services: Services, domain: str, field: str) -> None:
    put_type(services, "Crm", person_type())
    with pytest.raises(IngestRejected) as exc:
        ingest(services, "Crm", {"id": "1", field: "Ann\u0000Lee"})
    assert exc.value.category == "invalid_value"
    assert "NUL" in exc.value.reason and "Ann" not in exc.value.reason
    with services.read() as tx:
        assert tx.conn.execute(select(profile)).first() is None
        assert tx.conn.execute(select(profile_object)).first() is None


def registration_type() -> dict[str, Any]:
    """Product registrations: each names an asset by its serial number (ASSET)."""
    return {
        "Description": "product registrations",
        "AllowProfileCreation": True,
        "Fields": {
            "acc": {"Source": "_source.acc", "Target": "_profile.AccountNumber"},
            "sn": {"Source": "_source.sn", "Target": "_asset.SerialNumber"},
            "rid": {"Source": "_source.rid"},
        },
        "Keys": {
            "_account": [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["acc"]}],
            "rid": [{"StandardIdentifiers": ["UNIQUE"], "FieldNames": ["rid"]}],
            "_serialNumber": [{"StandardIdentifiers": ["ASSET"], "FieldNames": ["sn"]}],
        },
    }


def counts(services: Services, profile_id: str) -> dict[str, int]:
    with services.read() as tx:
        return count_objects_by_type(tx, domain_name=DOMAIN, profile_id=profile_id)


def test_standard_objects_keep_to_the_profile_object_quota(
    services: Services, domain: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "PROFILE_OBJECT_QUOTA", 5)
    put_type(services, "Reg", registration_type())
    pid = ""
    for i in range(12):
        pid = ingest(services, "Reg", {"acc": "a1", "rid": f"r{i}", "sn": f"SN{i}"}).profile_id
        assert sum(counts(services, pid).values()) <= 5
    # Each registration's asset made room by evicting the oldest asset, so the profile keeps
    # records of both kinds, the latest of each.
    assert counts(services, pid) == {"Reg": 3, "_asset": 2}


def test_a_first_standard_object_on_a_full_profile_replaces_an_older_record(
    services: Services, domain: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full profile holding no asset yet: the new asset evicts the oldest object of the type
    that brought it, not the record just written, nor is the record refused."""
    monkeypatch.setattr(pipeline, "PROFILE_OBJECT_QUOTA", 4)
    no_asset = registration_type()
    no_asset["Fields"] = {k: v for k, v in no_asset["Fields"].items() if k != "sn"}
    no_asset["Keys"] = {k: v for k, v in no_asset["Keys"].items() if k != "_serialNumber"}
    put_type(services, "Plain", no_asset)
    put_type(services, "Reg", registration_type())
    pid = ingest(services, "Plain", {"acc": "a1", "rid": "p0"}).profile_id
    for i in range(3):
        ingest(services, "Reg", {"acc": "a1", "rid": f"r{i}"} | ({"sn": "SN"} if i == 2 else {}))
    assert counts(services, pid) == {"Plain": 1, "Reg": 2, "_asset": 1}
