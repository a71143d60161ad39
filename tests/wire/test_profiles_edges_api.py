"""Edges of the profile API found by an audit (both backends, boto3 against a live server):
empty or too many search values, a NUMBER key value longer than 28 digits, DeleteProfile with a
merged-away id, clearing enum fields, and a DeadLetterQueueUrl or "" member on CreateDomain."""

from __future__ import annotations

import json
import uuid

import pytest
from botocore.exceptions import ClientError

from openprofiles.profiles.service import MAX_SEARCH_VALUES


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    error = exc.value.response["Error"]
    return str(error["Code"]), str(error["Message"])


@pytest.fixture
def domain(live_server) -> str:
    name = f"d-{uuid.uuid4().hex[:10]}"
    live_server.client().create_domain(DomainName=name, DefaultExpirationDays=30)
    return name


def test_a_search_needs_values_and_has_a_bound(live_server, domain):
    client = live_server.client()
    pid = client.create_profile(DomainName=domain, AccountNumber="acct0")["ProfileId"]
    # No condition used to mean no filter: every profile of the domain.
    with pytest.raises(ClientError) as exc:
        client.search_profiles(DomainName=domain, KeyName="_email", Values=[])
    assert _error(exc) == (
        "BadRequestException",
        "Values of key _email must list at least one value.",
    )
    with pytest.raises(ClientError) as exc:
        client.search_profiles(
            DomainName=domain,
            KeyName="_account",
            Values=["acct0"],
            AdditionalSearchKeys=[{"KeyName": "_email", "Values": []}],
            LogicalOperator="AND",
        )
    assert _error(exc)[0] == "BadRequestException"
    values = [f"v{i}" for i in range(MAX_SEARCH_VALUES + 1)]
    with pytest.raises(ClientError) as exc:
        client.search_profiles(DomainName=domain, KeyName="_account", Values=values)
    assert _error(exc) == (
        "BadRequestException",
        f"A search may list at most {MAX_SEARCH_VALUES} values over all its keys; this one "
        f"lists {MAX_SEARCH_VALUES + 1}.",
    )
    found = client.search_profiles(
        DomainName=domain, KeyName="_account", Values=["acct0", *values[: MAX_SEARCH_VALUES - 1]]
    )["Items"]
    assert [p["ProfileId"] for p in found] == [pid]
    for call in (client.add_profile_key, client.delete_profile_key):
        with pytest.raises(ClientError) as exc:
            call(DomainName=domain, ProfileId=pid, KeyName="loyalty", Values=[])
        assert _error(exc)[0] == "BadRequestException"


def test_long_number_key_values_are_compared_exactly(live_server, domain):
    client = live_server.client()
    client.put_profile_object_type(
        DomainName=domain,
        ObjectTypeName="Points",
        Description="points",
        AllowProfileCreation=True,
        Fields={
            "id": {"Source": "_source.id"},
            "points": {"Source": "_source.points", "ContentType": "NUMBER"},
        },
        Keys={
            "uid": [{"StandardIdentifiers": ["UNIQUE", "PROFILE"], "FieldNames": ["id"]}],
            "points": [{"StandardIdentifiers": ["SECONDARY"], "FieldNames": ["points"]}],
        },
    )
    thirty = "123456789012345678901234567890"
    client.put_profile_object(
        DomainName=domain, ObjectTypeName="Points", Object=json.dumps({"id": "1", "points": thirty})
    )
    [found] = client.search_profiles(DomainName=domain, KeyName="points", Values=[thirty + ".0"])[
        "Items"
    ]
    near = thirty[:-1] + "1"
    assert client.search_profiles(DomainName=domain, KeyName="points", Values=[near])["Items"] == []
    client.add_profile_key(
        DomainName=domain, ProfileId=found["ProfileId"], KeyName="points", Values=["1e30"]
    )
    [again] = client.search_profiles(DomainName=domain, KeyName="points", Values=["1" + "0" * 30])[
        "Items"
    ]
    assert again["ProfileId"] == found["ProfileId"]


