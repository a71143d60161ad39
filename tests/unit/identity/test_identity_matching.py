"""Rule-based matching on real databases (SQLite and PostgreSQL), spec §5.1: the worked example
under ONE_TO_ONE and MANY_TO_MANY, levels and MaxAllowedRuleLevelForMatching, the
low-cardinality guard, incremental maintenance in the write's transaction, the full pass when
rules change, auto-merge with RECENCY and SOURCE keeping manual fields, and undoing an
automatic merge."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select

from openprofiles.app import build_services
from openprofiles.context import Services
from openprofiles.dlq import service as dlq
from openprofiles.domains.service import update_domain
from openprofiles.errors import BadRequest, NotFound
from openprofiles.identity import matching
from openprofiles.identity import service as identity
from openprofiles.profiles import service as profiles
from openprofiles.profiles.models import ProfileRecord
from openprofiles.store.schema import rule_match_digest

from .conftest import DOMAIN, fields_of, ingest, make_domain, new_profile

EXAMPLE_RULES = [{"Rule": ["EmailAddress", "LastName", "FirstName"]}, {"Rule": ["AccountNumber"]}]


def enable(services: Services, **overrides: Any) -> matching.RebuildResult:
    config = {
        "Enabled": True,
        "MatchingRules": EXAMPLE_RULES,
        "AttributeTypesSelector": {
            "AttributeMatchingModel": "ONE_TO_ONE",
            "EmailAddress": ["EmailAddress", "BusinessEmailAddress"],
        },
        **overrides,
    }
    with services.write() as tx:
        update_domain(tx, domain_name=DOMAIN, changes={"RuleBasedMatching": config})
        return matching.rebuild(tx, domain_name=DOMAIN)


def match_of(services: Services, profile_id: str) -> matching.RuleMatch | None:
    with services.read() as tx:
        return matching.profile_match(tx, domain_name=DOMAIN, profile_id=profile_id)


def match_ids(services: Services) -> list[str]:
    with services.read() as tx:
        return matching.list_matches(tx, domain_name=DOMAIN)[0]


def create(services: Services, manual: bool = True, **fields: Any) -> str:
    with services.write() as tx:
        return profiles.create_profile(
            tx, domain_name=DOMAIN, fields=fields, manual=manual
        ).profile_id


PROFILE_A = {
    "EmailAddress": "1@email.com",
    "BusinessEmailAddress": "john@company.com",
    "LastName": "Doe",
    "FirstName": "John",
}


# ---------------------------------------------------------------------------- the worked example


def test_one_to_one_matches_the_same_sub_type(services, domain):
    enable(services)
    a = new_profile(services, **PROFILE_A)
    b = new_profile(
        services,
        EmailAddress="2@email.com",
        BusinessEmailAddress="JOHN@company.com",
        LastName="doe",
        FirstName=" John ",
    )
    found = match_of(services, a)
    assert found is not None
    assert found.level == 1
    assert found.profile_ids == tuple(sorted([a, b]))
    assert found.attributes == ("EmailAddress", "LastName", "FirstName")
    assert match_ids(services) == [found.match_id]


def test_one_to_one_does_not_compare_across_sub_types(services, domain):
    enable(services)
    a = new_profile(services, **PROFILE_A)
    new_profile(
        services,
        EmailAddress="2@email.com",
        BusinessEmailAddress="1@email.com",
        LastName="Doe",
        FirstName="John",
    )
    assert match_of(services, a) is None
    assert match_ids(services) == []


def test_many_to_many_compares_across_sub_types(services, domain):
    enable(
        services,
        AttributeTypesSelector={
            "AttributeMatchingModel": "MANY_TO_MANY",
            "EmailAddress": ["EmailAddress", "BusinessEmailAddress"],
        },
    )
    a = new_profile(services, **PROFILE_A)
    b = new_profile(
        services,
        EmailAddress="2@email.com",
        BusinessEmailAddress="1@email.com",
        LastName="Doe",
        FirstName="John",
    )
    found = match_of(services, b)
    assert found is not None and found.level == 1
    assert set(found.profile_ids) == {a, b}


def test_an_unselected_sub_type_is_ignored(services, domain):
    enable(services, AttributeTypesSelector={"AttributeMatchingModel": "MANY_TO_MANY"})
    a = new_profile(services, **PROFILE_A)
    new_profile(
        services,
        EmailAddress="2@email.com",
        BusinessEmailAddress="john@company.com",
        LastName="Doe",
        FirstName="John",
    )
    assert match_of(services, a) is None


# ---------------------------------------------------------------------------- levels


def test_the_lowest_matching_level_wins(services, domain):
    enable(services)
    a = new_profile(services, **PROFILE_A, AccountNumber="account1234")
    b = new_profile(services, EmailAddress="9@email.com", AccountNumber="ACCOUNT1234")
    found = match_of(services, a)
    assert found is not None and found.level == 2
    assert found.attributes == ("AccountNumber",)
    c = new_profile(services, **PROFILE_A)
    found = match_of(services, a)
    assert found is not None and found.level == 1
    assert set(found.profile_ids) == {a, c}
    # b only shares the account: its group is level 2 with a.
    b_match = match_of(services, b)
    assert b_match is not None and b_match.level == 2
    assert len(match_ids(services)) == 2


def test_max_allowed_rule_level_for_matching(services, domain):
    enable(services, MaxAllowedRuleLevelForMatching=1)
    a = new_profile(services, AccountNumber="account1234")
    new_profile(services, AccountNumber="account1234")
    assert match_of(services, a) is None
    with services.read() as tx:
        levels = {r.level for r in tx.conn.execute(select(rule_match_digest.c.level))}
    assert 2 not in levels


def test_address_parts_come_from_one_address(services, domain):
    enable(
        services,
        MatchingRules=[{"Rule": ["Address.City", "Address.Country"]}],
        AttributeTypesSelector={
            "AttributeMatchingModel": "MANY_TO_MANY",
            "Address": ["Address", "ShippingAddress"],
        },
    )
    a = new_profile(services, Address={"City": "Lyon", "Country": "FR"})
    b = new_profile(services, ShippingAddress={"City": "LYON ", "Country": "fr"})
    new_profile(services, Address={"City": "Lyon"}, ShippingAddress={"Country": "FR"})
    found = match_of(services, a)
    assert found is not None and set(found.profile_ids) == {a, b}


def test_custom_attributes(services, domain):
    enable(services, MatchingRules=[{"Rule": ["Attributes.loyalty"]}])
    a = new_profile(services, Attributes={"loyalty": "G-1"})
    b = new_profile(services, Attributes={"loyalty": "g-1"})
    found = match_of(services, a)
    assert found is not None and set(found.profile_ids) == {a, b}


def test_digests_hold_no_values_in_clear(services, domain):
    enable(services, MatchingRules=[{"Rule": ["EmailAddress"]}])
    new_profile(services, EmailAddress="secret@example.com")
    with services.read() as tx:
        rows = list(tx.conn.execute(select(rule_match_digest)))
    assert rows
    assert all(b"secret" not in bytes(r.digest) and len(bytes(r.digest)) == 16 for r in rows)


# ---------------------------------------------------------------------------- the guard


def test_low_cardinality_guard_skips_the_group_and_dead_letters_once(services, domain):
    enable(services, MatchingRules=[{"Rule": ["LastName"]}, {"Rule": ["EmailAddress"]}])
    with services.write() as tx:
        ids = [
            profiles.create_profile(
                tx, domain_name=DOMAIN, fields={"LastName": "Smith", "EmailAddress": f"{i}@x.com"}
            ).profile_id
            for i in range(matching.GUARD_LIMIT + 2)
        ]
        profiles.create_profile(
            tx, domain_name=DOMAIN, fields={"LastName": "Smith", "EmailAddress": "0@x.com"}
        )
    with services.read() as tx:
        letters = dlq.list_messages(tx, domain_name=DOMAIN)
    assert [m.reason for m in letters] == [
        "All attributes at rule level 1 are associated with more than 500 records."
    ]
    found = match_of(services, ids[0])
    assert found is not None and found.level == 2
    assert len(match_ids(services)) == 1
    # The full pass says it once per level too.
    result = enable(services, MatchingRules=[{"Rule": ["LastName"]}, {"Rule": ["EmailAddress"]}])
    assert result.guarded_levels == (1,)
    with services.read() as tx:
        assert dlq.count(tx, domain_name=DOMAIN) == 2


# ---------------------------------------------------------------------------- maintenance


def test_matches_follow_writes_in_the_same_transaction(services, domain):
    enable(services, MatchingRules=[{"Rule": ["EmailAddress"]}])
    with services.write() as tx:
        a = profiles.create_profile(tx, domain_name=DOMAIN, fields={"EmailAddress": "a@x.com"})
        b = profiles.create_profile(tx, domain_name=DOMAIN, fields={"EmailAddress": "A@X.com"})
        found = matching.profile_match(tx, domain_name=DOMAIN, profile_id=a.profile_id)
        assert found is not None
        assert set(found.profile_ids) == {a.profile_id, b.profile_id}
        profiles.update_profile(
            tx,
            domain_name=DOMAIN,
            profile_id=b.profile_id,
            changes={"EmailAddress": "b@x.com"},
        )
        assert matching.profile_match(tx, domain_name=DOMAIN, profile_id=a.profile_id) is None


def test_ingestion_updates_matches(services, domain):
    enable(services, MatchingRules=[{"Rule": ["EmailAddress"]}])
    a = new_profile(services, EmailAddress="crm@x.com")
    created = ingest(services, {"id": "c1", "email": "other@x.com"})
    assert match_of(services, a) is None
    with services.write() as tx:
        profiles.update_profile(
            tx,
            domain_name=DOMAIN,
            profile_id=created.profile_id,
            changes={"EmailAddress": "crm@x.com"},
        )
    found = match_of(services, a)
    assert found is not None and set(found.profile_ids) == {a, created.profile_id}


def test_deleted_profiles_leave_their_groups(services, domain):
    enable(services, MatchingRules=[{"Rule": ["EmailAddress"]}])
    a = new_profile(services, EmailAddress="a@x.com")
    b = new_profile(services, EmailAddress="a@x.com")
    with services.write() as tx:
        profiles.delete_profile(tx, domain_name=DOMAIN, profile_id=b)
    assert match_of(services, a) is None


def test_full_pass_when_rules_change(services, domain):
    a = new_profile(services, EmailAddress="a@x.com", FirstName="Ann")
    b = new_profile(services, EmailAddress="a@x.com", FirstName="Bob")
    with services.read() as tx, pytest.raises(BadRequest, match="not enabled"):
        matching.list_matches(tx, domain_name=DOMAIN)
    result = enable(services, MatchingRules=[{"Rule": ["EmailAddress"]}])
    assert result.profiles == 2
    found = match_of(services, a)
    assert found is not None and set(found.profile_ids) == {a, b}
    with services.read() as tx:
        from openprofiles.domains.service import get_domain

        assert get_domain(tx, domain_name=DOMAIN).config["RuleBasedMatching"]["Status"] == "ACTIVE"
    enable(services, MatchingRules=[{"Rule": ["EmailAddress", "FirstName"]}])
    assert match_ids(services) == []
    result = enable(services, Enabled=False)
    assert result.digests == 0
    with services.read() as tx:
        assert list(tx.conn.execute(select(rule_match_digest))) == []


@pytest.mark.parametrize(
    "selector",
    [
        {"AttributeMatchingModel": "ONE_TO_ONE"},
        # Several pairs of one level per profile (each email with each phone).
        {
            "AttributeMatchingModel": "MANY_TO_MANY",
            "EmailAddress": ["EmailAddress", "BusinessEmailAddress"],
            "PhoneNumber": ["PhoneNumber", "MobilePhoneNumber"],
        },
    ],
)
def test_full_pass_in_worker_processes_stores_what_writes_store(
    services, domain, monkeypatch, selector
):
    """A large domain's full pass digests in worker processes (identity.rule_pass) and stages
    packed rows that the database unpacks (rule_store.BulkLoad): what it stores is what each
    profile's own write stored, and the groups are the same."""
    from dataclasses import replace

    from openprofiles.identity import rule_pass
    from openprofiles.store.schema import rule_match_profile

    enable(
        services,
        MatchingRules=[{"Rule": ["EmailAddress", "LastName"]}, {"Rule": ["PhoneNumber"]}],
        AttributeTypesSelector=selector,
    )
    rng = random.Random(7)
    for i in range(60):
        new_profile(
            services,
            EmailAddress=f"p{rng.randrange(20)}@x.com",
            BusinessEmailAddress=f"b{rng.randrange(20)}@x.com",
            LastName=rng.choice(["Doe", "Roe"]),
            PhoneNumber=f"+1 206 555 {rng.randrange(30):04d}",
            MobilePhoneNumber=f"(425) 555-{rng.randrange(30):04d}",
            FirstName=f"n{i}",
        )

    def stored() -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]], list[str]]:
        with services.read() as tx:
            digests = {tuple(r) for r in tx.conn.execute(select(rule_match_digest))}
            packed = {tuple(r) for r in tx.conn.execute(select(rule_match_profile))}
        return digests, packed, match_ids(services)

    written = stored()
    assert written[2], "the population has matches"
    if selector["AttributeMatchingModel"] == "MANY_TO_MANY":
        assert len(written[0]) >= 4 * 60, "several pairs per profile at a level"
    monkeypatch.setattr(rule_pass, "PARALLEL_FROM", 0)
    parallel = build_services(replace(services.settings, rule_pass_processes=2))
    try:
        with parallel.write() as tx:
            result = matching.rebuild(tx, domain_name=DOMAIN)
    finally:
        parallel.database.dispose()
    assert result.profiles == 60
    assert result.digests == len(written[0])
    assert stored() == written


