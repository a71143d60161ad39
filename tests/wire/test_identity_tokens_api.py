"""NextTokens of the identity-resolution listings (ListRuleBasedMatches, GetSimilarProfiles,
GetMatches, ListIdentityResolutionJobs) through boto3 against a live server (both backends): a
token resumes only the listing it came from, as every other list operation's does; one from
another domain or another search answers BadRequestException instead of a page of the other
listing that silently skips entries."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from openprofiles.identity import ml_jobs

INVALID = "The NextToken is invalid or has expired."
RULES: dict[str, Any] = {
    "Enabled": True,
    "MatchingRules": [{"Rule": ["EmailAddress"]}, {"Rule": ["AccountNumber"]}],
    "MaxAllowedRuleLevelForMatching": 2,
}
PEOPLE = [
    ("Margaret", "Hamilton", "margaret@example.com", "+1 206 555 0101", "1936-08-17"),
    ("Margret", "Hamilton", "Margaret@Example.com", "(206) 555-0101", "1936-08-17"),
    ("Grace", "Hopper", "grace@navy.example", "+1 206 555 0102", "1906-12-09"),
    ("Grace", "Hoper", "grace@navy.example", "206.555.0102", "1906-12-09"),
]


def _refused(call: Any, **params: Any) -> None:
    with pytest.raises(ClientError) as exc:
        call(**params)
    error = exc.value.response["Error"]
    assert (error["Code"], error["Message"]) == ("BadRequestException", INVALID)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def _rule_domain(client: Any) -> str:
    """A domain with two rule-based match groups of three profiles each."""
    name = f"tok-{uuid.uuid4().hex[:10]}"
    client.create_domain(DomainName=name, DefaultExpirationDays=30, RuleBasedMatching=RULES)
    for group in ("a", "b"):
        for i in range(3):
            client.create_profile(
                DomainName=name, EmailAddress=f"{group}@example.com", FirstName=f"{group}{i}"
            )
    return name


def _ml_domain(live_server: Any, jobs: int) -> str:
    client = live_server.client()
    name = f"tok-{uuid.uuid4().hex[:10]}"
    client.create_domain(DomainName=name, DefaultExpirationDays=30, Matching={"Enabled": True})
    for first, last, email, phone, birth in PEOPLE:
        client.create_profile(
            DomainName=name,
            FirstName=first,
            LastName=last,
            EmailAddress=email,
            PhoneNumber=phone,
            BirthDate=birth,
        )
    for _ in range(jobs):
        assert ml_jobs.run_matching_job(live_server.services, domain_name=name).status == (
            "COMPLETED"
        )
    return name


def test_rule_based_tokens_are_bound_to_their_domain_and_search(live_server: Any) -> None:
    client = live_server.client()
    one, other = _rule_domain(client), _rule_domain(client)
    first = client.list_rule_based_matches(DomainName=one, MaxResults=1)
    rest = client.list_rule_based_matches(DomainName=one, NextToken=first["NextToken"])
    assert len(first["MatchIds"] + rest["MatchIds"]) == 2
    _refused(client.list_rule_based_matches, DomainName=other, NextToken=first["NextToken"])

    search = {"MatchType": "RULE_BASED_MATCHING", "SearchKey": "_email"}
    similar = client.get_similar_profiles(
        DomainName=one, SearchValue="a@example.com", MaxResults=1, **search
    )
    token = similar["NextToken"]
    more = client.get_similar_profiles(
        DomainName=one, SearchValue="a@example.com", NextToken=token, **search
    )
    assert len(similar["ProfileIds"] + more["ProfileIds"]) == 3
    for domain_name, value in ((one, "b@example.com"), (other, "a@example.com")):
        _refused(
            client.get_similar_profiles,
            DomainName=domain_name,
            SearchValue=value,
            NextToken=token,
            **search,
        )
    _refused(
        client.get_similar_profiles,
        DomainName=one,
        MatchType="RULE_BASED_MATCHING",
        SearchKey="_fullName",
        SearchValue="a@example.com",
        NextToken=token,
    )


def test_ml_tokens_are_bound_to_their_domain_and_search(live_server: Any) -> None:
    client = live_server.client()
    one, other = _ml_domain(live_server, jobs=2), _ml_domain(live_server, jobs=1)

    matches = client.get_matches(DomainName=one, MaxResults=1)
    assert "NextToken" in client.get_matches(DomainName=other, MaxResults=1)
    _refused(client.get_matches, DomainName=other, NextToken=matches["NextToken"])

    jobs = client.list_identity_resolution_jobs(DomainName=one, MaxResults=1)
    assert len(jobs["IdentityResolutionJobsList"]) == 1
    _refused(client.list_identity_resolution_jobs, DomainName=other, NextToken=jobs["NextToken"])

    search = {"MatchType": "ML_BASED_MATCHING", "SearchKey": "_email"}
    similar = client.get_similar_profiles(
        DomainName=one, SearchValue="grace@navy.example", MaxResults=1, **search
    )
    token = similar["NextToken"]
    more = client.get_similar_profiles(
        DomainName=one, SearchValue="grace@navy.example", NextToken=token, **search
    )
    assert len(similar["ProfileIds"] + more["ProfileIds"]) == 2
    _refused(
        client.get_similar_profiles,
        DomainName=one,
        SearchValue="margaret@example.com",
        NextToken=token,
        **search,
    )
    _refused(
        client.get_similar_profiles,
        DomainName=other,
        SearchValue="grace@navy.example",
        NextToken=token,
        **search,
    )
    # Nor does an ML token page a rule-based search of the same value.
    _refused(
        client.get_similar_profiles,
        DomainName=one,
        MatchType="RULE_BASED_MATCHING",
        SearchKey="_email",
        SearchValue="grace@navy.example",
        NextToken=token,
    )
