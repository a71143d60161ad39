"""Profile objects through a real boto3 client against a live server (both backends): a record
whose mapped value is longer than the standard profile field holds is a pipeline rejection (so
no profile holds what the API could neither return nor take back), and ListProfileObjects'
NextToken resumes only the listing, ObjectFilter included, that it came from."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from openprofiles.dlq.service import list_messages

ACCOUNT_TYPE: dict[str, Any] = {
    "Description": "accounts",
    "AllowProfileCreation": True,
    "Fields": {
        "id": {"Source": "_source.id", "Target": "_profile.AccountNumber"},
        "email": {
            "Source": "_source.email",
            "Target": "_profile.EmailAddress",
            "ContentType": "EMAIL_ADDRESS",
        },
        "city": {"Source": "_source.city", "Target": "_profile.Address.City"},
        "tier": {"Source": "_source.tier", "Target": "_profile.Attributes.Tier"},
    },
    "Keys": {
        "id": [{"StandardIdentifiers": ["UNIQUE"], "FieldNames": ["id"]}],
        "email": [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["email"]}],
    },
}
# Never to be seen in an answer or a dead-letter reason: the value is personal data.
SECRET = "Lovelace"


@pytest.fixture
def domain(live_server: Any) -> str:
    name = f"fb-{uuid.uuid4().hex[:10]}"
    client = live_server.client()
    client.create_domain(DomainName=name, DefaultExpirationDays=30)
    client.put_profile_object_type(DomainName=name, ObjectTypeName="T", **ACCOUNT_TYPE)
    return name


def _search(client: Any, domain: str, email: str) -> list[dict[str, Any]]:
    return list(
        client.search_profiles(DomainName=domain, KeyName="_email", Values=[email])["Items"]
    )


@pytest.mark.parametrize(
    ("member", "target"),
    [
        ("id", "_profile.AccountNumber"),
        ("city", "_profile.Address.City"),
        ("tier", "_profile.Attributes.Tier"),
    ],
)
def test_put_dead_letters_a_value_longer_than_its_profile_field(
    live_server: Any, domain: str, member: str, target: str
) -> None:
    client = live_server.client()
    record = {"id": "a-1", "email": "ada@example.com", member: SECRET * 12_500}
    body = json.dumps(record)
    key = client.put_profile_object(DomainName=domain, ObjectTypeName="T", Object=body)[
        "ProfileObjectUniqueKey"
    ]
    with live_server.services.read() as tx:
        (letter,) = list_messages(tx, domain_name=domain)
    assert (letter.message_id, letter.object_json, letter.category) == (key, body, "invalid_value")
    assert letter.reason == (
        f"Field {member}: its value has 100000 characters, but {target} holds at most 255."
    )
    assert _search(client, domain, "ada@example.com") == []
    assert client.get_domain(DomainName=domain)["Stats"]["ObjectCount"] == 0


def test_batch_put_reports_the_overlong_item_and_applies_the_others(
    live_server: Any, domain: str
) -> None:
    client = live_server.client()
    long_record = json.dumps({"id": SECRET * 12_500, "email": "ada@example.com"})
    out = client.batch_put_profile_object(
        DomainName=domain,
        ObjectTypeName="T",
        Items=[
            {"Id": "long", "Object": long_record},
            {"Id": "fine", "Object": json.dumps({"id": "a-2", "email": "grace@example.com"})},
        ],
    )
    assert [s["Id"] for s in out["Successful"]] == ["fine"]
    (failed,) = out["Failed"]
    assert (failed["Id"], failed["Code"]) == ("long", 400)
    assert "_profile.AccountNumber holds at most 255" in failed["Message"]
    assert SECRET not in failed["Message"]
    with live_server.services.read() as tx:
        (letter,) = list_messages(tx, domain_name=domain)
    assert letter.message_id in failed["Message"]
    assert letter.category == "invalid_value"
    assert _search(client, domain, "ada@example.com") == []
    # What was stored round-trips: the profile SearchProfiles shows, UpdateProfile takes back.
    (grace,) = _search(client, domain, "grace@example.com")
    client.update_profile(
        DomainName=domain, ProfileId=grace["ProfileId"], AccountNumber=grace["AccountNumber"]
    )


def _ids(page: dict[str, Any]) -> list[str]:
    return [json.loads(item["Object"])["id"] for item in page["Items"]]


def test_a_list_token_resumes_only_the_listing_it_came_from(live_server: Any, domain: str) -> None:
    client = live_server.client()
    for n in range(4):
        record = {"id": f"p{n}", "email": "bob@example.com"}
        client.put_profile_object(DomainName=domain, ObjectTypeName="T", Object=json.dumps(record))
    (owner,) = _search(client, domain, "bob@example.com")
    listing = {"DomainName": domain, "ObjectTypeName": "T", "ProfileId": owner["ProfileId"]}
    by_p0_p3 = {"KeyName": "id", "Values": ["p0", "p3"]}

    unfiltered = client.list_profile_objects(**listing, MaxResults=1)
    filtered = client.list_profile_objects(**listing, MaxResults=1, ObjectFilter=by_p0_p3)
    for token, other in [
        # An unfiltered listing's token with a filter, a filtered one's without or with another.
        (unfiltered["NextToken"], {"ObjectFilter": by_p0_p3}),
        (filtered["NextToken"], {}),
        (filtered["NextToken"], {"ObjectFilter": {"KeyName": "id", "Values": ["p0", "p2"]}}),
    ]:
        with pytest.raises(ClientError) as exc:
            client.list_profile_objects(**listing, NextToken=token, **other)
        error = exc.value.response["Error"]
        assert error["Code"] == "BadRequestException"
        assert "NextToken is invalid" in error["Message"]

    # The same query resumes where it stopped.
    rest = client.list_profile_objects(
        **listing, NextToken=filtered["NextToken"], ObjectFilter=by_p0_p3
    )
    assert sorted(_ids(filtered) + _ids(rest)) == ["p0", "p3"]
    assert "NextToken" not in rest
    resumed = client.list_profile_objects(**listing, NextToken=unfiltered["NextToken"])
    assert len(_ids(unfiltered) + _ids(resumed)) == 4