def test_get_match_and_similar_profiles(services, domain):
    enable(services, MatchingRules=[{"Rule": ["EmailAddress"]}])
    a = new_profile(services, EmailAddress="a@x.com")
    b = new_profile(services, EmailAddress="a@x.com")
    lonely = new_profile(services, EmailAddress="z@x.com")
    [mid] = match_ids(services)
    with services.read() as tx:
        got = matching.get_match(tx, domain_name=DOMAIN, match_id=mid)
        assert set(got.profile_ids) == {a, b} and got.level == 1
        similar = matching.similar_profiles(
            tx, domain_name=DOMAIN, search_key="_email", search_value="A@x.com"
        )
        assert similar is not None and similar.match_id == mid
        assert (
            matching.similar_profiles(
                tx, domain_name=DOMAIN, search_key="_profileId", search_value=lonely
            )
            is None
        )
        with pytest.raises(NotFound):
            matching.similar_profiles(
                tx, domain_name=DOMAIN, search_key="_email", search_value="nobody@x.com"
            )
        with pytest.raises(NotFound):
            matching.get_match(tx, domain_name=DOMAIN, match_id="01" + "00" * 16)
        with pytest.raises(BadRequest):
            matching.get_match(tx, domain_name=DOMAIN, match_id="nonsense")


