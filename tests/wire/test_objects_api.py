"""PutProfileObject, ListProfileObjects and DeleteProfileObject through a real boto3 client
against a live server (both backends), including the error codes and dead-lettering."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError
from sqlalchemy import func, select

from openprofiles.dlq.service import list_messages
from openprofiles.store.schema import profile

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
        "first": {"Source": "_source.first", "Target": "_profile.FirstName"},
        "order": {"Source": "_source.order"},
    },
    "Keys": {
        "crmId": [{"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["id"]}],
        "_email": [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["email"]}],
        "orderRef": [{"FieldNames": ["order"]}],
    },
}


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


@pytest.fixture
def domain(live_server: Any) -> str:
    name = f"o-{uuid.uuid4().hex[:10]}"
    client = live_server.client()
    client.create_domain(DomainName=name, DefaultExpirationDays=30)
    client.put_profile_object_type(DomainName=name, ObjectTypeName="Crm", **CRM)
    closed = {**CRM, "AllowProfileCreation": False}
    client.put_profile_object_type(DomainName=name, ObjectTypeName="Closed", **closed)
    return name


def _put(client: Any, domain: str, obj: Any, type_name: str = "Crm") -> str:
    body = obj if isinstance(obj, str) else json.dumps(obj)
    return str(
        client.put_profile_object(DomainName=domain, ObjectTypeName=type_name, Object=body)[
            "ProfileObjectUniqueKey"
        ]
    )


def _profile_id(client: Any, domain: str, email: str) -> str:
    items = client.search_profiles(DomainName=domain, KeyName="_email", Values=[email])["Items"]
    assert len(items) == 1
    return str(items[0]["ProfileId"])


def test_put_creates_a_profile_and_lists_the_object(live_server: Any, domain: str) -> None:
    client = live_server.client()
    key = _put(client, domain, {"id": "c1", "email": "ada@example.com", "first": "Ada"})
    pid = _profile_id(client, domain, "ADA@example.com")
    profile = client.batch_get_profile(DomainName=domain, ProfileIds=[pid])["Profiles"][0]
    assert profile["FirstName"] == "Ada"
    items = client.list_profile_objects(DomainName=domain, ObjectTypeName="Crm", ProfileId=pid)[
        "Items"
    ]
    assert items == [
        {
            "ObjectTypeName": "Crm",
            "ProfileObjectUniqueKey": key,
            "Object": json.dumps({"id": "c1", "email": "ada@example.com", "first": "Ada"}),
        }
    ]
    # Same UNIQUE value again: same key, the object replaced.
    assert _put(client, domain, {"id": "c1", "email": "ada@example.com", "first": "Ad"}) == key
    stats = client.get_domain(DomainName=domain)["Stats"]
    assert stats["ObjectCount"] == 1
    assert stats["TotalSize"] > 0


def test_list_is_paged_newest_first_and_filtered(live_server: Any, domain: str) -> None:
    client = live_server.client()
    keys = [
        _put(client, domain, {"id": f"c{i}", "email": "bob@example.com", "order": f"o{i % 2}"})
        for i in range(5)
    ]
    pid = _profile_id(client, domain, "bob@example.com")
    seen: list[str] = []
    token = None
    while True:
        page = client.list_profile_objects(
            DomainName=domain,
            ObjectTypeName="Crm",
            ProfileId=pid,
            MaxResults=2,
            **({"NextToken": token} if token else {}),
        )
        seen += [item["ProfileObjectUniqueKey"] for item in page["Items"]]
        token = page.get("NextToken")
        if not token:
            break
    assert seen == list(reversed(keys))
    filtered = client.list_profile_objects(
        DomainName=domain,
        ObjectTypeName="Crm",
        ProfileId=pid,
        ObjectFilter={"KeyName": "orderRef", "Values": ["o1"]},
    )["Items"]
    assert sorted(json.loads(i["Object"])["id"] for i in filtered) == ["c1", "c3"]


def test_a_token_of_the_other_ordering_is_refused(live_server: Any, domain: str) -> None:
    """Objects of a contact-record type are listed by contact time, others by write time; a
    NextToken taken before the type became a contact type cannot resume the new ordering."""
    client = live_server.client()
    for i in range(3):
        _put(client, domain, {"id": f"c{i}", "email": "tok@example.com"})
    pid = _profile_id(client, domain, "tok@example.com")
    args = {"DomainName": domain, "ObjectTypeName": "Crm", "ProfileId": pid}
    token = client.list_profile_objects(MaxResults=1, **args)["NextToken"]
    instance = f"arn:aws:connect:us-east-1:111122223333:instance/{uuid.uuid4()}"
    client.put_integration(DomainName=domain, Uri=instance, ObjectTypeName="Crm")
    with pytest.raises(ClientError) as exc:
        client.list_profile_objects(MaxResults=1, NextToken=token, **args)
    assert _code(exc) == "BadRequestException"
    assert "NextToken" in exc.value.response["Error"]["Message"]
    # A fresh listing works in the new ordering.
    assert len(client.list_profile_objects(**args)["Items"]) == 3


def test_delete_profile_object(live_server: Any, domain: str) -> None:
    client = live_server.client()
    key = _put(client, domain, {"id": "c1", "email": "cy@example.com"})
    pid = _profile_id(client, domain, "cy@example.com")
    args = {"DomainName": domain, "ObjectTypeName": "Crm", "ProfileId": pid}
    assert client.delete_profile_object(ProfileObjectUniqueKey=key, **args)["Message"] == "OK"
    assert client.list_profile_objects(**args)["Items"] == []
    with pytest.raises(ClientError) as exc:
        client.delete_profile_object(ProfileObjectUniqueKey=key, **args)
    assert _code(exc) == "ResourceNotFoundException"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("{not json", "could not be parsed"),
        ("[1, 2]", "JSON object"),
        ('"text"', "JSON object"),
        (json.dumps({"id": "x" * 256_001}), "256000"),
    ],
)
def test_put_rejects_bad_objects(live_server: Any, domain: str, body: str, words: str) -> None:
    with pytest.raises(ClientError) as exc:
        _put(live_server.client(), domain, body)
    assert _code(exc) == "BadRequestException"
    assert words in exc.value.response["Error"]["Message"]


def test_put_rejects_standard_types(live_server: Any, domain: str) -> None:
    with pytest.raises(ClientError) as exc:
        _put(live_server.client(), domain, {"id": "1"}, type_name="_profile")
    assert _code(exc) == "BadRequestException"


def test_unknown_object_type_and_domain(live_server: Any, domain: str) -> None:
    client = live_server.client()
    with pytest.raises(ClientError) as exc:
        _put(client, domain, {"id": "1"}, type_name="Nope")
    assert _code(exc) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as exc:
        _put(client, "no-such-domain", {"id": "1"})
    assert _code(exc) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as exc:
        client.list_profile_objects(DomainName=domain, ObjectTypeName="Nope", ProfileId="0" * 32)
    assert _code(exc) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as exc:
        client.list_profile_objects(DomainName=domain, ObjectTypeName="Crm", ProfileId="0" * 32)
    assert _code(exc) == "ResourceNotFoundException"


def test_rejected_record_is_dead_lettered_not_an_error(live_server: Any, domain: str) -> None:
    client = live_server.client()
    body = json.dumps({"id": "c9", "email": "nobody@example.com"})
    key = _put(client, domain, body, type_name="Closed")
    assert key
    assert (
        client.search_profiles(DomainName=domain, KeyName="_email", Values=["nobody@example.com"])[
            "Items"
        ]
        == []
    )
    with live_server.services.read() as tx:
        letters = list_messages(tx, domain_name=domain)
    assert [(x.message_id, x.object_json, x.category) for x in letters] == [
        (key, body, "no_profile")
    ]


# A type whose UNIQUE key is not a PROFILE key: a record can have the one and not the other.
ORDERS: dict[str, Any] = {
    **CRM,
    "Keys": {
        "orderRef": [{"StandardIdentifiers": ["UNIQUE"], "FieldNames": ["order"]}],
        "_email": [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["email"]}],
    },
}


@pytest.mark.parametrize(
    ("type_name", "record", "missing"),
    [
        ("Crm", {"email": "kim@example.com", "first": "Kim"}, "Missing unique key"),
        ("Orders", {"first": "Kim", "order": "o-1"}, "Missing profile key"),
    ],
)
def test_a_record_without_its_unique_or_profile_key_is_a_request_error(
    live_server: Any, domain: str, type_name: str, record: dict[str, Any], missing: str
) -> None:
    """Customer Profiles checks these before processing and answers BadRequestException (spec
    §1.6); the record is still kept in the dead-letter queue, and the error says where."""
    client = live_server.client()
    client.put_profile_object_type(DomainName=domain, ObjectTypeName="Orders", **ORDERS)
    body = json.dumps(record)
    with pytest.raises(ClientError) as exc:
        _put(client, domain, body, type_name=type_name)
    assert _code(exc) == "BadRequestException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    message = exc.value.response["Error"]["Message"]
    assert message.startswith(missing)
    with live_server.services.read() as tx:
        letters = list_messages(tx, domain_name=domain)
    assert [(x.object_json, x.object_type_name, x.category) for x in letters] == [
        (body, type_name, "missing_key")
    ]
    assert message.endswith(f"kept in the dead-letter queue as {letters[0].message_id}.")
    with live_server.services.read() as tx:
        assert not tx.conn.execute(
            select(func.count()).select_from(profile).where(profile.c.domain_name == domain)
        ).scalar()


def test_concurrent_puts_for_one_new_customer_make_one_profile(
    live_server: Any, domain: str
) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def put(worker: int) -> None:
        client = live_server.client()
        try:
            barrier.wait(timeout=30)
            for n in range(3):
                _put(client, domain, {"id": f"w{worker}-{n}", "email": "new@example.com"})
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=put, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    pid = _profile_id(live_server.client(), domain, "new@example.com")
    items: list[Any] = []
    token = None
    while True:
        page = live_server.client().list_profile_objects(
            DomainName=domain,
            ObjectTypeName="Crm",
            ProfileId=pid,
            MaxResults=100,
            **({"NextToken": token} if token else {}),
        )
        items += page["Items"]
        token = page.get("NextToken")
        if not token:
            break
    assert len(items) == 24


def test_agent_can_list_objects(live_server: Any, domain: str) -> None:
    _put(live_server.client(), domain, {"id": "c1", "email": "dee@example.com"})
    pid = _profile_id(live_server.client(), domain, "dee@example.com")
    items = live_server.client("agent").list_profile_objects(
        DomainName=domain, ObjectTypeName="Crm", ProfileId=pid
    )["Items"]
    assert len(items) == 1
