"""MergeProfiles through a real boto3 client against a live server (both backends): the merge,
the merged-away profiles' keys resolving through SearchProfiles and PutProfileObject (spec §1.6
"After a merge", §5.3) while their ids are gone (test_merged_ids_api), and the error codes of
every refusal."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

CRM: dict[str, Any] = {
    "Description": "CRM customers",
    "AllowProfileCreation": True,
    "Fields": {
        "id": {"Source": "_source.id"},
        "email": {
            "Source": "_source.email",
            "Target": "_profile.EmailAddress",
            "ContentType": "EMAIL_ADDRESS",
        },
    },
    "Keys": {
        "crmId": [{"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["id"]}],
        "_email": [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["email"]}],
    },
}


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


@pytest.fixture
def domain(live_server: Any) -> str:
    name = f"id-{uuid.uuid4().hex[:10]}"
    client = live_server.client()
    client.create_domain(DomainName=name, DefaultExpirationDays=30)
    client.put_profile_object_type(DomainName=name, ObjectTypeName="Crm", **CRM)
    return name


def _create(client: Any, domain: str, **fields: Any) -> str:
    return str(client.create_profile(DomainName=domain, **fields)["ProfileId"])


def test_spec_example(live_server: Any, domain: str) -> None:
    client = live_server.client()
    main = _create(client, domain, FirstName="Jane")
    p1 = _create(client, domain, LastName="Doe")
    p2 = _create(client, domain, FirstName="Jorge")
    out = client.merge_profiles(
        DomainName=domain,
        MainProfileId=main,
        ProfileIdsToBeMerged=[p1, p2],
        FieldSourceProfileIds={"FirstName": p2},
    )
    assert out["Message"] == "Success!"
    got = client.batch_get_profile(DomainName=domain, ProfileIds=[main, p1, p2])
    # The merged profiles are deleted (spec §5.3).
    assert [e["ProfileId"] for e in got["Errors"]] == [p1, p2]
    assert [p["ProfileId"] for p in got["Profiles"]] == [main]
    assert got["Profiles"][0]["FirstName"] == "Jorge"
    assert got["Profiles"][0]["LastName"] == "Doe"


def test_merged_ids_and_keys_resolve_to_the_main_profile(live_server: Any, domain: str) -> None:
    client = live_server.client()
    client.put_profile_object(
        DomainName=domain,
        ObjectTypeName="Crm",
        Object=json.dumps({"id": "c1", "email": "one@example.com"}),
    )
    client.put_profile_object(
        DomainName=domain,
        ObjectTypeName="Crm",
        Object=json.dumps({"id": "c2", "email": "two@example.com"}),
    )

    def find(key: str, value: str) -> list[str]:
        items = client.search_profiles(DomainName=domain, KeyName=key, Values=[value])["Items"]
        return [i["ProfileId"] for i in items]

    [main] = find("_email", "one@example.com")
    [other] = find("_email", "two@example.com")
    client.merge_profiles(DomainName=domain, MainProfileId=main, ProfileIdsToBeMerged=[other])

    assert find("_profileId", other) == [main]
    assert find("_email", "two@example.com") == [main]
    listed = client.list_profile_objects(DomainName=domain, ObjectTypeName="Crm", ProfileId=main)
    assert len(listed["Items"]) == 2
    # A new object with the merged profile's key lands on the main profile; none is created.
    client.put_profile_object(
        DomainName=domain,
        ObjectTypeName="Crm",
        Object=json.dumps({"id": "c3", "email": "two@example.com"}),
    )
    assert find("crmId", "c3") == [main]
    assert len(find("_profileId", main)) == 1
    got = client.batch_get_profile(DomainName=domain, ProfileIds=[other])
    assert got["Profiles"] == [] and [e["ProfileId"] for e in got["Errors"]] == [other]


def test_refusals(live_server: Any, domain: str) -> None:
    client = live_server.client()
    main = _create(client, domain, FirstName="Jane")
    other = _create(client, domain, FirstName="Jorge")
    with pytest.raises(ClientError) as exc:
        client.merge_profiles(DomainName=domain, MainProfileId=main, ProfileIdsToBeMerged=[main])
    assert _code(exc) == "BadRequestException"
    assert "itself" in exc.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as exc:
        client.merge_profiles(
            DomainName=domain, MainProfileId=main, ProfileIdsToBeMerged=["0" * 32]
        )
    assert _code(exc) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as exc:
        client.merge_profiles(
            DomainName=domain,
            MainProfileId=main,
            ProfileIdsToBeMerged=[other],
            FieldSourceProfileIds={"FirstName": "0" * 32},
        )
    assert _code(exc) == "BadRequestException"
    with pytest.raises(ClientError) as exc:
        client.merge_profiles(
            DomainName="no-such-domain", MainProfileId=main, ProfileIdsToBeMerged=[other]
        )
    assert _code(exc) == "ResourceNotFoundException"


def test_a_profile_of_another_domain_is_not_found(live_server: Any, domain: str) -> None:
    client = live_server.client()
    elsewhere = f"id-{uuid.uuid4().hex[:10]}"
    client.create_domain(DomainName=elsewhere, DefaultExpirationDays=30)
    main = _create(client, domain, FirstName="Jane")
    foreign = _create(client, elsewhere, FirstName="Jorge")
    with pytest.raises(ClientError) as exc:
        client.merge_profiles(DomainName=domain, MainProfileId=main, ProfileIdsToBeMerged=[foreign])
    assert _code(exc) == "ResourceNotFoundException"


def test_more_than_twenty_is_refused_by_the_server(live_server: Any, domain: str) -> None:
    client = live_server.client(parameter_validation=False)
    main = _create(client, domain, FirstName="Jane")
    with pytest.raises(ClientError) as exc:
        client.merge_profiles(
            DomainName=domain,
            MainProfileId=main,
            ProfileIdsToBeMerged=[uuid.uuid4().hex for _ in range(21)],
        )
    assert _code(exc) == "BadRequestException"


def test_agents_may_not_merge(live_server: Any, domain: str) -> None:
    admin = live_server.client()
    main = _create(admin, domain, FirstName="Jane")
    other = _create(admin, domain, FirstName="Jorge")
    with pytest.raises(ClientError) as exc:
        live_server.client("agent").merge_profiles(
            DomainName=domain, MainProfileId=main, ProfileIdsToBeMerged=[other]
        )
    assert _code(exc) == "AccessDeniedException"


TF_RULES: dict[str, Any] = {
    "Enabled": True,
    "AttributeTypesSelector": {
        "AttributeMatchingModel": "MANY_TO_MANY",
        "Address": ["Address"],
        "EmailAddress": ["EmailAddress", "BusinessEmailAddress"],
        "PhoneNumber": ["PhoneNumber", "HomePhoneNumber"],
    },
    "ConflictResolution": {"ConflictResolvingModel": "RECENCY"},
    "MatchingRules": [
        {"Rule": ["Address.City", "Address.Country"]},
        {"Rule": ["EmailAddress"]},
        {"Rule": ["PhoneNumber", "Attributes.crmTier"]},
    ],
    "MaxAllowedRuleLevelForMatching": 2,
    "MaxAllowedRuleLevelForMerging": 2,
}


def test_valid_rules_are_accepted(live_server: Any) -> None:
    client = live_server.client()
    name = f"id-{uuid.uuid4().hex[:10]}"
    out = client.create_domain(
        DomainName=name, DefaultExpirationDays=30, RuleBasedMatching=TF_RULES
    )
    assert out["RuleBasedMatching"]["MatchingRules"] == TF_RULES["MatchingRules"]
    client.update_domain(DomainName=name, RuleBasedMatching={**TF_RULES, "Enabled": False})


@pytest.mark.parametrize(
    ("rules", "named"),
    [
        ({"MatchingRules": [{"Rule": ["ShoeSize"]}]}, "unknown attribute ShoeSize"),
        ({"MatchingRules": [{"Rule": ["BusinessEmailAddress"]}]}, "BusinessEmailAddress"),
        ({"MatchingRules": [{"Rule": ["Attributes."]}]}, "Attributes."),
        ({"MatchingRules": [{"Rule": ["LastName", "LastName"]}]}, "more than once"),
        (
            {"MatchingRules": [{"Rule": ["LastName"]}] * 16},
            "15",
        ),  # the wire layer checks the model's limits first
        ({"MatchingRules": [{"Rule": [f"Attributes.a{i}" for i in range(16)]}]}, "15"),
        (
            {
                "AttributeTypesSelector": {
                    "AttributeMatchingModel": "ONE_TO_ONE",
                    "EmailAddress": ["HomePhoneNumber"],
                }
            },
            "EmailAddress cannot list HomePhoneNumber",
        ),
        (
            {
                "AttributeTypesSelector": {
                    "AttributeMatchingModel": "ONE_TO_ONE",
                    "Address": ["Address", "BusinessAddress", "MailingAddress", "ShippingAddress"]
                    * 2,
                }
            },
            "4",
        ),
        ({"MaxAllowedRuleLevelForMatching": 16}, "MaxAllowedRuleLevelForMatching"),
        # Levels past the rules are refused, not clamped (identity.rules).
        (
            {"MatchingRules": [{"Rule": ["EmailAddress"]}], "MaxAllowedRuleLevelForMatching": 2},
            "MaxAllowedRuleLevelForMatching must be between 1 and 1 (MatchingRules has 1 level)",
        ),
        (
            {
                "MatchingRules": [{"Rule": ["EmailAddress"]}, {"Rule": ["PhoneNumber"]}],
                "MaxAllowedRuleLevelForMatching": 1,
                "MaxAllowedRuleLevelForMerging": 2,
            },
            "MaxAllowedRuleLevelForMerging must be between 1 and 1",
        ),
    ],
)
def test_invalid_rules_are_refused_by_the_server(
    live_server: Any, rules: dict[str, Any], named: str
) -> None:
    client = live_server.client(parameter_validation=False)
    name = f"id-{uuid.uuid4().hex[:10]}"
    with pytest.raises(ClientError) as exc:
        client.create_domain(
            DomainName=name, DefaultExpirationDays=30, RuleBasedMatching={"Enabled": True, **rules}
        )
    assert _code(exc) == "BadRequestException"
    assert named in exc.value.response["Error"]["Message"]
    client.create_domain(DomainName=name, DefaultExpirationDays=30)
    with pytest.raises(ClientError) as exc:
        client.update_domain(DomainName=name, RuleBasedMatching={"Enabled": True, **rules})
    assert _code(exc) == "BadRequestException"
    assert named in exc.value.response["Error"]["Message"]


# ---------------------------------------------------------------------------- rule-based matching

RULES: dict[str, Any] = {
    "Enabled": True,
    "MatchingRules": [{"Rule": ["EmailAddress", "LastName"]}, {"Rule": ["AccountNumber"]}],
    "MaxAllowedRuleLevelForMatching": 2,
    "AttributeTypesSelector": {
        "AttributeMatchingModel": "MANY_TO_MANY",
        "EmailAddress": ["EmailAddress", "BusinessEmailAddress"],
    },
}


def test_list_rule_based_matches_and_get_similar_profiles(live_server: Any, domain: str) -> None:
    client = live_server.client()
    a = _create(client, domain, EmailAddress="ann@x.com", LastName="Lee", AccountNumber="A1")
    b = _create(client, domain, BusinessEmailAddress="ANN@x.com", LastName="lee")
    c = _create(client, domain, EmailAddress="c@x.com", AccountNumber="A1")
    _create(client, domain, EmailAddress="alone@x.com")
    got = client.update_domain(DomainName=domain, RuleBasedMatching=RULES)
    assert got["RuleBasedMatching"]["Status"] == "ACTIVE"
    ids = client.list_rule_based_matches(DomainName=domain)["MatchIds"]
    assert len(ids) == 2
    first = client.list_rule_based_matches(DomainName=domain, MaxResults=1)
    assert len(first["MatchIds"]) == 1
    second = client.list_rule_based_matches(
        DomainName=domain, MaxResults=1, NextToken=first["NextToken"]
    )
    assert first["MatchIds"] + second["MatchIds"] == sorted(ids)
    assert "NextToken" not in second

    similar = client.get_similar_profiles(
        DomainName=domain,
        MatchType="RULE_BASED_MATCHING",
        SearchKey="_email",
        SearchValue="ann@x.com",
    )
    assert similar["MatchType"] == "RULE_BASED_MATCHING"
    assert similar["RuleLevel"] == 1
    assert sorted(similar["ProfileIds"]) == sorted([a, b])
    assert similar["MatchId"] in ids
    by_account = client.get_similar_profiles(
        DomainName=domain, MatchType="RULE_BASED_MATCHING", SearchKey="_profileId", SearchValue=c
    )
    assert by_account["RuleLevel"] == 2 and sorted(by_account["ProfileIds"]) == sorted([a, c])
    paged = client.get_similar_profiles(
        DomainName=domain,
        MatchType="RULE_BASED_MATCHING",
        SearchKey="_profileId",
        SearchValue=c,
        MaxResults=1,
    )
    rest = client.get_similar_profiles(
        DomainName=domain,
        MatchType="RULE_BASED_MATCHING",
        SearchKey="_profileId",
        SearchValue=c,
        NextToken=paged["NextToken"],
    )
    assert sorted(paged["ProfileIds"] + rest["ProfileIds"]) == sorted([a, c])


def test_matches_appear_as_profiles_are_written(live_server: Any, domain: str) -> None:
    client = live_server.client()
    client.update_domain(DomainName=domain, RuleBasedMatching=RULES)
    assert client.list_rule_based_matches(DomainName=domain)["MatchIds"] == []
    _create(client, domain, EmailAddress="x@x.com", LastName="Roe")
    client.put_profile_object(
        DomainName=domain,
        ObjectTypeName="Crm",
        Object=json.dumps({"id": "c-1", "email": "other@x.com"}),
    )
    assert client.list_rule_based_matches(DomainName=domain)["MatchIds"] == []
    _create(client, domain, EmailAddress="X@x.com", LastName="roe")
    assert len(client.list_rule_based_matches(DomainName=domain)["MatchIds"]) == 1


def test_auto_merge_through_the_api(live_server: Any, domain: str) -> None:
    client = live_server.client()
    client.update_domain(
        DomainName=domain, RuleBasedMatching={**RULES, "MaxAllowedRuleLevelForMerging": 1}
    )
    a = _create(client, domain, EmailAddress="m@x.com", LastName="Moe", FirstName="Max")
    b = _create(client, domain, EmailAddress="m@x.com", LastName="Moe", BirthDate="1980-01-01")
    found = client.search_profiles(DomainName=domain, KeyName="_profileId", Values=[a])["Items"]
    assert [p["ProfileId"] for p in found] == [b]
    assert found[0]["FirstName"] == "Max" and found[0]["BirthDate"] == "1980-01-01"


def test_rule_matching_errors(live_server: Any, domain: str) -> None:
    client = live_server.client()
    with pytest.raises(ClientError) as exc:
        client.list_rule_based_matches(DomainName=domain)
    assert _code(exc) == "BadRequestException"
    with pytest.raises(ClientError) as exc:
        client.list_rule_based_matches(DomainName="no-such-domain")
    assert _code(exc) == "ResourceNotFoundException"
    client.update_domain(DomainName=domain, RuleBasedMatching=RULES)
    with pytest.raises(ClientError) as exc:
        client.get_similar_profiles(
            DomainName=domain, MatchType="ML_BASED_MATCHING", SearchKey="_email", SearchValue="a@b"
        )
    assert _code(exc) == "BadRequestException"
    with pytest.raises(ClientError) as exc:
        client.get_similar_profiles(
            DomainName=domain,
            MatchType="RULE_BASED_MATCHING",
            SearchKey="_email",
            SearchValue="nobody@x.com",
        )
    assert _code(exc) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as exc:
        client.list_rule_based_matches(DomainName=domain, NextToken="garbage")
    assert _code(exc) == "BadRequestException"
