"""The 250 KB limit on a profile's size through boto3 against a live server (both backends):
CreateProfile, UpdateProfile and MergeProfiles answer BadRequestException naming the limit and
the size, and PutProfileObject dead-letters a record that would take its profile over it (as it
does every record it cannot apply) with that reason; the profiles stay as they were."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from openprofiles.dlq.service import list_messages

LIMIT = 256_000
NOTES: dict[str, Any] = {
    "Description": "notes",
    "AllowProfileCreation": True,
    "Fields": {
        "id": {"Source": "_source.id"},
        "email": {
            "Source": "_source.email",
            "Target": "_profile.EmailAddress",
            "ContentType": "EMAIL_ADDRESS",
        },
        "note": {"Source": "_source.note", "Target": "_profile.Attributes.Note"},
    },
    "Keys": {
        "noteId": [{"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["id"]}],
        "_email": [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["email"]}],
    },
}


@pytest.fixture
def domain(live_server: Any) -> str:
    name = f"z-{uuid.uuid4().hex[:10]}"
    client = live_server.client()
    client.create_domain(DomainName=name, DefaultExpirationDays=30)
    client.put_profile_object_type(DomainName=name, ObjectTypeName="Notes", **NOTES)
    return name


def size_of(profile: dict[str, Any]) -> int:
    return len(json.dumps(profile, separators=(",", ":"), ensure_ascii=False).encode())


def filler(size: int, **fields: Any) -> dict[str, str]:
    """Attributes that make a profile of `fields` `size` bytes (ids are 32 characters), of
    values no longer than the API allows (255 characters)."""
    attributes: dict[str, str] = {}
    total = size_of({"ProfileId": "0" * 32, **fields, "Attributes": {}})
    while True:
        key = f"k{len(attributes):05d}"
        entry = len(f'"{key}":""') + (1 if attributes else 0)
        value = min(255, size - total - entry)
        attributes[key] = "b" * value
        total += entry + value
        if total == size:
            break
    assert size_of({"ProfileId": "0" * 32, **fields, "Attributes": attributes}) == size
    return attributes


def refused(exc: pytest.ExceptionInfo[ClientError], size: int) -> None:
    error = exc.value.response["Error"]
    assert error["Code"] == "BadRequestException"
    assert f"would be {size} bytes, over the limit of {LIMIT} bytes (250 KB)" in error["Message"]


def get(client: Any, domain: str, profile_id: str) -> dict[str, Any]:
    found = client.search_profiles(DomainName=domain, KeyName="_profileId", Values=[profile_id])
    (item,) = found["Items"]
    return {k: v for k, v in item.items() if k != "FoundByItems"}


def test_profile_writes_over_the_limit_are_refused(live_server, domain):
    client = live_server.client()
    with pytest.raises(ClientError) as exc:
        client.create_profile(
            DomainName=domain, FirstName="A", Attributes=filler(LIMIT + 1, FirstName="A")
        )
    refused(exc, LIMIT + 1)

    at_limit = filler(LIMIT, FirstName="A")
    pid = client.create_profile(DomainName=domain, FirstName="A", Attributes=at_limit)["ProfileId"]
    before = get(client, domain, pid)
    assert size_of(before) == LIMIT
    with pytest.raises(ClientError) as exc:
        client.update_profile(DomainName=domain, ProfileId=pid, LastName="B")
    refused(exc, LIMIT + len(',"LastName":"B"'))
    assert get(client, domain, pid) == before

    other = client.create_profile(DomainName=domain, LastName="B")["ProfileId"]
    with pytest.raises(ClientError) as exc:
        client.merge_profiles(DomainName=domain, MainProfileId=pid, ProfileIdsToBeMerged=[other])
    refused(exc, LIMIT + len(',"LastName":"B"'))
    assert get(client, domain, pid) == before
    assert get(client, domain, other)["LastName"] == "B"


def test_put_profile_object_dead_letters_a_record_that_would_overfill(live_server, domain):
    client = live_server.client()
    fields = {"EmailAddress": "ada@example.com"}
    pid = client.create_profile(
        DomainName=domain, **fields, Attributes=filler(LIMIT - 15, **fields)
    )["ProfileId"]
    before = get(client, domain, pid)
    body = json.dumps({"id": "n1", "email": "ada@example.com", "note": "too long"})
    key = client.put_profile_object(DomainName=domain, ObjectTypeName="Notes", Object=body)[
        "ProfileObjectUniqueKey"
    ]
    assert get(client, domain, pid) == before
    with live_server.services.read() as tx:
        (letter,) = list_messages(tx, domain_name=domain)
    assert (letter.message_id, letter.object_json, letter.category) == (
        key,
        body,
        "invalid_value",
    )
    assert f"over the limit of {LIMIT} bytes" in letter.reason
    assert pid in letter.reason
    short = json.dumps({"id": "n2", "email": "ada@example.com", "note": "ok"})
    client.put_profile_object(DomainName=domain, ObjectTypeName="Notes", Object=short)
    assert get(client, domain, pid)["Attributes"]["Note"] == "ok"