def test_similar_profiles_looks_past_the_first_page_of_what_the_key_finds(
    services, domain, monkeypatch
):
    """Only the first 100 profiles a key found were looked at: a group among the others was
    answered as none."""
    monkeypatch.setattr(matching, "SIMILAR_PAGE", 2)
    enable(services, MatchingRules=[{"Rule": ["EmailAddress"]}])
    ids = sorted(
        new_profile(services, PhoneNumber="+12065550100", EmailAddress=f"p{n}@x.com")
        for n in range(6)
    )
    # The two last in profile-id order share an email: a group, beyond the first page.
    for pid in ids[-2:]:
        with services.write() as tx:
            profiles.update_profile(
                tx, domain_name=DOMAIN, profile_id=pid, changes={"EmailAddress": "pair@x.com"}
            )
    [mid] = match_ids(services)
    with services.read() as tx:
        similar = matching.similar_profiles(
            tx, domain_name=DOMAIN, search_key="_phone", search_value="+12065550100"
        )
    assert similar is not None and similar.match_id == mid
    assert set(similar.profile_ids) == set(ids[-2:])
    # At most SIMILAR_SCAN_LIMIT profiles are looked at: a key shared by very many costs no
    # more (the group, after the first four, is then not seen).
    monkeypatch.setattr(matching, "SIMILAR_SCAN_LIMIT", 4)
    with services.read() as tx:
        assert (
            matching.similar_profiles(
                tx, domain_name=DOMAIN, search_key="_phone", search_value="+12065550100"
            )
            is None
        )


