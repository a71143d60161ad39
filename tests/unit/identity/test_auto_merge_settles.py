"""An automatic merge on write reaches the result of a full rule pass: once the written
profile's group is merged, the survivor's other match groups up to the merging level are
merged too, until none is left (spec §5.1 MaxAllowedRuleLevelForMerging), and a group an undo
kept apart does not stop it. One full pass reaches the same settled result: it merges the
groups its own survivors form. Both databases."""

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


NAME_RULES = [{"Rule": ["EmailAddress"]}, {"Rule": ["FirstName", "LastName"]}]
# A and B share an email address; only their survivor has D's full name.
NAMED = [
    {"FirstName": "John", "EmailAddress": "jd@x.com"},
    {"LastName": "Doe", "EmailAddress": "jd@x.com"},
    {"FirstName": "John", "LastName": "Doe"},
]


def enable_rules(
    services: Services, domain: str, rules: list[dict[str, Any]], merging: int
) -> matching.RebuildResult:
    config = {
        "Enabled": True,
        "MatchingRules": rules,
        "MaxAllowedRuleLevelForMatching": len(rules),
        "MaxAllowedRuleLevelForMerging": merging,
    }
    with services.write() as tx:
        update_domain(tx, domain_name=domain, changes={"RuleBasedMatching": config})
        return matching.rebuild(tx, domain_name=domain)


def create_fields(services: Services, domain: str, fields: dict[str, Any]) -> str:
    with services.write() as tx:
        return profiles.create_profile(tx, domain_name=domain, fields=fields).profile_id


def test_one_full_pass_merges_the_groups_its_survivors_form(services, domain):
    """A and B merge by email; their survivor, John Doe, shares D's full name (level 2), which
    neither did alone. One pass merges all three, as writing them with the rules on does. It
    merged only the groups chosen before its first merge: D was left for a second pass."""
    enable_rules(services, DOMAIN, NAME_RULES, merging=0)
    ids = [create_fields(services, DOMAIN, fields) for fields in NAMED]
    assert len(survivors(services, DOMAIN, ids)) == 3

    result = enable_rules(services, DOMAIN, NAME_RULES, merging=2)

    assert result.merges == 2
    [survivor] = survivors(services, DOMAIN, ids)
    with services.read() as tx:
        assert matching.list_matches(tx, domain_name=DOMAIN)[0] == []
    # The same as writing them with the rules on (D before B: B's merge forms the name).
    other = make_domain(services, "ident2")
    enable_rules(services, other, NAME_RULES, merging=2)
    written = [create_fields(services, other, NAMED[i]) for i in (0, 2, 1)]
    assert len(survivors(services, other, written)) == 1


def test_a_write_merges_its_next_group_when_an_undo_kept_the_first_apart(services, domain):
    """P and Q share an email address (level 1); their automatic merge was undone. P then gets
    R's phone number (level 2): P's own group is still the one with Q, which takes no one, and
    the write goes on to the next, merging R, as a full pass does. It stopped at the first."""
    enable(services, DOMAIN, merging=2)
    p = create_fields(services, DOMAIN, {"FirstName": "P", "EmailAddress": "e@x.com"})
    q = create_fields(services, DOMAIN, {"FirstName": "Q", "EmailAddress": "e@x.com"})
    with services.write() as tx:
        [merge] = identity.list_merges(tx, domain_name=DOMAIN)
        identity.undo_merge(tx, domain_name=DOMAIN, merge_id=merge.merge_id)
    assert survivors(services, DOMAIN, [p, q]) == {p, q}
    r = create_fields(services, DOMAIN, {"FirstName": "R", "PhoneNumber": "+12065550177"})

    with services.write() as tx:
        profiles.update_profile(
            tx, domain_name=DOMAIN, profile_id=p, changes={"PhoneNumber": "+12065550177"}
        )

    # R is merged into P, the written profile; Q stays apart from both.
    assert search(services, "_profileId", r, DOMAIN) == [p]
    assert survivors(services, DOMAIN, [p, q, r]) == {p, q}
    with services.read() as tx:
        standing = [m for m in identity.list_merges(tx, domain_name=DOMAIN) if m.undone_at is None]
    assert [(m.main_profile_id, m.merged_profile_ids) for m in standing] == [(p, (r,))]
