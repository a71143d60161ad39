"""The per-profile object quota evicts the oldest objects first, those written in one request in
the order they were written, and ListProfileObjects lists newest first in the reverse order,
page after page (boto3 against a live server, both backends; spec §1.9). The objects of one
request share their write time, and ties were broken by the random UNIQUE digest: a batch's
objects were evicted, and listed, in an order of their own."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from tests.wire.test_objects_api import CRM

from openprofiles.ingest.pipeline import PROFILE_OBJECT_QUOTA

EMAIL = "full@example.com"


@pytest.fixture
def domain(live_server: Any) -> str:
    name = f"e-{uuid.uuid4().hex[:10]}"
    client = live_server.client()
    client.create_domain(DomainName=name, DefaultExpirationDays=30)
    client.put_profile_object_type(DomainName=name, ObjectTypeName="Crm", **CRM)
    return name


def put_batch(client: Any, domain: str, ids: list[str]) -> None:
    """One BatchPutProfileObject: its objects are written in one transaction, in order."""
    out = client.batch_put_profile_object(
        DomainName=domain,
        ObjectTypeName="Crm",
        Items=[{"Id": i, "Object": json.dumps({"id": i, "email": EMAIL})} for i in ids],
    )
    assert out["Failed"] == [], out["Failed"]


def listed(client: Any, domain: str, profile_id: str, page: int) -> list[str]:
    """The profile's Crm objects' ids as ListProfileObjects gives them, `page` at a time."""
    ids: list[str] = []
    token: dict[str, str] = {}
    while True:
        out = client.list_profile_objects(
            DomainName=domain,
            ObjectTypeName="Crm",
            ProfileId=profile_id,
            MaxResults=page,
            **token,
        )
        ids += [json.loads(item["Object"])["id"] for item in out["Items"]]
        if "NextToken" not in out:
            return ids
        token = {"NextToken": out["NextToken"]}


def test_the_first_written_objects_are_evicted_first(live_server: Any, domain: str) -> None:
    client = live_server.client()
    first = [f"m{n:04d}" for n in range(1, 11)]
    put_batch(client, domain, first)
    profile_id = client.search_profiles(DomainName=domain, KeyName="_email", Values=[EMAIL])[
        "Items"
    ][0]["ProfileId"]
    before = listed(client, domain, profile_id, page=3)

    rest = [f"m{n:04d}" for n in range(11, PROFILE_OBJECT_QUOTA + 1)]
    for start in range(0, len(rest), 10):
        put_batch(client, domain, rest[start : start + 10])
    # The profile is full: each new object evicts the oldest, m0001 first.
    put_batch(client, domain, ["m1001", "m1002", "m1003", "m1004"])
    kept = listed(client, domain, profile_id, page=7)
    assert len(kept) == PROFILE_OBJECT_QUOTA
    assert set(first) - set(kept) == {"m0001", "m0002", "m0003", "m0004"}
    # Listed newest first: each batch in the reverse of the order it was written in.
    assert before == first[::-1]
    assert kept[:4] == ["m1004", "m1003", "m1002", "m1001"]
    assert kept[-6:] == ["m0010", "m0009", "m0008", "m0007", "m0006", "m0005"]