# ---------------------------------------------------------------------------- auto-merge


def _record(pid: str, fields: dict[str, Any], age: int, **extra: Any) -> ProfileRecord:
    when = datetime(2026, 1, 1, tzinfo=UTC) - timedelta(days=age)
    return ProfileRecord(pid, fields, 1, when, when, **extra)


def test_resolve_conflicts_recency_source_and_manual():
    old = _record(
        "old",
        {"FirstName": "Old", "LastName": "Keep", "Attributes": {"t": "1"}},
        age=5,
        field_sources={"FirstName": {"type": "Crm"}},
    )
    new = _record("new", {"FirstName": "New", "Attributes": {"t": "2"}}, age=1)
    rules = matching.rule_config(
        {"RuleBasedMatching": {"Enabled": True, "MatchingRules": [{"Rule": ["FirstName"]}]}}
    )
    assert rules is not None
    assert matching.resolve_conflicts([old, new], "old", rules) == {
        "FirstName": "new",
        "Attributes": {"t": "new"},
    }
    source = matching.rule_config(
        {
            "RuleBasedMatching": {
                "Enabled": True,
                "MatchingRules": [{"Rule": ["FirstName"]}],
                "ConflictResolution": {"ConflictResolvingModel": "SOURCE", "SourceName": "Crm"},
            }
        }
    )
    assert source is not None
    assert matching.resolve_conflicts([old, new], "new", source) == {
        "FirstName": "old",
        "LastName": "old",
    }
    old.manual_fields = {"Attributes.t"}
    assert matching.resolve_conflicts([old, new], "old", rules) == {"FirstName": "new"}


