"""Ingestion and the 250 KB limit on a profile's size (profiles.size, ingest.size), on both
backends: a record whose `_profile` fields would take its profile over the limit is rejected
(category invalid_value, the limit and the size in its reason) and writes nothing, in a batch
(the batched path) as on its own and with standard objects (the path applied in a savepoint);
the records around it apply. A profile stored over the limit before there was one takes a
record that does not grow it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select, update

from openprofiles.context import Services
from openprofiles.ingest.pipeline import IngestRejected, IngestResult, ingest_batch
from openprofiles.objects.service import list_profile_objects
from openprofiles.profiles.models import PROFILE_TABLE
from openprofiles.profiles.service import create_profile, get_profile
from openprofiles.store.schema import profile, profile_object

from .conftest import DOMAIN, crm_type, ingest, put_type
from .test_ingest_pipeline import asset_type

EMAIL = "ada@example.com"
# The limit, and the measure of a profile (profiles.size): as SearchProfiles gives it, in UTF-8.
MAX_PROFILE_BYTES = 256_000


def profile_size(profile_id: str, fields: dict[str, Any]) -> int:
    shaped = {"ProfileId": profile_id, **fields}
    return len(json.dumps(shaped, separators=(",", ":"), ensure_ascii=False).encode())


def notes_type(**overrides: Any) -> dict[str, Any]:
    definition = crm_type(**overrides)
    definition["Fields"] = {
        **definition["Fields"],
        "a": {"Source": "_source.a", "Target": "_profile.Attributes.A"},
        "b": {"Source": "_source.b", "Target": "_profile.Attributes.B"},
    }
    return definition


def asset_notes_type() -> dict[str, Any]:
    definition = asset_type()
    definition["Fields"]["note"] = {"Source": "_source.note", "Target": "_profile.Attributes.Note"}
    return definition


def profile_of_size(services: Services, size: int) -> str:
    """A profile with the email EMAIL, made `size` bytes by its attribute Big."""
    fields: dict[str, Any] = {"EmailAddress": EMAIL, "Attributes": {"Big": ""}}
    missing = size - profile_size("0" * 32, fields)
    fields["Attributes"]["Big"] = "b" * missing
    with services.write() as tx:
        return create_profile(tx, domain_name=DOMAIN, fields=fields).profile_id


def fields_of(services: Services, profile_id: str) -> dict[str, Any]:
    with services.read() as tx:
        return get_profile(tx, domain_name=DOMAIN, profile_id=profile_id).fields


def run(services: Services, type_name: str, objs: list[dict[str, Any]]) -> list[Any]:
    with services.write() as tx:
        return ingest_batch(
            tx,
            domain_name=DOMAIN,
            object_type_name=type_name,
            records=[(o, json.dumps(o)) for o in objs],
        )


def stored_ids(services: Services, type_name: str, profile_id: str) -> list[str]:
    with services.read() as tx:
        items, _ = list_profile_objects(
            tx, domain_name=DOMAIN, object_type_name=type_name, profile_id=profile_id, limit=100
        )
    return sorted(json.loads(item.object_json)["id"] for item in items)


def count(services: Services, table: Any) -> int:
    with services.read() as tx:
        return int(tx.conn.execute(select(func.count()).select_from(table)).scalar() or 0)


def assert_too_large(outcome: Any, profile_id: str | None) -> None:
    assert isinstance(outcome, IngestRejected)
    assert outcome.category == "invalid_value"
    assert f"over the limit of {MAX_PROFILE_BYTES} bytes (250 KB)" in outcome.reason
    assert ("a new profile" if profile_id is None else profile_id) in outcome.reason


def wide_type() -> dict[str, Any]:
    """The most fields a type may have (250): an id, an email and 248 attributes."""
    definition = crm_type()
    definition["Fields"] = {
        "id": definition["Fields"]["id"],
        "email": definition["Fields"]["email"],
        **{
            f"f{i}": {"Source": f"_source.f{i}", "Target": f"_profile.Attributes.F{i}"}
            for i in range(248)
        },
    }
    return definition


# The longest value a profile field takes (255 characters) at its longest in JSON: a control
# character is six bytes ("\u0001"). 248 of them make a record no new profile can hold.
WIDEST = "\x01" * 255


def test_a_batch_rejects_the_record_that_would_overfill_its_profile(services, domain):
    put_type(services, "Notes", notes_type())
    pid = profile_of_size(services, MAX_PROFILE_BYTES - 400)
    outcomes = run(
        services,
        "Notes",
        [
            {"id": "c1", "email": EMAIL, "a": "x" * 200},
            {"id": "c2", "email": EMAIL, "b": "y" * 255},
            {"id": "c3", "email": EMAIL, "tier": "gold"},
        ],
    )
    assert [type(o) for o in outcomes] == [IngestResult, IngestRejected, IngestResult]
    assert_too_large(outcomes[1], pid)
    size = int(outcomes[1].reason.split(" to ")[1].split(" bytes")[0])
    assert size == MAX_PROFILE_BYTES - 400 + len(',"A":""') + 200 + len(',"B":""') + 255
    attributes = fields_of(services, pid)["Attributes"]
    assert sorted(attributes) == ["A", "Big", "Tier"]
    assert stored_ids(services, "Notes", pid) == ["c1", "c3"]


def test_a_profile_at_the_limit_takes_records_that_do_not_grow_it(services, domain):
    put_type(services, "Notes", notes_type())
    pid = profile_of_size(services, MAX_PROFILE_BYTES)
    # The email is the profile's own (set by a person): nothing to write, nothing refused.
    assert ingest(services, "Notes", {"id": "c1", "email": EMAIL}).profile_id == pid
    outcomes = run(services, "Notes", [{"id": "c2", "email": EMAIL, "a": "1"}])
    assert_too_large(outcomes[0], pid)
    with pytest.raises(IngestRejected):
        ingest(services, "Notes", {"id": "c3", "email": EMAIL, "a": "1"})
    assert "A" not in fields_of(services, pid)["Attributes"]
    assert stored_ids(services, "Notes", pid) == ["c1"]


def test_a_record_too_large_for_a_new_profile_creates_none(services, domain):
    put_type(services, "Wide", wide_type())
    widest = {f"f{i}": WIDEST for i in range(248)}
    outcomes = run(
        services,
        "Wide",
        [
            {"id": "c1", "email": "big@example.com", **widest},
            {"id": "c2", "email": "small@example.com", "f0": "x"},
        ],
    )
    assert_too_large(outcomes[0], None)
    assert isinstance(outcomes[1], IngestResult)
    assert count(services, profile) == 1
    assert count(services, profile_object) == 1


def test_the_savepoint_path_rejects_and_writes_nothing(services, domain):
    # A record writing a standard object (_asset) is applied on its own, in a savepoint.
    put_type(services, "Registrations", asset_notes_type())
    pid = profile_of_size(services, MAX_PROFILE_BYTES - 100)
    outcomes = run(
        services,
        "Registrations",
        [
            {"serial": "S1", "email": EMAIL, "name": "Drill", "note": "n" * 200},
            {"serial": "S2", "email": EMAIL, "name": "Saw", "note": "short"},
        ],
    )
    assert_too_large(outcomes[0], pid)
    assert isinstance(outcomes[1], IngestResult) and outcomes[1].profile_id == pid
    assert fields_of(services, pid)["Attributes"]["Note"] == "short"
    # Only S2's record and its asset.
    assert count(services, profile_object) == 2


def test_a_profile_stored_over_the_limit_takes_records_that_shrink_it(services, domain):
    put_type(services, "Notes", notes_type())
    pid = profile_of_size(services, 1000)
    fields = fields_of(services, pid)
    fields["Attributes"] = {"A": "a" * 200, **{f"k{i}": "v" * 200 for i in range(1500)}}
    with services.write() as tx:  # stored before there was a limit
        record = get_profile(tx, domain_name=DOMAIN, profile_id=pid)
        record.fields = fields
        sealed = tx.cipher(DOMAIN).seal_record(PROFILE_TABLE, pid, record.sealed_payload())
        tx.conn.execute(
            update(profile)
            .where(profile.c.domain_name == DOMAIN, profile.c.profile_id == pid)
            .values(sealed=sealed)
        )
    outcomes = run(
        services,
        "Notes",
        [{"id": "c1", "email": EMAIL, "a": "short"}, {"id": "c2", "email": EMAIL, "b": "x"}],
    )
    assert isinstance(outcomes[0], IngestResult)
    assert_too_large(outcomes[1], pid)
    attributes = fields_of(services, pid)["Attributes"]
    assert (attributes["A"], "B" in attributes) == ("short", False)
