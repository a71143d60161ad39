"""ListProfileObjects through a real boto3 client against a live server (both backends): its
order is where each object was first stored, newest first, which no write of the object again
changes, so a caller paging through the listing while an object is re-put (the same version or
a changed one) sees it exactly once; a NextToken of the order before (newest write first) is
refused with a clear BadRequestException; an ObjectFilter with no Values is refused, as
SearchProfiles refuses a key with none.

Before, the listing was ordered by the last write: an object re-put while a caller paged moved
to the front, among the pages already read, and the caller never saw it; and an empty Values
answered 200 with no Items, a filter that matched nothing."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError
from tests.wire.test_objects_api import CRM

from openprofiles.wire.pagination import token_scope

EMAIL = "pager@example.com"


@pytest.fixture
def domain(live_server: Any) -> str:
    name = f"lo-{uuid.uuid4().hex[:10]}"
    client = live_server.client()
    client.create_domain(DomainName=name, DefaultExpirationDays=30)
    client.put_profile_object_type(DomainName=name, ObjectTypeName="Crm", **CRM)
    return name


def _record(n: int, first: str = "Ada") -> str:
    return json.dumps({"id": f"r{n}", "email": EMAIL, "first": first})


def _put(client: Any, domain: str, body: str) -> None:
    client.put_profile_object(DomainName=domain, ObjectTypeName="Crm", Object=body)


def _profile_id(client: Any, domain: str) -> str:
    items = client.search_profiles(DomainName=domain, KeyName="_email", Values=[EMAIL])["Items"]
    return str(items[0]["ProfileId"])


def _ids(page: dict[str, Any]) -> list[str]:
    return [json.loads(item["Object"])["id"] for item in page["Items"]]


def _rest(client: Any, listing: dict[str, Any], token: str | None) -> list[str]:
    ids: list[str] = []
    while token:
        page = client.list_profile_objects(**listing, MaxResults=4, NextToken=token)
        ids += _ids(page)
        token = page.get("NextToken")
    return ids


@pytest.mark.parametrize("again", ["same", "changed"])
def test_an_object_put_again_while_paging_is_listed_once(
    live_server: Any, domain: str, again: str
) -> None:
    """r0..r9 stored one by one; the first page (r9..r6) is read; then the oldest (r0, not
    listed yet) and a listed one (r8) are put again, unchanged or changed: the pages that follow
    list r5..r0, r0 once and r8 not again, and a fresh listing keeps the order."""
    client = live_server.client()
    for n in range(10):
        _put(client, domain, _record(n))
    listing = {
        "DomainName": domain,
        "ObjectTypeName": "Crm",
        "ProfileId": _profile_id(client, domain),
    }
    first = client.list_profile_objects(**listing, MaxResults=4)
    assert _ids(first) == ["r9", "r8", "r7", "r6"]

    first_name = "Ada" if again == "same" else "Augusta"
    _put(client, domain, _record(0, first_name))
    _put(client, domain, _record(8, first_name))
    rest = _rest(client, listing, first["NextToken"])
    assert rest == ["r5", "r4", "r3", "r2", "r1", "r0"]

    whole = client.list_profile_objects(**listing, MaxResults=100)["Items"]
    assert [json.loads(item["Object"])["id"] for item in whole] == [
        f"r{n}" for n in range(9, -1, -1)
    ]
    # Each in its current version.
    assert json.loads(whole[-1]["Object"])["first"] == first_name


def test_a_batch_put_again_keeps_every_place(live_server: Any, domain: str) -> None:
    """Objects stored by one BatchPutProfileObject are listed in the reverse of the order it
    stored them in; a later batch that writes them all again, in another order and changed,
    leaves the listing as it was, so a caller paging across it misses and repeats none."""
    client = live_server.client()
    ids = [f"b{n}" for n in range(8)]

    def batch(order: list[str], first: str) -> None:
        out = client.batch_put_profile_object(
            DomainName=domain,
            ObjectTypeName="Crm",
            Items=[
                {"Id": i, "Object": json.dumps({"id": i, "email": EMAIL, "first": first})}
                for i in order
            ],
        )
        assert out["Failed"] == [], out["Failed"]

    batch(ids, "Ada")
    listing = {
        "DomainName": domain,
        "ObjectTypeName": "Crm",
        "ProfileId": _profile_id(client, domain),
    }
    first = client.list_profile_objects(**listing, MaxResults=3)
    assert _ids(first) == ["b7", "b6", "b5"]
    batch([ids[n] for n in (0, 6, 2, 4, 1, 7, 3, 5)], "Augusta")
    assert _rest(client, listing, first["NextToken"]) == ["b4", "b3", "b2", "b1", "b0"]


def test_a_token_of_the_earlier_order_is_refused(live_server: Any, domain: str) -> None:
    """A NextToken a server issued before the order changed (it resumed after the last object's
    updated_at) is refused with a BadRequestException that says to list again, not followed into
    the other order, where it would skip or repeat objects."""
    client = live_server.client()
    for n in range(3):
        _put(client, domain, _record(n))
    profile_id = _profile_id(client, domain)
    listing = {"DomainName": domain, "ObjectTypeName": "Crm", "ProfileId": profile_id}
    page = client.list_profile_objects(**listing, MaxResults=1)["Items"]
    scope = token_scope("ListProfileObjects", domain, "Crm", profile_id, None)
    old = live_server.services.tokens.encode(
        scope,
        {"u": "2026-01-01T00:00:00+00:00", "w": 1, "d": page[0]["ProfileObjectUniqueKey"]},
    )
    with pytest.raises(ClientError) as exc:
        client.list_profile_objects(**listing, MaxResults=1, NextToken=old)
    error = exc.value.response["Error"]
    assert error["Code"] == "BadRequestException"
    assert "earlier order" in error["Message"] and "without a NextToken" in error["Message"]


def test_an_object_filter_without_values_is_refused(live_server: Any, domain: str) -> None:
    client = live_server.client()
    _put(client, domain, _record(1))
    with pytest.raises(ClientError) as exc:
        client.list_profile_objects(
            DomainName=domain,
            ObjectTypeName="Crm",
            ProfileId=_profile_id(client, domain),
            ObjectFilter={"KeyName": "crmId", "Values": []},
        )
    error = exc.value.response["Error"]
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["Code"] == "BadRequestException"
    assert "at least one value" in error["Message"] and "crmId" in error["Message"]
