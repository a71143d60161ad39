"""The 250 KB limit on a profile's size (profiles.size) on real databases (SQLite and
PostgreSQL): CreateProfile, UpdateProfile and MergeProfiles refuse a profile over it, counted in
UTF-8 bytes of the profile as SearchProfiles returns it, and write nothing; a profile stored over
it before there was a limit may be cut down."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select, update

from openprofiles.context import Principal, RequestContext, Services
from openprofiles.domains.handlers import create_domain
from openprofiles.errors import BadRequest
from openprofiles.identity.service import merge_profiles
from openprofiles.profiles import service
from openprofiles.profiles.models import PROFILE_TABLE, ProfileRecord
from openprofiles.store.schema import profile

DOMAIN = "sized"
# The limit, and the measure of a profile (profiles.size): as SearchProfiles gives it, in UTF-8.
MAX_PROFILE_BYTES = 256_000


def profile_size(record: ProfileRecord) -> int:
    shaped = {"ProfileId": record.profile_id, **record.fields}
    return len(json.dumps(shaped, separators=(",", ":"), ensure_ascii=False).encode())


def make_domain(services: Services) -> str:
    create_domain(
        RequestContext(services=services, principal=Principal("t", "admin")),
        {"DomainName": DOMAIN, "DefaultExpirationDays": 5},
    )
    return DOMAIN


@pytest.fixture
def domain(services: Services) -> str:
    return make_domain(services)


def sized_fields(size: int, key: str = "fill", **fields: Any) -> dict[str, Any]:
    """`fields` with an attribute `key` that makes the profile `size` bytes, mostly of "é" (two
    bytes in UTF-8, one character): a measure in characters would fall short."""
    shaped = {"ProfileId": "0" * 32, **fields, "Attributes": {key: ""}}
    missing = size - len(json.dumps(shaped, separators=(",", ":"), ensure_ascii=False).encode())
    return {**fields, "Attributes": {key: "é" * (missing // 2) + "a" * (missing % 2)}}


def create(services: Services, fields: dict[str, Any]) -> str:
    with services.write() as tx:
        return service.create_profile(tx, domain_name=DOMAIN, fields=fields).profile_id


def stored(services: Services, profile_id: str) -> ProfileRecord:
    with services.read() as tx:
        return service.get_profile(tx, domain_name=DOMAIN, profile_id=profile_id)


def profile_rows(services: Services) -> int:
    with services.read() as tx:
        return int(tx.conn.execute(select(func.count()).select_from(profile)).scalar_one())


def test_a_profile_of_the_limit_is_created_and_one_byte_more_is_refused(services, domain):
    at_limit = create(services, sized_fields(MAX_PROFILE_BYTES, FirstName="Ada"))
    assert profile_size(stored(services, at_limit)) == MAX_PROFILE_BYTES == 256_000
    with pytest.raises(BadRequest) as refused:
        create(services, sized_fields(MAX_PROFILE_BYTES + 1, FirstName="Ada"))
    assert refused.value.code == "BadRequestException"
    assert "256001 bytes" in refused.value.message
    assert "limit of 256000 bytes (250 KB)" in refused.value.message
    assert profile_rows(services) == 1


def test_an_update_over_the_limit_is_refused_and_changes_nothing(services, domain):
    pid = create(services, {"FirstName": "Ada", "Attributes": {"Tier": "gold"}})
    before = stored(services, pid)
    big = sized_fields(MAX_PROFILE_BYTES + 1, key="Notes", FirstName="Ada")["Attributes"]
    with pytest.raises(BadRequest), services.write() as tx:
        service.update_profile(tx, domain_name=DOMAIN, profile_id=pid, changes={"Attributes": big})
    after = stored(services, pid)
    assert (after.fields, after.version) == (before.fields, before.version)
    # Clearing the attribute again leaves room: an update within the limit is written.
    with services.write() as tx:
        service.update_profile(
            tx, domain_name=DOMAIN, profile_id=pid, changes={"Attributes": {"Notes": "short"}}
        )
    assert stored(services, pid).fields["Attributes"] == {"Tier": "gold", "Notes": "short"}


def test_a_merge_whose_result_is_over_the_limit_is_refused(services, domain):
    main = create(services, sized_fields(MAX_PROFILE_BYTES * 6 // 10, key="a", FirstName="A"))
    other = create(services, sized_fields(MAX_PROFILE_BYTES * 6 // 10, key="b", LastName="B"))
    main_before, other_before = stored(services, main), stored(services, other)
    with pytest.raises(BadRequest) as refused, services.write() as tx:
        merge_profiles(tx, domain_name=DOMAIN, main_profile_id=main, profile_ids=[other])
    assert "limit of 256000 bytes" in refused.value.message
    # Both still live, as they were: nothing of the merge was written.
    assert stored(services, main).fields == main_before.fields
    assert stored(services, other).fields == other_before.fields
    assert stored(services, other).profile_id == other
    # A merge that takes the main profile's own value for the large attribute fits.
    small = create(services, {"LastName": "C", "Attributes": {"a": "x"}})
    with services.write() as tx:
        merge_profiles(tx, domain_name=DOMAIN, main_profile_id=main, profile_ids=[small])
    assert stored(services, main).fields["LastName"] == "C"


def plant_oversized(services: Services, profile_id: str, fields: dict[str, Any]) -> None:
    """Store `fields` as the profile's, whatever their size: a profile written before there
    was a limit."""
    with services.write() as tx:
        record = service.get_profile(tx, domain_name=DOMAIN, profile_id=profile_id)
        record.fields = fields
        sealed = tx.cipher(DOMAIN).seal_record(PROFILE_TABLE, profile_id, record.sealed_payload())
        tx.conn.execute(
            update(profile)
            .where(profile.c.domain_name == DOMAIN, profile.c.profile_id == profile_id)
            .values(sealed=sealed)
        )


def test_a_profile_stored_over_the_limit_may_shrink_but_not_grow(services, domain):
    pid = create(services, {"FirstName": "Ada"})
    big = {f"k{i}": "v" * 200 for i in range(1500)}  # about 320 KB
    plant_oversized(services, pid, {"FirstName": "Ada", "Attributes": big})
    with pytest.raises(BadRequest), services.write() as tx:
        service.update_profile(tx, domain_name=DOMAIN, profile_id=pid, changes={"LastName": "L"})
    # Cutting it down, though not yet under the limit, is written.
    with services.write() as tx:
        service.update_profile(
            tx, domain_name=DOMAIN, profile_id=pid, changes={"Attributes": {"k0": "", "k1": ""}}
        )
    after = stored(services, pid)
    assert len(after.fields["Attributes"]) == 1498
    assert profile_size(after) > MAX_PROFILE_BYTES


def test_the_measure_is_the_wire_json_and_the_sealed_blob_bounds_it() -> None:
    """profiles.size measures with the sealed payload's encoder (json_codec, orjson), which
    must write a profile's text as json.dumps does (the measure above), and the blob sealed by
    it must stay a bound of the size (`size_bound`, what spares the exact measure)."""
    import os
    from datetime import UTC, datetime

    from openprofiles.crypto.domain_keys import DomainCipher
    from openprofiles.profiles import size

    text = 'quote " back \\ tab \t nul \x00 del \x7f sep \u2028 é 李 😀 /'
    now = datetime.now(UTC)
    record = ProfileRecord(
        profile_id="1" * 32,
        fields={"FirstName": text, "Address": {"City": text}, "Attributes": {"k": text}},
        version=1,
        created_at=now,
        updated_at=now,
    )
    assert size.profile_size(record) == profile_size(record)
    sealed = DomainCipher(os.urandom(32), DOMAIN).seal_record(
        PROFILE_TABLE, record.profile_id, record.sealed_payload()
    )
    assert size.size_bound(record, len(sealed)) >= size.profile_size(record)