def test_delete_profile_with_a_merged_away_id_deletes_nothing(live_server, domain):
    client = live_server.client()
    main = client.create_profile(DomainName=domain, FirstName="Main")["ProfileId"]
    dup = client.create_profile(DomainName=domain, FirstName="Dup")["ProfileId"]
    client.merge_profiles(DomainName=domain, MainProfileId=main, ProfileIdsToBeMerged=[dup])

    with pytest.raises(ClientError) as exc:
        client.delete_profile(DomainName=domain, ProfileId=dup)

    code, message = _error(exc)
    assert code == "ResourceNotFoundException" and f"merged into {main}" in message
    [kept] = client.batch_get_profile(DomainName=domain, ProfileIds=[main])["Profiles"]
    assert kept["FirstName"] == "Main"


def test_update_profile_clears_enum_fields_with_an_empty_string(live_server, domain):
    client = live_server.client()
    pid = client.create_profile(
        DomainName=domain, Gender="FEMALE", PartyType="INDIVIDUAL", FirstName="Ann"
    )["ProfileId"]
    client.update_profile(DomainName=domain, ProfileId=pid, Gender="", PartyType="")
    [profile] = client.batch_get_profile(DomainName=domain, ProfileIds=[pid])["Profiles"]
    assert "Gender" not in profile and "PartyType" not in profile
    assert profile["FirstName"] == "Ann"
    with pytest.raises(ClientError) as exc:
        client.create_profile(DomainName=domain, Gender="")
    assert _error(exc)[0] == "BadRequestException"


def test_create_domain_names_a_malformed_queue_url_and_drops_empty_members(live_server):
    client = live_server.client()
    name = f"d-{uuid.uuid4().hex[:10]}"
    with pytest.raises(ClientError) as exc:
        client.create_domain(
            DomainName=name, DefaultExpirationDays=30, DeadLetterQueueUrl="not a url"
        )
    code, message = _error(exc)
    assert code == "BadRequestException" and "must be an SQS queue URL" in message
    client.create_domain(
        DomainName=name, DefaultExpirationDays=30, DeadLetterQueueUrl="", DefaultEncryptionKey=""
    )
    domain = client.get_domain(DomainName=name)
    assert "DeadLetterQueueUrl" not in domain and "DefaultEncryptionKey" not in domain


def test_a_fifo_dead_letter_queue_is_refused_with_the_reason(live_server):
    client = live_server.client()
    with pytest.raises(ClientError) as exc:
        client.create_domain(
            DomainName=f"d-{uuid.uuid4().hex[:10]}",
            DefaultExpirationDays=30,
            DeadLetterQueueUrl="https://sqs.us-east-1.amazonaws.com/123456789012/letters.fifo",
        )
    code, message = _error(exc)
    assert code == "BadRequestException" and "use a standard queue" in message


def test_value_lists_the_model_leaves_unbounded_have_a_bound(live_server, domain):
    """70,000 values used to be a 500 on PostgreSQL (its parameter limit), after four tries."""
    client = live_server.client()
    pid = client.create_profile(DomainName=domain, AccountNumber="acct1")["ProfileId"]
    many = [f"v{i}" for i in range(70_000)]
    with pytest.raises(ClientError) as exc:
        client.list_profile_objects(
            DomainName=domain,
            ObjectTypeName="_asset",
            ProfileId=pid,
            ObjectFilter={"KeyName": "_assetId", "Values": many},
        )
    assert _error(exc) == (
        "BadRequestException",
        "1 validation error detected: ObjectFilter.Values must have length at most 100",
    )
    for call in (client.add_profile_key, client.delete_profile_key):
        with pytest.raises(ClientError) as exc:
            call(DomainName=domain, ProfileId=pid, KeyName="loyalty", Values=many)
        assert _error(exc) == (
            "BadRequestException",
            "1 validation error detected: Values must have length at most 1000",
        )
    # At the bounds the lists are served.
    listed = client.list_profile_objects(
        DomainName=domain,
        ObjectTypeName="_asset",
        ProfileId=pid,
        ObjectFilter={"KeyName": "_assetId", "Values": many[:100]},
    )
    assert listed["Items"] == []
    client.add_profile_key(DomainName=domain, ProfileId=pid, KeyName="loyalty", Values=many[:1000])
    found = client.search_profiles(DomainName=domain, KeyName="loyalty", Values=[many[999]])
    assert [p["ProfileId"] for p in found["Items"]] == [pid]
    client.delete_profile_key(
        DomainName=domain, ProfileId=pid, KeyName="loyalty", Values=many[:1000]
    )
    found = client.search_profiles(DomainName=domain, KeyName="loyalty", Values=[many[999]])
    assert found["Items"] == []