def test_resolve_conflicts_decides_gender_and_party_type_each_as_one_field():
    """A gender (party type) is held in the enum field or its free-text twin: the pair is one
    value, so the newest profile's pair wins under RECENCY, whichever of the two holds it. It
    was decided field by field: the older profile, the only one with GenderString, won that
    field, and the merge, which takes a pair from the profile named for either member, took
    its pair over the main profile's own Gender."""
    old = _record("old", {"GenderString": "nonbinary", "PartyTypeString": "trust"}, age=5)
    new = _record("new", {"Gender": "MALE", "PartyType": "INDIVIDUAL"}, age=1)
    rules = matching.rule_config(
        {"RuleBasedMatching": {"Enabled": True, "MatchingRules": [{"Rule": ["EmailAddress"]}]}}
    )
    assert rules is not None
    # The newest is the main profile: it keeps its own pairs.
    assert matching.resolve_conflicts([new, old], "new", rules) == {}
    # The oldest is: both pairs come from the newest, named by the enum field.
    assert matching.resolve_conflicts([old, new], "old", rules) == {
        "Gender": "new",
        "PartyType": "new",
    }
    # A value a person set wins over recency, for the pair as well.
    old.manual_fields = {"GenderString"}
    assert matching.resolve_conflicts([new, old], "new", rules) == {"Gender": "old"}


def test_auto_merge_keeps_the_newest_gender_and_party_type_pair(services, domain):
    enable(services, MatchingRules=[{"Rule": ["EmailAddress"]}], MaxAllowedRuleLevelForMerging=1)
    older = create(
        services,
        FirstName="Old",
        GenderString="nonbinary",
        PartyTypeString="trust",
        EmailAddress="g@x.com",
    )
    newer = create(
        services, FirstName="New", Gender="MALE", PartyType="INDIVIDUAL", EmailAddress="g@x.com"
    )
    # The newer profile, written last, is the main profile: its pairs are the newest.
    assert fields_of(services, newer) == {
        "FirstName": "New",
        "Gender": "MALE",
        "PartyType": "INDIVIDUAL",
        "EmailAddress": "g@x.com",
    }
    assert fields_of(services, older) == fields_of(services, newer)  # resolves to the survivor


def test_auto_merge_on_write_with_recency_keeps_manual_fields(services, domain):
    enable(services, MatchingRules=[{"Rule": ["EmailAddress"]}], MaxAllowedRuleLevelForMerging=1)
    a = create(services, EmailAddress="a@x.com", FirstName="Ann", LastName="Lee")
    b = create(services, manual=False, EmailAddress="a@x.com", FirstName="Annie", BirthDate="1990")
    # b was written last, so it is the main profile; a's manual FirstName wins over recency.
    assert fields_of(services, b) == {
        "EmailAddress": "a@x.com",
        "FirstName": "Ann",
        "LastName": "Lee",
        "BirthDate": "1990",
    }
    assert fields_of(services, a) == fields_of(services, b)  # a resolves to b
    with services.read() as tx:
        [merge] = identity.list_merges(tx, domain_name=DOMAIN)
    assert merge.main_profile_id == b and merge.merged_profile_ids == (a,)
    assert match_ids(services) == []


def test_auto_merge_recency_takes_the_newest_value(services, domain):
    enable(services, MatchingRules=[{"Rule": ["EmailAddress"]}], MaxAllowedRuleLevelForMerging=1)
    a = create(services, manual=False, EmailAddress="a@x.com", FirstName="Old", LastName="Lee")
    b = create(services, manual=False, EmailAddress="b@x.com", FirstName="New")
    with services.write() as tx:
        record = profiles.get_profile(tx, domain_name=DOMAIN, profile_id=a)
        record.fields["EmailAddress"] = "b@x.com"
        profiles.save_profile(tx, domain_name=DOMAIN, record=record)
        # The caller's record is refreshed in place with the merged fields.
        assert record.fields["FirstName"] == "Old"
    # a was written last: it is the main profile and its own value is the newest.
    assert fields_of(services, a)["FirstName"] == "Old"
    assert fields_of(services, b) == fields_of(services, a)


def test_auto_merge_source_prefers_the_named_object_type(services, domain):
    enable(
        services,
        MatchingRules=[{"Rule": ["EmailAddress"]}],
        MaxAllowedRuleLevelForMerging=1,
        ConflictResolution={"ConflictResolvingModel": "SOURCE", "SourceName": "Crm"},
    )
    crm = ingest(services, {"id": "c1", "email": "a@x.com", "first": "From Crm"}).profile_id
    other = create(services, manual=False, EmailAddress="a@x.com", FirstName="Typed later")
    assert fields_of(services, other)["FirstName"] == "From Crm"
    assert fields_of(services, crm)["FirstName"] == "From Crm"


