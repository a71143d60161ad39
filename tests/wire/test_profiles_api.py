"""Profiles, keys and search through a real boto3 client against a live server (both backends)."""

from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


@pytest.fixture
def domain(live_server) -> str:
    name = f"d-{uuid.uuid4().hex[:10]}"
    live_server.client().create_domain(DomainName=name, DefaultExpirationDays=30)
    return name


def _search(client, domain, key, *values, **more):
    return client.search_profiles(DomainName=domain, KeyName=key, Values=list(values), **more)[
        "Items"
    ]


def test_create_and_fetch_a_profile(live_server, domain):
    client = live_server.client()
    pid = client.create_profile(
        DomainName=domain,
        FirstName="Ada",
        LastName="Lovelace",
        PhoneNumber="+44 20 7946 0958",
        Address={"City": "London", "Country": "UK"},
        Attributes={"Tier": "Gold"},
        PartyType="INDIVIDUAL",
    )["ProfileId"]
    assert len(pid) == 32 and int(pid, 16) >= 0
    profiles = client.batch_get_profile(DomainName=domain, ProfileIds=[pid])["Profiles"]
    assert profiles == [
        {
            "ProfileId": pid,
            "FirstName": "Ada",
            "LastName": "Lovelace",
            "PhoneNumber": "+44 20 7946 0958",
            "Address": {"City": "London", "Country": "UK"},
            "Attributes": {"Tier": "Gold"},
            "PartyType": "INDIVIDUAL",
        }
    ]


def test_update_keeps_omitted_and_clears_empty(live_server, domain):
    client = live_server.client()
    pid = client.create_profile(
        DomainName=domain,
        FirstName="Ada",
        LastName="Lovelace",
        Address={"City": "London", "PostalCode": "N1"},
        Attributes={"Tier": "Gold", "Pet": "Cat"},
    )["ProfileId"]
    client.update_profile(
        DomainName=domain,
        ProfileId=pid,
        FirstName="",
        MiddleName="King",
        Address={"City": ""},
        Attributes={"Pet": ""},
    )
    profile = client.batch_get_profile(DomainName=domain, ProfileIds=[pid])["Profiles"][0]
    assert "FirstName" not in profile
    assert profile["MiddleName"] == "King"
    assert profile["LastName"] == "Lovelace"
    assert profile["Address"] == {"PostalCode": "N1"}
    assert profile["Attributes"] == {"Tier": "Gold"}


def test_search_by_phone_in_any_format(live_server, domain):
    client = live_server.client()
    pid = client.create_profile(DomainName=domain, MobilePhoneNumber="+1 (206) 345-7890")[
        "ProfileId"
    ]
    for written in ("2063457890", "+12063457890", "206.345.7890", "(206) 345-7890"):
        items = _search(client, domain, "_phone", written)
        assert [i["ProfileId"] for i in items] == [pid], written
        assert items[0]["FoundByItems"] == [{"KeyName": "_phone", "Values": [written]}]
    assert _search(client, domain, "_phone", "2063457891") == []


def test_search_by_email_is_case_insensitive_and_spans_email_fields(live_server, domain):
    client = live_server.client()
    pid = client.create_profile(DomainName=domain, BusinessEmailAddress="Ada@Example.COM")[
        "ProfileId"
    ]
    assert [i["ProfileId"] for i in _search(client, domain, "_email", "ada@example.com")] == [pid]


def test_search_by_full_name_account_and_profile_id(live_server, domain):
    client = live_server.client()
    pid = client.create_profile(
        DomainName=domain,
        FirstName="Ada",
        MiddleName="King",
        LastName="Lovelace",
        AccountNumber="ACC-1",
    )["ProfileId"]
    assert _search(client, domain, "_fullName", "ada   KING lovelace")[0]["ProfileId"] == pid
    assert _search(client, domain, "_account", "ACC-1")[0]["ProfileId"] == pid
    assert _search(client, domain, "_account", "acc-1") == []
    assert _search(client, domain, "_profileId", pid)[0]["ProfileId"] == pid


