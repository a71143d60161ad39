"""A key value stays searchable while any source still backs it (profile_key rows per origin,
migration 0017): deleting one object type, or the field a derived key came from, must not take
a value another object type, the profile's own fields or AddProfileKey still give. And object
types named like the internal origin markers ("profile", "explicit", "merge") are ordinary
types. DeleteProfileKey removes a value whatever gave it, except one of the profile's own
fields. Through boto3 against a live server, on both backends."""

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


def _put_type(client: Any, domain: str, name: str, *, email_target: bool = False) -> None:
    email: dict[str, Any] = {"Source": "_source.email", "ContentType": "EMAIL_ADDRESS"}
    if email_target:
        email["Target"] = "_profile.EmailAddress"
    client.put_profile_object_type(
        DomainName=domain,
        ObjectTypeName=name,
        Description=name,
        AllowProfileCreation=True,
        Fields={"id": {"Source": "_source.id"}, "cust": {"Source": "_source.cust"}, "email": email},
        Keys={
            "uid": [{"StandardIdentifiers": ["UNIQUE"], "FieldNames": ["id"]}],
            "custId": [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["cust"]}],
            "_email": [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["email"]}],
        },
    )


def _put(client: Any, domain: str, type_name: str, **record: str) -> None:
    client.put_profile_object(
        DomainName=domain, ObjectTypeName=type_name, Object=json.dumps(record)
    )


def _found(client: Any, domain: str, key: str, value: str) -> list[str]:
    items = client.search_profiles(DomainName=domain, KeyName=key, Values=[value])["Items"]
    return [p["ProfileId"] for p in items]


def test_deleting_a_type_keeps_the_keys_another_type_still_gives(live_server, domain):
    client = live_server.client()
    _put_type(client, domain, "TypeA")
    _put_type(client, domain, "TypeB")
    _put(client, domain, "TypeA", id="a1", cust="C42", email="ann@example.com")
    _put(client, domain, "TypeB", id="b1", cust="C42", email="ann@example.com")
    [profile_id] = _found(client, domain, "custId", "C42")

    client.delete_profile_object_type(DomainName=domain, ObjectTypeName="TypeA")

    assert _found(client, domain, "custId", "C42") == [profile_id]
    assert _found(client, domain, "_email", "ann@example.com") == [profile_id]
    # TypeB's next object lands on the same profile instead of creating a second one.
    _put(client, domain, "TypeB", id="b2", cust="C42", email="ann@example.com")
    assert _found(client, domain, "custId", "C42") == [profile_id]
    # The type's own key values go with it.
    _put_type(client, domain, "TypeC")
    _put(client, domain, "TypeC", id="c1", cust="C77", email="cy@example.com")
    client.delete_profile_object_type(DomainName=domain, ObjectTypeName="TypeC")
    assert _found(client, domain, "custId", "C77") == []
    keys = client.get_profile_object_type(DomainName=domain, ObjectTypeName="TypeB")["Keys"]
    assert "custId" in keys


def test_deleting_a_type_keeps_a_key_the_profile_fields_and_add_profile_key_give(
    live_server, domain
):
    client = live_server.client()
    _put_type(client, domain, "TypeA")
    _put(client, domain, "TypeA", id="a1", cust="C1", email="bo@example.com")
    [profile_id] = _found(client, domain, "custId", "C1")
    # The same values again from the profile's own field and from an agent.
    client.update_profile(DomainName=domain, ProfileId=profile_id, EmailAddress="bo@example.com")
    client.add_profile_key(DomainName=domain, ProfileId=profile_id, KeyName="custId", Values=["C1"])

    client.delete_profile_object_type(DomainName=domain, ObjectTypeName="TypeA")

    assert _found(client, domain, "_email", "bo@example.com") == [profile_id]
    assert _found(client, domain, "custId", "C1") == [profile_id]
    profile = client.search_profiles(DomainName=domain, KeyName="_profileId", Values=[profile_id])
    assert profile["Items"][0]["EmailAddress"] == "bo@example.com"


def test_changing_a_field_keeps_the_derived_key_value_an_object_type_still_gives(
    live_server, domain
):
    client = live_server.client()
    _put_type(client, domain, "TypeA")
    created = client.create_profile(DomainName=domain, EmailAddress="cy@example.com")
    profile_id = created["ProfileId"]
    _put(client, domain, "TypeA", id="a1", cust="C5", email="cy@example.com")
    assert _found(client, domain, "custId", "C5") == [profile_id]

    client.update_profile(DomainName=domain, ProfileId=profile_id, EmailAddress="new@example.com")

    assert _found(client, domain, "_email", "cy@example.com") == [profile_id]
    assert _found(client, domain, "_email", "new@example.com") == [profile_id]