def test_auto_merge_respects_max_level_for_merging(services, domain):
    enable(services, MaxAllowedRuleLevelForMerging=1)
    a = create(services, AccountNumber="acc1")
    b = create(services, AccountNumber="acc1")
    found = match_of(services, a)
    assert found is not None and found.level == 2 and set(found.profile_ids) == {a, b}
    with services.read() as tx:
        assert identity.list_merges(tx, domain_name=DOMAIN) == []


def test_full_pass_auto_merges(services, domain):
    a = create(services, manual=False, EmailAddress="a@x.com", FirstName="Ann")
    b = create(services, manual=False, EmailAddress="a@x.com", LastName="Lee")
    result = enable(
        services, MatchingRules=[{"Rule": ["EmailAddress"]}], MaxAllowedRuleLevelForMerging=1
    )
    assert result.merges == 1
    assert fields_of(services, a) == fields_of(services, b)
    assert fields_of(services, b) == {
        "EmailAddress": "a@x.com",
        "FirstName": "Ann",
        "LastName": "Lee",
    }


def test_undo_an_auto_merge_and_it_stays_undone(services, domain):
    enable(services, MatchingRules=[{"Rule": ["EmailAddress"]}], MaxAllowedRuleLevelForMerging=1)
    a = create(services, EmailAddress="a@x.com", FirstName="Ann")
    b = create(services, EmailAddress="a@x.com", LastName="Lee")
    with services.read() as tx:
        [merge] = identity.list_merges(tx, domain_name=DOMAIN)
    with services.write() as tx:
        identity.undo_merge(tx, domain_name=DOMAIN, merge_id=merge.merge_id)
    assert fields_of(services, a) == {"EmailAddress": "a@x.com", "FirstName": "Ann"}
    assert fields_of(services, b) == {"EmailAddress": "a@x.com", "LastName": "Lee"}
    # They still match, but are not merged again, even after another write.
    found = match_of(services, a)
    assert found is not None and set(found.profile_ids) == {a, b}
    with services.write() as tx:
        profiles.update_profile(tx, domain_name=DOMAIN, profile_id=a, changes={"MiddleName": "Q"})
    with services.read() as tx:
        assert len(identity.list_merges(tx, domain_name=DOMAIN)) == 1
    # A third profile still merges into the group's writer.
    c = create(services, EmailAddress="a@x.com")
    with services.read() as tx:
        merges = identity.list_merges(tx, domain_name=DOMAIN)
    assert len(merges) == 2 and merges[0].main_profile_id == c


def live_id(services: Services, profile_id: str) -> str | None:
    with services.read() as tx:
        return profiles.resolve_profile_id(tx, domain_name=DOMAIN, profile_id=profile_id)


def undo_all(services: Services) -> None:
    with services.write() as tx:
        for merge in identity.list_merges(tx, domain_name=DOMAIN):
            if merge.undone_at is None:
                identity.undo_merge(tx, domain_name=DOMAIN, merge_id=merge.merge_id)


def test_an_undo_keeps_two_profiles_apart_whatever_profile_they_merge_into(services, domain):
    """A and B merged, the merge undone: a third profile matching both takes one of them (the
    first in id order), never both; nor does a later write or a full pass join the other to it."""
    enable(services, MatchingRules=[{"Rule": ["EmailAddress"]}], MaxAllowedRuleLevelForMerging=1)
    a = create(services, EmailAddress="a@x.com", FirstName="Ann")
    b = create(services, EmailAddress="a@x.com", LastName="Lee")
    undo_all(services)
    c = create(services, EmailAddress="a@x.com")
    first, second = sorted([a, b])
    assert (live_id(services, first), live_id(services, second)) == (c, second)
    # The one left out, written again, matches the profile that now holds the other: still apart.
    with services.write() as tx:
        profiles.update_profile(
            tx, domain_name=DOMAIN, profile_id=second, changes={"MiddleName": "Q"}
        )
    assert (live_id(services, first), live_id(services, second)) == (c, second)
    # Nor does a full pass (it merges each group into its most recently written profile).
    enable(services, MatchingRules=[{"Rule": ["EmailAddress"]}], MaxAllowedRuleLevelForMerging=1)
    assert (live_id(services, first), live_id(services, second)) == (c, second)
    with services.read() as tx:
        assert len(identity.list_merges(tx, domain_name=DOMAIN)) == 2
    # An operator may still merge them: MergeProfiles is not an automatic merge.
    with services.write() as tx:
        identity.merge_profiles(tx, domain_name=DOMAIN, main_profile_id=c, profile_ids=[second])
    assert live_id(services, second) == c


