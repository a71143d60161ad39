"""GetDomain's Stats: exact counts, and a size that is exact for small domains and estimated
from a sample for large ones."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from openprofiles.context import Principal, RequestContext
from openprofiles.domains import service as domains
from openprofiles.domains.handlers import create_domain
from openprofiles.profiles import service as profiles
from openprofiles.store.schema import profile


@pytest.fixture
def domain(services) -> str:
    create_domain(
        RequestContext(services=services, principal=Principal("t", "admin")),
        {"DomainName": "stats", "DefaultExpirationDays": 5},
    )
    return "stats"


def _fill(services, domain: str, count: int) -> list[str]:
    with services.write() as tx:
        return [
            profiles.create_profile(
                tx, domain_name=domain, fields={"FirstName": f"Name{i}", "LastName": "X" * (i % 7)}
            ).profile_id
            for i in range(count)
        ]


def test_small_domains_are_counted_and_sized_exactly(services, domain):
    ids = _fill(services, domain, 12)
    with services.write() as tx:
        # A merged-away profile is not a profile any more.
        tx.conn.execute(
            update(profile).where(profile.c.profile_id == ids[0]).values(merged_into=ids[1])
        )
    with services.read() as tx:
        stats = domains.domain_stats(tx, domain_name=domain)
        exact = sum(
            len(bytes(row.sealed))
            for row in tx.conn.execute(profile.select().where(profile.c.merged_into.is_(None)))
        )
    assert stats.profile_count == 11
    assert stats.total_size == exact


def test_large_domains_estimate_the_size_from_a_sample(services, domain, monkeypatch):
    _fill(services, domain, 60)
    with services.read() as tx:
        exact = domains.domain_stats(tx, domain_name=domain).total_size
    monkeypatch.setattr(domains, "EXACT_SIZE_LIMIT", 10)
    monkeypatch.setattr(domains, "SIZE_SAMPLE", 20)
    with services.read() as tx:
        estimated = domains.domain_stats(tx, domain_name=domain)
    assert estimated.profile_count == 60
    # Sealed profiles here differ by a few bytes, so any sample lands close to the truth.
    assert abs(estimated.total_size - exact) <= exact * 0.1
