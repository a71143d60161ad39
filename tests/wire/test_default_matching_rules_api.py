"""Rule-based matching enabled without MatchingRules (spec §5.1 "A default rule set exists when
none is supplied"), through a real boto3 client against a live server (both backends): the
default rules (identity.matching.DEFAULT_MATCHING_RULES) match on write and in the full rule
pass, the rules become ACTIVE, and GetDomain echoes only what the caller sent."""

from __future__ import annotations

import uuid
from typing import Any


def _name() -> str:
    return f"dr-{uuid.uuid4().hex[:10]}"


def test_default_rules_match_on_write(live_server: Any) -> None:
    client = live_server.client()
    name = _name()
    client.create_domain(
        DomainName=name, DefaultExpirationDays=30, RuleBasedMatching={"Enabled": True}
    )
    rbm = client.get_domain(DomainName=name)["RuleBasedMatching"]
    assert rbm["Enabled"] is True
    assert rbm["Status"] == "ACTIVE"
    # Not echoed: the caller sent none, and a Terraform plan must read back what it wrote.
    assert "MatchingRules" not in rbm

    a = client.create_profile(DomainName=name, EmailAddress="a@b.c")["ProfileId"]
    b = client.create_profile(DomainName=name, EmailAddress="A@b.c")["ProfileId"]
    client.create_profile(DomainName=name, EmailAddress="other@b.c")
    (match_id,) = client.list_rule_based_matches(DomainName=name)["MatchIds"]
    similar = client.get_similar_profiles(
        DomainName=name,
        MatchType="RULE_BASED_MATCHING",
        SearchKey="_email",
        SearchValue="a@b.c",
    )
    assert sorted(similar["ProfileIds"]) == sorted([a, b])
    assert similar["MatchId"] == match_id
    assert similar["RuleLevel"] == 1


def test_default_rules_in_the_full_pass(live_server: Any) -> None:
    client = live_server.client()
    name = _name()
    client.create_domain(DomainName=name, DefaultExpirationDays=30)
    person = {"FirstName": "Ada", "LastName": "Lovelace", "BirthDate": "1815-12-10"}
    a = client.create_profile(DomainName=name, **person)["ProfileId"]
    b = client.create_profile(DomainName=name, **person)["ProfileId"]
    phone = [
        client.create_profile(DomainName=name, PhoneNumber="+44 20 7946 0018")["ProfileId"],
        client.create_profile(DomainName=name, PhoneNumber="+442079460018")["ProfileId"],
    ]
    out = client.update_domain(
        DomainName=name,
        RuleBasedMatching={"Enabled": True, "MaxAllowedRuleLevelForMatching": 3},
    )
    assert out["RuleBasedMatching"]["Status"] == "ACTIVE"
    assert out["RuleBasedMatching"]["MaxAllowedRuleLevelForMatching"] == 3
    assert "MatchingRules" not in out["RuleBasedMatching"]
    assert len(client.list_rule_based_matches(DomainName=name)["MatchIds"]) == 2
    by_phone = client.get_similar_profiles(
        DomainName=name,
        MatchType="RULE_BASED_MATCHING",
        SearchKey="_phone",
        SearchValue="+442079460018",
    )
    assert sorted(by_phone["ProfileIds"]) == sorted(phone)
    assert by_phone["RuleLevel"] == 2
    # Level 3 (FirstName, LastName, BirthDate) through a profile's id.
    by_name = client.get_similar_profiles(
        DomainName=name,
        MatchType="RULE_BASED_MATCHING",
        SearchKey="_profileId",
        SearchValue=a,
    )
    assert sorted(by_name["ProfileIds"]) == sorted([a, b])
    assert by_name["RuleLevel"] == 3
