"""BatchPutProfileObject through a real boto3 client against a live server (both backends):
items applied in order through the one pipeline, request errors per item in `Failed`, records
the pipeline rejects dead-lettered and reported in `Failed`, whole-request errors as AWS
errors with nothing written."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError
from tests.wire.test_objects_api import CRM, _code

from openprofiles.dlq.service import list_messages


@pytest.fixture
def domain(live_server: Any) -> str:
    name = f"b-{uuid.uuid4().hex[:10]}"
    client = live_server.client()
    client.create_domain(DomainName=name, DefaultExpirationDays=30)
    client.put_profile_object_type(DomainName=name, ObjectTypeName="Crm", **CRM)
    closed = {**CRM, "AllowProfileCreation": False}
    client.put_profile_object_type(DomainName=name, ObjectTypeName="Closed", **closed)
    return name


def _items(*objects: Any) -> list[dict[str, str]]:
    return [
        {"Id": f"item-{n}", "Object": o if isinstance(o, str) else json.dumps(o)}
        for n, o in enumerate(objects)
    ]


def _search(client: Any, domain: str, email: str) -> list[dict[str, Any]]:
    return list(
        client.search_profiles(DomainName=domain, KeyName="_email", Values=[email])["Items"]
    )


def test_items_are_applied_and_their_keys_answered(live_server: Any, domain: str) -> None:
    client = live_server.client()
    out = client.batch_put_profile_object(
        DomainName=domain,
        ObjectTypeName="Crm",
        Items=_items(
            {"id": "c1", "email": "ada@example.com", "first": "Ada"},
            # Same customer by email, another record: the profile the first item created.
            {"id": "c2", "email": "ADA@example.com"},
            {"id": "c3", "email": "grace@example.com", "first": "Grace"},
        ),
    )
    assert out["Failed"] == []
    assert [s["Id"] for s in out["Successful"]] == ["item-0", "item-1", "item-2"]
    ada = _search(client, domain, "ada@example.com")
    assert [p["FirstName"] for p in ada] == ["Ada"]
    listed = client.list_profile_objects(
        DomainName=domain, ObjectTypeName="Crm", ProfileId=ada[0]["ProfileId"]
    )["Items"]
    assert {i["ProfileObjectUniqueKey"] for i in listed} == {
        s["ProfileObjectUniqueKey"] for s in out["Successful"][:2]
    }
    assert [p["FirstName"] for p in _search(client, domain, "grace@example.com")] == ["Grace"]


def test_a_later_item_with_the_same_unique_key_replaces_the_earlier(
    live_server: Any, domain: str
) -> None:
    client = live_server.client()
    out = client.batch_put_profile_object(
        DomainName=domain,
        ObjectTypeName="Crm",
        Items=_items(
            {"id": "c1", "email": "ada@example.com", "first": "Ada"},
            {"id": "c1", "email": "ada@example.com", "first": "Augusta"},
        ),
    )
    assert out["Failed"] == []
    keys = {s["ProfileObjectUniqueKey"] for s in out["Successful"]}
    assert len(keys) == 1
    (profile,) = _search(client, domain, "ada@example.com")
    listed = client.list_profile_objects(
        DomainName=domain, ObjectTypeName="Crm", ProfileId=profile["ProfileId"]
    )["Items"]
    assert [json.loads(i["Object"])["first"] for i in listed] == ["Augusta"]


def test_a_malformed_item_fails_alone(live_server: Any, domain: str) -> None:
    client = live_server.client()
    out = client.batch_put_profile_object(
        DomainName=domain,
        ObjectTypeName="Crm",
        Items=_items(
            '{"id": "c1", "email": ',
            [1, 2],
            {"id": "c2", "email": "ada@example.com"},
        ),
    )
    assert [s["Id"] for s in out["Successful"]] == ["item-2"]
    failed = {f["Id"]: f for f in out["Failed"]}
    assert sorted(failed) == ["item-0", "item-1"]
    assert {f["Code"] for f in failed.values()} == {400}
    assert "could not be parsed as JSON" in failed["item-0"]["Message"]
    assert "JSON object" in failed["item-1"]["Message"]
    assert len(_search(client, domain, "ada@example.com")) == 1
    # Request errors are the caller's to fix: nothing of them is dead-lettered.
    with live_server.services.read() as tx:
        assert list_messages(tx, domain_name=domain) == []


def test_a_record_the_pipeline_rejects_is_dead_lettered_and_reported(
    live_server: Any, domain: str
) -> None:
    client = live_server.client()
    client.put_profile_object(
        DomainName=domain,
        ObjectTypeName="Crm",
        Object=json.dumps({"id": "c0", "email": "known@example.com"}),
    )
    stranger = json.dumps({"id": "c9", "email": "nobody@example.com"})
    out = client.batch_put_profile_object(
        DomainName=domain,
        ObjectTypeName="Closed",
        Items=[
            {"Id": "stranger", "Object": stranger},
            {"Id": "known", "Object": json.dumps({"id": "c8", "email": "known@example.com"})},
        ],
    )
    assert [s["Id"] for s in out["Successful"]] == ["known"]
    (failed,) = out["Failed"]
    assert failed["Id"] == "stranger" and failed["Code"] == 400
    assert "AllowProfileCreation" in failed["Message"]
    with live_server.services.read() as tx:
        letters = list_messages(tx, domain_name=domain)
    assert [(x.object_type_name, x.object_json, x.category) for x in letters] == [
        ("Closed", stranger, "no_profile")
    ]
    assert letters[0].message_id in failed["Message"]
    assert _search(client, domain, "nobody@example.com") == []


def test_whole_request_errors_write_nothing(live_server: Any, domain: str) -> None:
    client = live_server.client()
    good = {"id": "c1", "email": "ada@example.com"}
    with pytest.raises(ClientError) as exc:
        client.batch_put_profile_object(
            DomainName=domain,
            ObjectTypeName="Crm",
            Items=[
                {"Id": "same", "Object": json.dumps(good)},
                {"Id": "same", "Object": json.dumps({"id": "c2", "email": "b@example.com"})},
            ],
        )
    assert _code(exc) == "BadRequestException"
    assert "same" in exc.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as exc:
        client.batch_put_profile_object(
            DomainName=domain, ObjectTypeName="Crm", Items=_items(*[good] * 11)
        )
    assert _code(exc) == "BadRequestException"
    # An Object over the model's 256,000 characters fails the request's validation whole.
    with pytest.raises(ClientError) as exc:
        client.batch_put_profile_object(
            DomainName=domain, ObjectTypeName="Crm", Items=_items(good, "x" * 256_001)
        )
    assert _code(exc) == "BadRequestException"
    with pytest.raises(ClientError) as exc:
        client.batch_put_profile_object(
            DomainName=domain, ObjectTypeName="Nope", Items=_items(good)
        )
    assert _code(exc) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as exc:
        client.batch_put_profile_object(
            DomainName=domain, ObjectTypeName="_asset", Items=_items(good)
        )
    assert _code(exc) == "BadRequestException"
    with pytest.raises(ClientError) as exc:
        client.batch_put_profile_object(
            DomainName=f"{domain}-gone", ObjectTypeName="Crm", Items=_items(good)
        )
    assert _code(exc) == "ResourceNotFoundException"
    assert _search(client, domain, "ada@example.com") == []