@pytest.mark.parametrize("type_name", ["profile", "explicit", "merge"])
def test_a_type_named_like_an_origin_marker_is_an_ordinary_type(live_server, domain, type_name):
    client = live_server.client()
    other = client.create_profile(DomainName=domain, EmailAddress="dee@example.com")["ProfileId"]
    client.add_profile_key(DomainName=domain, ProfileId=other, KeyName="custId", Values=["X9"])
    # A merged-away profile's derived keys now sit on the main profile.
    merged = client.create_profile(DomainName=domain, EmailAddress="fay@example.com")["ProfileId"]
    client.merge_profiles(DomainName=domain, MainProfileId=other, ProfileIdsToBeMerged=[merged])
    _put_type(client, domain, type_name, email_target=True)
    _put(client, domain, type_name, id="t1", cust="C8", email="eve@example.com")
    [typed] = _found(client, domain, "custId", "C8")
    # A profile update recomputes derived keys; the type's keys must stay.
    client.update_profile(DomainName=domain, ProfileId=typed, FirstName="Eve")
    assert _found(client, domain, "custId", "C8") == [typed]

    client.delete_profile_object_type(DomainName=domain, ObjectTypeName=type_name)

    # Derived and explicit keys of the domain are untouched; the type's own are gone.
    assert _found(client, domain, "_email", "dee@example.com") == [other]
    assert _found(client, domain, "_profileId", other) == [other]
    assert _found(client, domain, "custId", "X9") == [other]
    assert _found(client, domain, "_profileId", merged) == [other]
    assert _found(client, domain, "_email", "fay@example.com") == [other]
    assert _found(client, domain, "custId", "C8") == []


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    error = exc.value.response["Error"]
    return str(error["Code"]), str(error["Message"])


def test_delete_profile_key_removes_values_a_merge_moved(live_server, domain):
    client = live_server.client()
    main = client.create_profile(DomainName=domain, EmailAddress="gus@example.com")["ProfileId"]
    merged = client.create_profile(DomainName=domain, EmailAddress="gil@example.com")["ProfileId"]
    client.add_profile_key(DomainName=domain, ProfileId=merged, KeyName="custId", Values=["G1"])
    client.merge_profiles(DomainName=domain, MainProfileId=main, ProfileIdsToBeMerged=[merged])
    assert _found(client, domain, "_email", "gil@example.com") == [main]

    for key, value in (("_email", "gil@example.com"), ("custId", "G1"), ("_profileId", merged)):
        client.delete_profile_key(DomainName=domain, ProfileId=main, KeyName=key, Values=[value])
        assert _found(client, domain, key, value) == []

    # A value of the profile's own fields (or its id) would come back with its next write.
    for key, value in (("_email", "gus@example.com"), ("_profileId", main)):
        with pytest.raises(ClientError) as refused:
            client.delete_profile_key(
                DomainName=domain, ProfileId=main, KeyName=key, Values=[value]
            )
        code, message = _error(refused)
        assert code == "BadRequestException"
        assert f"{value} of key {key}" in message and "update the profile" in message
        assert _found(client, domain, key, value) == [main]
    with pytest.raises(ClientError) as missing:
        client.delete_profile_key(
            DomainName=domain, ProfileId=main, KeyName="_email", Values=["gil@example.com"]
        )
    assert _error(missing)[0] == "ResourceNotFoundException"


def test_delete_profile_key_removes_values_an_object_type_gave(live_server, domain):
    client = live_server.client()
    _put_type(client, domain, "TypeA")
    profile_id = client.create_profile(DomainName=domain, FirstName="Hal")["ProfileId"]
    client.add_profile_key(DomainName=domain, ProfileId=profile_id, KeyName="custId", Values=["H1"])
    _put(client, domain, "TypeA", id="a1", cust="H1", email="hal@example.com")
    assert _found(client, domain, "_email", "hal@example.com") == [profile_id]

    client.delete_profile_key(
        DomainName=domain, ProfileId=profile_id, KeyName="_email", Values=["hal@example.com"]
    )
    # Both the agent's and the type's row of the value go.
    client.delete_profile_key(
        DomainName=domain, ProfileId=profile_id, KeyName="custId", Values=["H1"]
    )

    assert _found(client, domain, "_email", "hal@example.com") == []
    assert _found(client, domain, "custId", "H1") == []
    # The object stays on the profile; only its values left the index.
    objects = client.list_profile_objects(
        DomainName=domain, ObjectTypeName="TypeA", ProfileId=profile_id
    )["Items"]
    assert len(objects) == 1
