"""AddProfileKey on the predefined keys the profile's own fields give (`_phone`, `_email`,
`_account`, `_fullName`, `_profileId`), which the model's KeyName documents as usable: the value
is normalised by the key's content type, found by SearchProfiles, kept when UpdateProfile
recomputes the derived rows, removed by DeleteProfileKey, and carried by a merge. Through boto3
against a live server, on both backends."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError


@pytest.fixture
def domain(live_server: Any) -> str:
    name = f"d-{uuid.uuid4().hex[:10]}"
    live_server.client().create_domain(DomainName=name, DefaultExpirationDays=30)
    return name


def _found(client: Any, domain: str, key: str, value: str) -> list[str]:
    items = client.search_profiles(DomainName=domain, KeyName=key, Values=[value])["Items"]
    return [item["ProfileId"] for item in items]


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    error = exc.value.response["Error"]
    return str(error["Code"]), str(error["Message"])


def test_a_second_phone_number_is_found_kept_and_deleted(live_server: Any, domain: str) -> None:
    client = live_server.client()
    pid = client.create_profile(DomainName=domain, FirstName="Ann", PhoneNumber="+1 206 555 0100")[
        "ProfileId"
    ]
    added = client.add_profile_key(
        DomainName=domain, ProfileId=pid, KeyName="_phone", Values=["(206) 555-0199"]
    )
    assert added["KeyName"] == "_phone" and added["Values"] == ["(206) 555-0199"]
    # Normalised as a phone number: found in another format.
    assert _found(client, domain, "_phone", "+12065550199") == [pid]

    # UpdateProfile recomputes the derived rows; the added number stays.
    client.update_profile(DomainName=domain, ProfileId=pid, PhoneNumber="+1 206 555 0101")
    assert _found(client, domain, "_phone", "206-555-0199") == [pid]
    assert _found(client, domain, "_phone", "+12065550100") == []
    assert _found(client, domain, "_phone", "+12065550101") == [pid]

    client.delete_profile_key(
        DomainName=domain, ProfileId=pid, KeyName="_phone", Values=["+1 206 555 0199"]
    )
    assert _found(client, domain, "_phone", "+12065550199") == []
    # The profile's own number still cannot be deleted by hand.
    with pytest.raises(ClientError) as refused:
        client.delete_profile_key(
            DomainName=domain, ProfileId=pid, KeyName="_phone", Values=["+12065550101"]
        )
    assert _error(refused)[0] == "BadRequestException"
    assert _found(client, domain, "_phone", "+12065550101") == [pid]


def test_email_account_and_full_name_are_normalised_as_search_does(
    live_server: Any, domain: str
) -> None:
    client = live_server.client()
    pid = client.create_profile(DomainName=domain, FirstName="Bea", LastName="Arthur")["ProfileId"]
    for key, value in (
        ("_email", " Bea.Work@Example.COM "),
        ("_account", "ACC-77"),
        ("_fullName", "Bernice  Frankel"),
    ):
        client.add_profile_key(DomainName=domain, ProfileId=pid, KeyName=key, Values=[value])
    assert _found(client, domain, "_email", "bea.work@example.com") == [pid]
    assert _found(client, domain, "_account", "ACC-77") == [pid]
    assert _found(client, domain, "_account", "acc-77") == []  # a string compares as written
    assert _found(client, domain, "_fullName", "bernice frankel") == [pid]
    # The derived name is still there beside the added one.
    assert _found(client, domain, "_fullName", "Bea Arthur") == [pid]


def test_a_merge_carries_added_values(live_server: Any, domain: str) -> None:
    client = live_server.client()
    main = client.create_profile(DomainName=domain, FirstName="Cy")["ProfileId"]
    merged = client.create_profile(DomainName=domain, FirstName="Cyrus")["ProfileId"]
    client.add_profile_key(
        DomainName=domain, ProfileId=merged, KeyName="_email", Values=["cy@example.com"]
    )
    client.merge_profiles(DomainName=domain, MainProfileId=main, ProfileIdsToBeMerged=[merged])
    assert _found(client, domain, "_email", "CY@example.com") == [main]
    client.update_profile(DomainName=domain, ProfileId=main, LastName="Young")
    assert _found(client, domain, "_email", "cy@example.com") == [main]
    client.delete_profile_key(
        DomainName=domain, ProfileId=main, KeyName="_email", Values=["cy@example.com"]
    )
    assert _found(client, domain, "_email", "cy@example.com") == []


def test_an_added_profile_id_is_another_id_the_profile_is_found_by(
    live_server: Any, domain: str
) -> None:
    client = live_server.client()
    pid = client.create_profile(DomainName=domain, FirstName="Di")["ProfileId"]
    other = client.create_profile(DomainName=domain, FirstName="Ed")["ProfileId"]
    client.add_profile_key(
        DomainName=domain, ProfileId=pid, KeyName="_profileId", Values=["legacy-crm-42"]
    )
    assert _found(client, domain, "_profileId", "legacy-crm-42") == [pid]
    # A record that names the profile by the added id lands on it.
    client.put_profile_object_type(
        DomainName=domain,
        ObjectTypeName="Legacy",
        Description="records of the former CRM",
        AllowProfileCreation=False,
        Fields={"id": {"Source": "_source.id"}, "pid": {"Source": "_source.pid"}},
        Keys={
            "legacyId": [{"StandardIdentifiers": ["UNIQUE"], "FieldNames": ["id"]}],
            "_profileId": [
                {"StandardIdentifiers": ["PROFILE", "LOOKUP_ONLY"], "FieldNames": ["pid"]}
            ],
        },
    )
    client.put_profile_object(
        DomainName=domain, ObjectTypeName="Legacy", Object='{"id": "o-1", "pid": "legacy-crm-42"}'
    )
    objects = client.list_profile_objects(DomainName=domain, ObjectTypeName="Legacy", ProfileId=pid)
    assert [json.loads(o["Object"])["id"] for o in objects["Items"]] == ["o-1"]
    # Its own id again is no conflict.
    client.add_profile_key(DomainName=domain, ProfileId=pid, KeyName="_profileId", Values=[pid])

    # Another profile's id would make the key name two customers: refused, nothing added.
    with pytest.raises(ClientError) as refused:
        client.add_profile_key(
            DomainName=domain, ProfileId=pid, KeyName="_profileId", Values=["x-1", other]
        )
    code, message = _error(refused)
    assert code == "BadRequestException" and other in message
    assert _found(client, domain, "_profileId", other) == [other]
    assert _found(client, domain, "_profileId", "x-1") == []

    client.delete_profile_key(
        DomainName=domain, ProfileId=pid, KeyName="_profileId", Values=["legacy-crm-42"]
    )
    assert _found(client, domain, "_profileId", "legacy-crm-42") == []
