"""An automatic merge on write reaches the result of a full rule pass: once the written
profile's group is merged, the survivor's other match groups up to the merging level are
merged too, until none is left (spec §5.1 MaxAllowedRuleLevelForMerging). Both databases."""

from __future__ import annotations

from typing import Any

from openprofiles.context import Services
from openprofiles.domains.service import update_domain
from openprofiles.identity import matching
from openprofiles.identity import service as identity
from openprofiles.profiles import service as profiles

from .conftest import DOMAIN, make_domain, search

RULES = [{"Rule": ["EmailAddress"]}, {"Rule": ["PhoneNumber"]}]
PROFILES = [
    ("P1", "a@x.com", "+12065550001"),
    ("P2", "b@x.com", "+12065550002"),
    ("P3", "a@x.com", "+12065550002"),
]


def enable(services: Services, domain: str, merging: int) -> None:
    config = {
        "Enabled": True,
        "MatchingRules": RULES,
        "MaxAllowedRuleLevelForMatching": 2,
        "MaxAllowedRuleLevelForMerging": merging,
    }
    with services.write() as tx:
        update_domain(tx, domain_name=domain, changes={"RuleBasedMatching": config})
        matching.rebuild(tx, domain_name=domain)


def create(services: Services, domain: str, first: str, email: str, phone: str) -> str:
    fields: dict[str, Any] = {"FirstName": first, "EmailAddress": email, "PhoneNumber": phone}
    with services.write() as tx:
        return profiles.create_profile(tx, domain_name=domain, fields=fields).profile_id


def survivors(services: Services, domain: str, ids: list[str]) -> set[str]:
    return {found for pid in ids for found in search(services, "_profileId", pid, domain)}


def test_the_survivor_of_an_automatic_merge_is_merged_with_its_next_group(services, domain):
    enable(services, DOMAIN, merging=2)
    ids = [create(services, DOMAIN, *p) for p in PROFILES]

    # P3 joins P1 (email, level 1); the survivor shares P2's phone (level 2): one customer.
    assert survivors(services, DOMAIN, ids) == {ids[2]}
    with services.read() as tx:
        assert matching.list_matches(tx, domain_name=DOMAIN)[0] == []
        merges = identity.list_merges(tx, domain_name=DOMAIN)
    assert len(merges) == 2 and {m.main_profile_id for m in merges} == {ids[2]}

    # The same as a full pass over the same profiles written with merging off.
    other = make_domain(services, "ident2")
    enable(services, other, merging=0)
    more = [create(services, other, *p) for p in PROFILES]
    assert len(survivors(services, other, more)) == 3
    enable(services, other, merging=2)
    assert len(survivors(services, other, more)) == 1


def test_groups_above_the_merging_level_are_left_to_match(services, domain):
    enable(services, DOMAIN, merging=1)
    ids = [create(services, DOMAIN, *p) for p in PROFILES]

    assert survivors(services, DOMAIN, ids) == {ids[1], ids[2]}
    with services.read() as tx:
        [group] = matching.list_matches(tx, domain_name=DOMAIN)[0]
        match = matching.get_match(tx, domain_name=DOMAIN, match_id=group)
    assert match.level == 2 and set(match.profile_ids) == {ids[1], ids[2]}
