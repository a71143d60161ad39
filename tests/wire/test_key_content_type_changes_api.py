"""A key's stored values follow its ContentType when it changes (spec §1.4, §1.5 rule 8).

Values are matched after normalisation by the key's ContentType in force. A value stored while
the key had another one (an AddProfileKey value before PutProfileObjectType first defined the
key, an EMAIL_ADDRESS key's value after DeleteProfileObjectType removed its only definition, an
ingested PHONE_NUMBER value once its type is re-defined) stays found by SearchProfiles, matched
by an ingested record, and erasable by DeleteProfileKey under the ContentType in force. A type
whose stored objects were indexed under a key's ContentType cannot change it. Through boto3
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


def _filtered(client: Any, domain: str, type_name: str, pid: str, key: str, value: str) -> int:
    listed = client.list_profile_objects(
        DomainName=domain,
        ObjectTypeName=type_name,
        ProfileId=pid,
        ObjectFilter={"KeyName": key, "Values": [value]},
    )
    return len(listed["Items"])


def _email_type(key_identifiers: list[str]) -> dict[str, Any]:
    """A type whose key memberEmail is an EMAIL_ADDRESS field `e`."""
    fields: dict[str, Any] = {
        "id": {"Source": "_source.id"},
        "e": {"Source": "_source.e", "ContentType": "EMAIL_ADDRESS"},
    }
    keys: dict[str, Any] = {"memberEmail": [{"FieldNames": ["e"]}]}
    if key_identifiers:
        keys["memberEmail"][0]["StandardIdentifiers"] = key_identifiers
    else:
        keys["tid"] = [{"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["id"]}]
    return {
        "Description": "loyalty members",
        "AllowProfileCreation": True,
        "Fields": fields,
        "Keys": keys,
    }


def test_a_value_added_before_the_key_is_defined_is_matched_by_ingestion(
    live_server: Any, domain: str
) -> None:
    client = live_server.client()
    pid = client.create_profile(DomainName=domain, FirstName="Loyal")["ProfileId"]
    client.add_profile_key(
        DomainName=domain, ProfileId=pid, KeyName="memberEmail", Values=["Bob.Smith@Example.com"]
    )
    client.put_profile_object_type(
        DomainName=domain, ObjectTypeName="Loyalty", **_email_type(["PROFILE", "UNIQUE"])
    )
    client.put_profile_object(
        DomainName=domain,
        ObjectTypeName="Loyalty",
        Object=json.dumps({"id": "m1", "e": "Bob.Smith@Example.com"}),
    )
    # The record lands on the profile that holds its key; no second profile.
    listed = client.list_profile_objects(DomainName=domain, ObjectTypeName="Loyalty", ProfileId=pid)
    assert len(listed["Items"]) == 1
    assert _found(client, domain, "memberEmail", "bob.smith@example.com") == [pid]


def test_a_value_added_before_the_key_is_defined_is_found_and_erased(
    live_server: Any, domain: str
) -> None:
    client = live_server.client()
    pid = client.create_profile(DomainName=domain, FirstName="Key")["ProfileId"]
    client.add_profile_key(
        DomainName=domain, ProfileId=pid, KeyName="memberEmail", Values=["Bob.Smith@Example.com"]
    )
    client.put_profile_object_type(DomainName=domain, ObjectTypeName="T", **_email_type([]))
    # Now an EMAIL_ADDRESS key: found whatever the case.
    assert _found(client, domain, "memberEmail", "Bob.Smith@Example.com") == [pid]
    assert _found(client, domain, "memberEmail", "bob.smith@example.com") == [pid]
    client.delete_profile_key(
        DomainName=domain, ProfileId=pid, KeyName="memberEmail", Values=["Bob.Smith@Example.com"]
    )
    assert _found(client, domain, "memberEmail", "bob.smith@example.com") == []


def test_values_equal_under_the_new_content_type_become_one(live_server: Any, domain: str) -> None:
    client = live_server.client()
    pid = client.create_profile(DomainName=domain, FirstName="Two")["ProfileId"]
    client.add_profile_key(
        DomainName=domain,
        ProfileId=pid,
        KeyName="memberEmail",
        Values=["Bob@Example.com", "BOB@example.COM"],
    )
    client.put_profile_object_type(DomainName=domain, ObjectTypeName="T", **_email_type([]))
    assert _found(client, domain, "memberEmail", "bob@example.com") == [pid]
    # One DeleteProfileKey erases the value, whichever of its forms was stored.
    client.delete_profile_key(
        DomainName=domain, ProfileId=pid, KeyName="memberEmail", Values=["bob@EXAMPLE.com"]
    )
    for value in ("bob@example.com", "Bob@Example.com", "BOB@example.COM"):
        assert _found(client, domain, "memberEmail", value) == []


def test_deleting_the_only_definition_makes_the_key_a_string_again(
    live_server: Any, domain: str
) -> None:
    client = live_server.client()
    client.put_profile_object_type(
        DomainName=domain, ObjectTypeName="Loyalty", **_email_type(["PROFILE", "UNIQUE"])
    )
    pid = client.create_profile(DomainName=domain, FirstName="Loyal")["ProfileId"]
    client.add_profile_key(
        DomainName=domain, ProfileId=pid, KeyName="memberEmail", Values=["Bob.Smith@Example.com"]
    )
    assert _found(client, domain, "memberEmail", "bob.smith@example.com") == [pid]
    client.delete_profile_object_type(DomainName=domain, ObjectTypeName="Loyalty")
    # Compared as written now: the value as added finds it, another case does not.
    assert _found(client, domain, "memberEmail", "Bob.Smith@Example.com") == [pid]
    assert _found(client, domain, "memberEmail", "bob.smith@example.com") == []
    client.delete_profile_key(
        DomainName=domain, ProfileId=pid, KeyName="memberEmail", Values=["Bob.Smith@Example.com"]
    )
    assert _found(client, domain, "memberEmail", "Bob.Smith@Example.com") == []


def _phone_type(content_type: str) -> dict[str, Any]:
    return {
        "Description": "k2",
        "AllowProfileCreation": True,
        "Fields": {
            "id": {"Source": "_source.id"},
            "a": {"Source": "_source.a", "ContentType": content_type},
        },
        "Keys": {
            "kid": [{"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["id"]}],
            "shared": [{"FieldNames": ["a"]}],
        },
    }


def test_a_type_with_objects_keeps_its_keys_content_types(live_server: Any, domain: str) -> None:
    client = live_server.client()
    client.put_profile_object_type(
        DomainName=domain, ObjectTypeName="K2", **_phone_type("PHONE_NUMBER")
    )
    client.put_profile_object(
        DomainName=domain,
        ObjectTypeName="K2",
        Object=json.dumps({"id": "z1", "a": "(206) 555-0999"}),
    )
    [pid] = _found(client, domain, "kid", "z1")
    with pytest.raises(ClientError) as refused:
        client.put_profile_object_type(
            DomainName=domain, ObjectTypeName="K2", **_phone_type("STRING")
        )
    error = refused.value.response["Error"]
    assert error["Code"] == "BadRequestException"
    assert "Key shared of object type K2 has ContentType PHONE_NUMBER" in error["Message"]
    assert "DeleteProfileObjectType" in error["Message"]
    # Unchanged: found and filtered as a phone number, in any format.
    for value in ("206-555-0999", "(206) 555-0999", "+12065550999"):
        assert _found(client, domain, "shared", value) == [pid]
        assert _filtered(client, domain, "K2", pid, "shared", value) == 1


def test_a_type_without_objects_changes_a_key_and_its_values_follow(
    live_server: Any, domain: str
) -> None:
    client = live_server.client()
    client.put_profile_object_type(
        DomainName=domain, ObjectTypeName="K2", **_phone_type("PHONE_NUMBER")
    )
    stored = client.put_profile_object(
        DomainName=domain,
        ObjectTypeName="K2",
        Object=json.dumps({"id": "z1", "a": "(206) 555-0999"}),
    )
    [pid] = _found(client, domain, "kid", "z1")
    client.delete_profile_object(
        DomainName=domain,
        ObjectTypeName="K2",
        ProfileId=pid,
        ProfileObjectUniqueKey=stored["ProfileObjectUniqueKey"],
    )
    # The object is gone, the profile key it gave stays (its origin is the type): re-digested.
    client.put_profile_object_type(DomainName=domain, ObjectTypeName="K2", **_phone_type("STRING"))
    assert _found(client, domain, "shared", "(206) 555-0999") == [pid]
    assert _found(client, domain, "shared", "+12065550999") == []
    client.delete_profile_key(
        DomainName=domain, ProfileId=pid, KeyName="shared", Values=["(206) 555-0999"]
    )
    assert _found(client, domain, "shared", "(206) 555-0999") == []