def test_a_full_pass_does_not_join_profiles_an_undo_separated(services, domain):
    a = create(services, manual=False, EmailAddress="a@x.com", FirstName="Ann")
    b = create(services, manual=False, EmailAddress="a@x.com", LastName="Lee")
    c = create(services, manual=False, EmailAddress="a@x.com")
    with services.write() as tx:
        identity.merge_profiles(tx, domain_name=DOMAIN, main_profile_id=a, profile_ids=[b])
    undo_all(services)
    # C, written last, is the pass's main profile for the group {A, B, C}.
    with services.write() as tx:
        profiles.update_profile(tx, domain_name=DOMAIN, profile_id=c, changes={"MiddleName": "Q"})
    result = enable(
        services, MatchingRules=[{"Rule": ["EmailAddress"]}], MaxAllowedRuleLevelForMerging=1
    )
    first, second = sorted([a, b])
    assert result.merges == 1
    assert (live_id(services, first), live_id(services, second)) == (c, second)


def test_every_profile_of_an_undone_merge_is_kept_apart_from_the_others(services, domain):
    a = create(services, manual=False, EmailAddress="a@x.com", FirstName="Ann")
    b = create(services, manual=False, EmailAddress="a@x.com", LastName="Lee")
    c = create(services, manual=False, EmailAddress="a@x.com")
    result = enable(
        services, MatchingRules=[{"Rule": ["EmailAddress"]}], MaxAllowedRuleLevelForMerging=1
    )
    assert result.merges == 1
    undo_all(services)
    for pid in (a, b, c):
        with services.write() as tx:
            profiles.update_profile(
                tx, domain_name=DOMAIN, profile_id=pid, changes={"MiddleName": "Q"}
            )
    assert [live_id(services, pid) for pid in (a, b, c)] == [a, b, c]


# ---------------------------------------------------------------------------- the CLI


def _cli(settings: Any, *args: str) -> Any:
    import json

    from click.testing import CliRunner

    from openprofiles.cli import main

    storage = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        storage += ["--database-url", settings.database_url]
    result = CliRunner().invoke(main, ["matches", args[0], *storage, *args[1:]])
    assert result.exit_code == 0, result.output
    return json.loads(result.output) if "--json" in args else result.output


def test_cli_lists_and_explains_without_values_unless_asked(settings, services, domain):
    enable(services)
    a = new_profile(services, **PROFILE_A)
    b = new_profile(services, **PROFILE_A)
    [listed] = _cli(settings, "list", "--domain", DOMAIN, "--json")
    assert listed["RuleLevel"] == 1 and sorted(listed["ProfileIds"]) == sorted([a, b])
    mid = listed["MatchId"]
    explained = _cli(settings, "explain", "--domain", DOMAIN, "--json", mid)
    assert explained["Attributes"] == ["EmailAddress", "LastName", "FirstName"]
    assert "Values" not in explained
    text = _cli(settings, "explain", "--domain", DOMAIN, mid)
    assert "rule level 1" in text and "EmailAddress AND LastName AND FirstName" in text
    assert "john" not in text.lower() and "email.com" not in text
    shown = _cli(settings, "explain", "--domain", DOMAIN, "--json", "--show-values", mid)
    assert shown["Values"][a]["LastName"] == "Doe"
    assert shown["Values"][a]["BusinessEmailAddress"] == "john@company.com"
    text = _cli(settings, "explain", "--domain", DOMAIN, "--show-values", mid)
    assert "EmailAddress = 1@email.com" in text


# ---------------------------------------------------------------------------- cost of reads


def _all_pages(services: Services, limit: int) -> list[str]:
    out: list[str] = []
    after = None
    while True:
        with services.read() as tx:
            ids, more = matching.list_matches(tx, domain_name=DOMAIN, limit=limit, after=after)
        out += ids
        if not more:
            return out
        after = ids[-1]


def test_pages_of_match_ids_agree_with_the_whole_domain(services, domain):
    """ListRuleBasedMatches walks the groups in index order a page at a time; whatever the page
    size, the pages hold exactly the groups the whole-domain computation chooses: merged-away
    and deleted profiles out, a level-2 group left out when all its members have a level-1
    group."""
    enable(services)  # level 1: EmailAddress, LastName, FirstName; level 2: AccountNumber
    rng = random.Random(5)
    ids = []
    for _ in range(90):
        fields = {
            "FirstName": rng.choice(["Ann", "Bob"]),
            "LastName": "Doe",
            "EmailAddress": f"{rng.randrange(30)}@x.com",
        }
        if rng.random() < 0.8:
            fields["AccountNumber"] = f"acc{rng.randrange(25)}"
        ids.append(new_profile(services, **fields))
    with services.write() as tx:
        identity.merge_profiles(
            tx, domain_name=DOMAIN, main_profile_id=ids[0], profile_ids=ids[1:4]
        )
        profiles.delete_profile(tx, domain_name=DOMAIN, profile_id=ids[5])
        rules = matching.domain_rules(tx, DOMAIN)
        assert rules is not None
        expected = matching._chosen_groups(tx, DOMAIN, rules)
        level_two = {
            matching.match_id(2, bytes(r.digest))
            for r in tx.conn.execute(
                select(rule_match_digest.c.digest).where(rule_match_digest.c.level == 2)
            )
        }
    assert {m[:2] for m in expected} == {"01", "02"}
    listed_two = {m for m in expected if m.startswith("02")}
    unlisted_two = [
        m
        for m in level_two - listed_two
        if len(get_members(services, m)) >= 2  # a real group, left out: members have level 1
    ]
    assert unlisted_two
    for limit in (1, 2, 7, 100):
        assert _all_pages(services, limit) == expected


