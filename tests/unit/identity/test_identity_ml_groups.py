"""How a job's match groups are stored and read (identity.ml_groups), on both backends: in pages
of consecutive groups and of (profile, group) pairs, read back a page at a time in MatchId
order, a group by MatchId with its explanation, and a profile's group by profile id."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from openprofiles.context import Services
from openprofiles.errors import NotFound
from openprofiles.identity import ml_groups
from openprofiles.identity.ml_groups import MatchGroup
from openprofiles.store.schema import ml_match_member_page, ml_match_page

from .conftest import DOMAIN

LEVELS = [
    [{"Attribute": "FirstName", "Level": "Exact match", "MatchWeight": 3.5}],
    [{"Attribute": "FirstName", "Level": "All other comparisons", "MatchWeight": -2.25}],
]


def groups(count: int) -> list[MatchGroup]:
    """`count` groups of two or three profiles, each linked by one or two pairs."""
    out = []
    for n in range(count):
        ids = tuple(f"{n:03d}{k}".ljust(32, "0") for k in range(2 + n % 2))
        pairs = tuple((0, b, 0.9 + n / 10_000, 10.0 + b, (n + b) % 2) for b in range(1, len(ids)))
        out.append(
            MatchGroup(
                f"{(n * 7919) % 1000:04d}".ljust(32, "a"), ids, 0.9 + n / 10_000, pairs=pairs
            )
        )
    return out


@pytest.fixture
def small_pages(monkeypatch: Any) -> None:
    monkeypatch.setattr(ml_groups, "GROUPS_PER_PAGE", 4)
    monkeypatch.setattr(ml_groups, "MEMBERS_PER_PAGE", 5)


def store(services: Services, stored: list[MatchGroup]) -> None:
    from openprofiles.store.schema import identity_job

    with services.write() as tx:
        tx.conn.execute(
            identity_job.insert().values(
                domain_name=DOMAIN,
                job_id="j" * 32,
                status="COMPLETED",
                created_at=tx.now,
                updated_at=tx.now,
                heartbeat_at=tx.now,
                explanation_levels=LEVELS,
            )
        )
        ml_groups.store_groups(tx, DOMAIN, "j" * 32, stored)


def test_pages_are_read_in_match_id_order_from_any_point(
    services: Services, domain: str, small_pages: None
) -> None:
    stored = groups(23)
    store(services, stored)
    with services.read() as tx:
        pages = tx.conn.execute(select(func.count()).select_from(ml_match_page)).scalar_one()
        member_pages = tx.conn.execute(
            select(func.count()).select_from(ml_match_member_page)
        ).scalar_one()
        assert (pages, member_pages) == (6, 12)  # 23 groups by 4; 57 members by 5
        expected = sorted((g.match_id, g.profile_ids, g.confidence) for g in stored)
        seen = []
        after = None
        while True:
            page = ml_groups.list_groups(
                tx, domain_name=DOMAIN, limit=3, after=after, generated_at=None
            )
            assert page.total == 23
            seen += [(g.match_id, g.profile_ids, g.confidence) for g in page.groups]
            if not page.more:
                break
            after = page.groups[-1].match_id
        assert seen == expected
        # From an id that is no group's, and past the last.
        middle = ml_groups.list_groups(
            tx, domain_name=DOMAIN, limit=100, after=expected[10][0][:-1], generated_at=None
        )
        assert [g.match_id for g in middle.groups] == [e[0] for e in expected[10:]]
        assert not middle.more
        last = ml_groups.list_groups(
            tx, domain_name=DOMAIN, limit=5, after=expected[-1][0], generated_at=None
        )
        assert last.groups == [] and not last.more


def test_a_group_is_read_with_its_explanation(
    services: Services, domain: str, small_pages: None
) -> None:
    stored = groups(23)
    store(services, stored)
    with services.read() as tx:
        for group in stored:
            found = ml_groups.get_group(tx, domain_name=DOMAIN, match_id=group.match_id)
            assert found.profile_ids == group.profile_ids
            assert found.explanation == [
                {
                    "ProfileIds": [group.profile_ids[a], group.profile_ids[b]],
                    "MatchProbability": p,
                    "MatchWeight": w,
                    "Attributes": LEVELS[k],
                }
                for a, b, p, w, k in group.pairs
            ]
        for missing in ("0" * 32, "z" * 32, stored[0].match_id[:-1] + "b"):
            with pytest.raises(NotFound):
                ml_groups.get_group(tx, domain_name=DOMAIN, match_id=missing)


def test_a_profiles_group_is_found_by_profile_id(
    services: Services, domain: str, small_pages: None
) -> None:
    stored = groups(23)
    store(services, stored)
    with services.read() as tx:
        for group in stored:
            for profile_id in group.profile_ids:
                assert ml_groups.match_ids_of(
                    tx, domain_name=DOMAIN, profile_ids=[profile_id, "e" * 32]
                ) == {group.match_id}
        every = [p for g in stored for p in g.profile_ids]
        assert ml_groups.match_ids_of(tx, domain_name=DOMAIN, profile_ids=every) == {
            g.match_id for g in stored
        }
        assert ml_groups.match_ids_of(tx, domain_name=DOMAIN, profile_ids=["f" * 32]) == set()


def test_storing_replaces_the_domains_groups(services: Services, domain: str) -> None:
    store(services, groups(5))
    with services.write() as tx:
        ml_groups.store_groups(tx, DOMAIN, "j" * 32, [])
    with services.read() as tx:
        page = ml_groups.list_groups(
            tx, domain_name=DOMAIN, limit=10, after=None, generated_at=None
        )
        assert page.total == 0 and page.groups == []
        assert (
            ml_groups.match_ids_of(tx, domain_name=DOMAIN, profile_ids=["0000" + "0" * 28]) == set()
        )