def test_search_and_or(live_server, domain):
    client = live_server.client()
    a = client.create_profile(DomainName=domain, FirstName="Ann", PhoneNumber="+14155550101")[
        "ProfileId"
    ]
    b = client.create_profile(DomainName=domain, FirstName="Bob", PhoneNumber="+14155550102")[
        "ProfileId"
    ]
    extra = [{"KeyName": "_fullName", "Values": ["bob"]}]
    either = _search(
        client, domain, "_phone", "4155550101", AdditionalSearchKeys=extra, LogicalOperator="OR"
    )
    assert sorted(i["ProfileId"] for i in either) == sorted([a, b])
    found_by = {i["ProfileId"]: i["FoundByItems"] for i in either}
    assert found_by[a] == [{"KeyName": "_phone", "Values": ["4155550101"]}]
    assert found_by[b] == [{"KeyName": "_fullName", "Values": ["bob"]}]
    both = _search(
        client, domain, "_phone", "4155550102", AdditionalSearchKeys=extra, LogicalOperator="AND"
    )
    assert [i["ProfileId"] for i in both] == [b]
    assert len(both[0]["FoundByItems"]) == 2
    none = _search(
        client, domain, "_phone", "4155550101", AdditionalSearchKeys=extra, LogicalOperator="AND"
    )
    assert none == []


def test_search_pages_with_max_results_and_next_token(live_server, domain):
    client = live_server.client()
    ids = {
        client.create_profile(DomainName=domain, AccountNumber="shared")["ProfileId"]
        for _ in range(5)
    }
    seen, token = [], None
    while True:
        kwargs = {"MaxResults": 2}
        if token:
            kwargs["NextToken"] = token
        page = client.search_profiles(
            DomainName=domain, KeyName="_account", Values=["shared"], **kwargs
        )
        assert len(page["Items"]) <= 2
        seen += [i["ProfileId"] for i in page["Items"]]
        token = page.get("NextToken")
        if not token:
            break
    assert sorted(seen) == sorted(ids)
    # A token only pages through the search it came from.
    first = client.search_profiles(
        DomainName=domain, KeyName="_account", Values=["shared"], MaxResults=1
    )["NextToken"]
    with pytest.raises(ClientError) as exc:
        client.search_profiles(
            DomainName=domain, KeyName="_account", Values=["other"], NextToken=first
        )
    assert _code(exc) == "BadRequestException"


def test_search_keys_follow_updates(live_server, domain):
    client = live_server.client()
    pid = client.create_profile(DomainName=domain, PhoneNumber="+14155550103")["ProfileId"]
    client.update_profile(DomainName=domain, ProfileId=pid, PhoneNumber="+14155550104")
    assert _search(client, domain, "_phone", "+14155550103") == []
    assert _search(client, domain, "_phone", "+14155550104")[0]["ProfileId"] == pid


def test_add_and_delete_profile_keys(live_server, domain):
    client = live_server.client()
    pid = client.create_profile(DomainName=domain, FirstName="Ann")["ProfileId"]
    added = client.add_profile_key(
        DomainName=domain, ProfileId=pid, KeyName="_ctrContactId", Values=["c-1", "c-2"]
    )
    assert added["KeyName"] == "_ctrContactId" and added["Values"] == ["c-1", "c-2"]
    assert _search(client, domain, "_ctrContactId", "c-2")[0]["ProfileId"] == pid
    client.delete_profile_key(
        DomainName=domain, ProfileId=pid, KeyName="_ctrContactId", Values=["c-2"]
    )
    assert _search(client, domain, "_ctrContactId", "c-2") == []
    assert _search(client, domain, "_ctrContactId", "c-1")[0]["ProfileId"] == pid
    with pytest.raises(ClientError) as exc:
        client.delete_profile_key(
            DomainName=domain, ProfileId=pid, KeyName="_ctrContactId", Values=["c-9"]
        )
    assert _code(exc) == "ResourceNotFoundException"


def test_delete_profile(live_server, domain):
    client = live_server.client()
    pid = client.create_profile(DomainName=domain, PhoneNumber="+14155550105")["ProfileId"]
    client.delete_profile(DomainName=domain, ProfileId=pid)
    assert _search(client, domain, "_phone", "+14155550105") == []
    result = client.batch_get_profile(DomainName=domain, ProfileIds=[pid])
    assert result["Profiles"] == []
    assert result["Errors"][0]["ProfileId"] == pid
    with pytest.raises(ClientError) as exc:
        client.delete_profile(DomainName=domain, ProfileId=pid)
    assert _code(exc) == "ResourceNotFoundException"