def get_members(services: Services, match_id: str) -> tuple[str, ...]:
    with services.read() as tx:
        try:
            return matching.get_match(tx, domain_name=DOMAIN, match_id=match_id).profile_ids
        except NotFound:
            return ()


def test_writes_and_match_reads_seek_the_digest_index(sqlite_settings):
    """Writing a profile, listing a page of matches and finding a profile's match read
    rule_match_digest by (level, digest) or by profile, never every digest of the domain
    (SQLite's query plans): their cost does not grow with the domain."""
    services = build_services(sqlite_settings)
    try:
        make_domain(services)
        enable(services)
        for n in range(5):
            new_profile(services, **{**PROFILE_A, "EmailAddress": f"{n}@email.com"})
        statements: list[tuple[str, Any]] = []

        def record(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
            if statement.lstrip().upper().startswith("SELECT") and "rule_match_digest" in statement:
                statements.append((statement, parameters))

        event.listen(services.database.engine, "before_cursor_execute", record)
        try:
            created = new_profile(services, **PROFILE_A)
            with services.read() as tx:
                matching.list_matches(tx, domain_name=DOMAIN, limit=1)
                matching.profile_match(tx, domain_name=DOMAIN, profile_id=created)
        finally:
            event.remove(services.database.engine, "before_cursor_execute", record)
        assert len(statements) >= 4
        with services.read() as tx:
            for statement, parameters in statements:
                plan = [
                    str(row[-1])
                    for row in tx.conn.exec_driver_sql(
                        "EXPLAIN QUERY PLAN " + statement, parameters
                    )
                ]
                on_digests = [p for p in plan if " rule_match_digest " in f"{p} "]
                assert on_digests, plan
                for line in on_digests:
                    # A seek by digest, by profile, or from a MatchId onwards (a page).
                    seeks = ("digest=?", "profile_id=?", "(level,digest)>")
                    assert line.startswith("SEARCH") and any(s in line for s in seeks), (
                        statement,
                        plan,
                    )
    finally:
        services.database.dispose()


def test_a_deleted_profile_keeps_no_digests(services, domain):
    """Groups ignore deleted profiles anyway (test above); the digests, derived from the
    customer's data, are erased with the profile."""
    from openprofiles.identity import rule_store

    enable(services, MatchingRules=[{"Rule": ["EmailAddress"]}])
    a = create(services, EmailAddress="same@x.com", FirstName="A")
    b = create(services, EmailAddress="same@x.com", FirstName="B")
    with services.write() as tx:
        profiles.delete_profile(tx, domain_name=DOMAIN, profile_id=b)
    with services.read() as tx:
        held = rule_store.held(tx, DOMAIN, [a, b])
    assert set(held) == {a}


def test_an_undone_merge_keeps_its_profiles_apart_when_its_main_profile_is_not_met(
    services, domain
):
    """X took A and B by hand; the merge was undone. X does not match them, so no merge meets
    it again, but A and B still must not be joined, by a full pass or by a later write."""
    x = create(services, manual=False, EmailAddress="x@x.com")
    a = create(services, manual=False, EmailAddress="a@x.com", FirstName="Ann")
    b = create(services, manual=False, EmailAddress="a@x.com", LastName="Lee")
    with services.write() as tx:
        identity.merge_profiles(tx, domain_name=DOMAIN, main_profile_id=x, profile_ids=[a, b])
    undo_all(services)
    result = enable(
        services, MatchingRules=[{"Rule": ["EmailAddress"]}], MaxAllowedRuleLevelForMerging=1
    )
    assert result.merges == 0
    with services.write() as tx:
        profiles.update_profile(tx, domain_name=DOMAIN, profile_id=b, changes={"MiddleName": "Q"})
    assert [live_id(services, pid) for pid in (x, a, b)] == [x, a, b]
