"""Undoing a merge puts back what the profiles held before it, over the size limit if they were
(profiles.size applies to new writes): a pre-merge copy stored before there was a limit is
restored. It never makes a profile larger than the limit, than it is, or than it was before the
merge: such an undo is refused. On real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from tests.unit.profiles.test_profile_size_limit import (
    DOMAIN,
    MAX_PROFILE_BYTES,
    create,
    make_domain,
    plant_oversized,
    profile_size,
    stored,
)

from openprofiles.context import Services
from openprofiles.errors import BadRequest
from openprofiles.identity.service import merge_profiles, undo_merge
from openprofiles.profiles import service


@pytest.fixture
def domain(services: Services) -> str:
    return make_domain(services)


# About 320 KB of attributes: over the limit.
OVERSIZED = {f"k{i}": "v" * 200 for i in range(1500)}


def merge(services: Services, main: str, other: str, sources: dict[str, Any] | None = None) -> str:
    with services.write() as tx:
        return merge_profiles(
            tx, domain_name=DOMAIN, main_profile_id=main, profile_ids=[other], field_sources=sources
        ).merge_id


def undo(services: Services, merge_id: str) -> None:
    with services.write() as tx:
        undo_merge(tx, domain_name=DOMAIN, merge_id=merge_id)


def test_an_undo_restores_a_merged_profile_stored_over_the_limit(services, domain):
    main = create(services, {"FirstName": "Ada", "Attributes": {"k0": "main"}})
    other = create(services, {"LastName": "Lovelace"})
    plant_oversized(services, other, {"LastName": "Lovelace", "Attributes": OVERSIZED})
    # The main profile has every large attribute, short: the merge keeps its values, and the
    # result is small.
    plant_oversized(
        services, main, {"FirstName": "Ada", "Attributes": dict.fromkeys(OVERSIZED, "")}
    )
    merge_id = merge(services, main, other)
    assert profile_size(stored(services, main)) < MAX_PROFILE_BYTES

    undo(services, merge_id)

    back = stored(services, other)
    assert back.fields == {"LastName": "Lovelace", "Attributes": OVERSIZED}
    assert profile_size(back) > MAX_PROFILE_BYTES
    assert stored(services, main).fields["Attributes"] == dict.fromkeys(OVERSIZED, "")


def test_an_undo_restores_a_main_profile_value_that_takes_it_over_the_limit(services, domain):
    main = create(services, {"FirstName": "Ada"})
    plant_oversized(services, main, {"FirstName": "Ada", "Attributes": OVERSIZED})
    other = create(services, {"LastName": "Lovelace", "Attributes": {"k0": "short"}})
    # The merge takes the other profile's value of every large attribute: the result is small.
    small = dict.fromkeys(OVERSIZED, "")
    plant_oversized(services, other, {"LastName": "Lovelace", "Attributes": small})
    merge_id = merge(services, main, other, {"Attributes": dict.fromkeys(OVERSIZED, other)})
    assert profile_size(stored(services, main)) < MAX_PROFILE_BYTES

    undo(services, merge_id)

    restored = stored(services, main)
    assert restored.fields == {"FirstName": "Ada", "Attributes": OVERSIZED}
    assert stored(services, other).fields == {"LastName": "Lovelace", "Attributes": small}


def test_a_write_after_the_undo_is_held_to_the_limit_again(services, domain):
    main = create(services, {"FirstName": "Ada"})
    other = create(services, {"LastName": "Lovelace"})
    plant_oversized(services, other, {"LastName": "Lovelace", "Attributes": OVERSIZED})
    plant_oversized(
        services, main, {"FirstName": "Ada", "Attributes": dict.fromkeys(OVERSIZED, "")}
    )
    undo(services, merge(services, main, other))

    with pytest.raises(BadRequest), services.write() as tx:
        service.update_profile(tx, domain_name=DOMAIN, profile_id=other, changes={"FirstName": "A"})


def attributes(prefix: str) -> dict[str, str]:
    """About 190 KB of attributes: under the limit, but not twice."""
    return {f"{prefix}{i}": "v" * 200 for i in range(900)}


def test_an_undo_that_would_grow_the_main_profile_past_the_limit_is_refused(services, domain):
    # A review: the merge empties the main profile's Attributes (the other profile's values,
    # none, taken for each key), UpdateProfile fills it again with new keys, and the undo put
    # the old keys back beside them: each round added ~190 KB, without bound.
    main = create(services, {"FirstName": "Ada", "Attributes": attributes("a")})
    other = create(services, {"LastName": "L"})
    keys = list(stored(services, main).fields["Attributes"])
    merge_id = merge(services, main, other, {"Attributes": dict.fromkeys(keys, other)})
    fresh = attributes("r_")
    with services.write() as tx:
        service.update_profile(
            tx, domain_name=DOMAIN, profile_id=main, changes={"Attributes": fresh}
        )
    filled = stored(services, main).fields

    refusal = f"Undoing this merge would make the profile {main} "
    with pytest.raises(BadRequest, match=refusal), services.write() as tx:
        undo_merge(tx, domain_name=DOMAIN, merge_id=merge_id)
    # Nothing changed: still merged, the later write whole.
    assert stored(services, main).fields == filled

    # Cut down, it is undone: the old keys back beside what is left of the new ones.
    with services.write() as tx:
        service.update_profile(
            tx,
            domain_name=DOMAIN,
            profile_id=main,
            changes={"Attributes": dict.fromkeys(list(fresh)[10:], "")},
        )
    with services.write() as tx:
        undo_merge(tx, domain_name=DOMAIN, merge_id=merge_id)
    back = stored(services, main)
    assert profile_size(back) <= MAX_PROFILE_BYTES
    assert set(back.fields["Attributes"]) == {*keys, *list(fresh)[:10]}
    assert stored(services, other).fields == {"LastName": "L"}
