"""GetDomain's Stats through a real boto3 client against a live server (both backends):
MeteringProfileCount counts a profile with more than 100 objects as two, more than 200 as three
(the model's rule; it was ProfileCount whatever the objects), and an estimated TotalSize is the
same for two calls on unchanged data (it was sampled from a random point per call, so it
wandered, and could drop after objects were added)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from tests.wire.test_objects_api import CRM

from openprofiles.domains import service as domains


@pytest.fixture
def domain(live_server: Any) -> str:
    name = f"s-{uuid.uuid4().hex[:10]}"
    client = live_server.client()
    client.create_domain(DomainName=name, DefaultExpirationDays=30)
    client.put_profile_object_type(DomainName=name, ObjectTypeName="Crm", **CRM)
    return name


def put_objects(client: Any, domain: str, email: str, count: int) -> None:
    """`count` objects of one customer (one profile, found by the email), ten a request."""
    objects = [json.dumps({"id": f"{email}-{n}", "email": email}) for n in range(count)]
    for start in range(0, count, 10):
        out = client.batch_put_profile_object(
            DomainName=domain,
            ObjectTypeName="Crm",
            Items=[{"Id": f"i{n}", "Object": o} for n, o in enumerate(objects[start : start + 10])],
        )
        assert out["Failed"] == []


def test_profiles_with_more_than_100_objects_are_metered_more(live_server: Any, domain: str):
    client = live_server.client()
    put_objects(client, domain, "hundred@example.com", 100)
    put_objects(client, domain, "hundred-one@example.com", 101)
    put_objects(client, domain, "two-hundred-one@example.com", 201)
    client.create_profile(DomainName=domain, FirstName="NoObjects")
    stats = client.get_domain(DomainName=domain)["Stats"]
    assert stats["ProfileCount"] == 4
    assert stats["ObjectCount"] == 402
    # 100 objects: one profile; 101: two; 201: three; none: one.
    assert stats["MeteringProfileCount"] == 1 + 2 + 3 + 1


def test_an_estimated_total_size_is_stable_on_unchanged_data(
    live_server: Any, domain: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = live_server.client()
    for n in range(40):
        # Profiles of different sizes, so that different samples estimate differently (within
        # the 255 characters a FirstName holds).
        record = {"id": f"p{n}", "email": f"p{n}@example.com", "first": "N" * (1 + 6 * n)}
        client.put_profile_object(
            DomainName=domain, ObjectTypeName="Crm", Object=json.dumps(record)
        )
    # The server runs in this process: a small domain is estimated as a large one is.
    monkeypatch.setattr(domains, "EXACT_SIZE_LIMIT", 10)
    monkeypatch.setattr(domains, "SIZE_SAMPLE", 5)
    sizes = {client.get_domain(DomainName=domain)["Stats"]["TotalSize"] for _ in range(12)}
    assert len(sizes) == 1, sizes
    # An object added to a profile without changing it adds its size, exactly.
    added = json.dumps({"id": "extra", "email": "p3@example.com"})
    client.put_profile_object(DomainName=domain, ObjectTypeName="Crm", Object=added)
    after = client.get_domain(DomainName=domain)["Stats"]
    assert after["ObjectCount"] == 41 and after["ProfileCount"] == 40
    assert after["TotalSize"] == sizes.pop() + len(added)