def test_unknown_domain_and_profile(live_server, domain):
    client = live_server.client()
    with pytest.raises(ClientError) as exc:
        client.create_profile(DomainName="no-such-domain", FirstName="A")
    assert _code(exc) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as exc:
        client.update_profile(DomainName=domain, ProfileId="0" * 32, FirstName="A")
    assert _code(exc) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as exc:
        _search(client, "no-such-domain", "_phone", "1")
    assert _code(exc) == "ResourceNotFoundException"


@pytest.mark.parametrize(
    ("kwargs", "member"),
    [
        ({"FirstName": "x" * 256}, "FirstName"),
        ({"PartyType": "ROBOT"}, "PartyType"),
        ({"Attributes": {"k": "v" * 256}}, "Attributes"),
    ],
)
def test_create_profile_rejects_invalid_members(live_server, domain, kwargs, member):
    client = live_server.client(parameter_validation=False)
    with pytest.raises(ClientError) as exc:
        client.create_profile(DomainName=domain, **kwargs)
    assert _code(exc) == "BadRequestException"
    assert member in exc.value.response["Error"]["Message"]
    assert client.get_domain(DomainName=domain)["Stats"]["ProfileCount"] == 0


def test_search_rejects_too_many_additional_keys(live_server, domain):
    client = live_server.client(parameter_validation=False)
    extra = [{"KeyName": "_phone", "Values": [str(i)]} for i in range(5)]
    with pytest.raises(ClientError) as exc:
        _search(client, domain, "_phone", "1", AdditionalSearchKeys=extra)
    assert _code(exc) == "BadRequestException"
    assert "AdditionalSearchKeys" in exc.value.response["Error"]["Message"]


def test_batch_get_limits(live_server, domain):
    client = live_server.client(parameter_validation=False)
    with pytest.raises(ClientError) as exc:
        client.batch_get_profile(DomainName=domain, ProfileIds=[])
    assert _code(exc) == "BadRequestException"


def test_agent_may_work_with_profiles_but_not_domains(live_server, domain):
    agent = live_server.client("agent")
    pid = agent.create_profile(DomainName=domain, FirstName="Ann")["ProfileId"]
    agent.update_profile(DomainName=domain, ProfileId=pid, LastName="Lee")
    assert _search(agent, domain, "_fullName", "ann lee")[0]["ProfileId"] == pid
    for call in (
        lambda: agent.delete_profile(DomainName=domain, ProfileId=pid),
        lambda: agent.delete_domain(DomainName=domain),
        lambda: agent.create_domain(DomainName="agent-made", DefaultExpirationDays=1),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert _code(exc) == "AccessDeniedException"
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert live_server.client().batch_get_profile(DomainName=domain, ProfileIds=[pid])["Profiles"]


def test_search_and_reports_every_requested_key_value(live_server, domain):
    # The model's Profile.FoundByItems: with AND, "all of the key-value(s) pairs that were
    # specified in the request"; with OR, only the pairs the profile was found by (spec §4).
    client = live_server.client()
    client.create_profile(DomainName=domain, FirstName="Ann", PhoneNumber="+14155550111")
    bob = client.create_profile(DomainName=domain, FirstName="Bob", PhoneNumber="+14155550112")
    extra = [{"KeyName": "_fullName", "Values": ["bob", "robert"]}]
    phones = ("4155550111", "4155550112")
    [both] = _search(
        client, domain, "_phone", *phones, AdditionalSearchKeys=extra, LogicalOperator="AND"
    )
    assert both["ProfileId"] == bob["ProfileId"]
    assert both["FoundByItems"] == [
        {"KeyName": "_phone", "Values": list(phones)},
        {"KeyName": "_fullName", "Values": ["bob", "robert"]},
    ]
    either = _search(
        client, domain, "_phone", *phones, AdditionalSearchKeys=extra, LogicalOperator="OR"
    )
    found_by = {i["ProfileId"]: i["FoundByItems"] for i in either}
    assert found_by[bob["ProfileId"]] == [
        {"KeyName": "_phone", "Values": ["4155550112"]},
        {"KeyName": "_fullName", "Values": ["bob"]},
    ]
