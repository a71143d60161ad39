"""DeleteProfile takes the profiles it erases (the deleted one and those merged into it) out of
the last matching job's groups at once (identity.ml_groups.forget_profiles): GetMatches, a
group and GetSimilarProfiles stop naming them before the next job; a group left with fewer
than two profiles goes. Both databases."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from openprofiles.context import Services
from openprofiles.identity import ml_groups
from openprofiles.identity import service as identity
from openprofiles.identity.ml_groups import MatchGroup
from openprofiles.profiles import service as profiles
from openprofiles.store.schema import ml_match_member_page, ml_match_page

from .conftest import DOMAIN, new_profile
from .test_identity_ml_groups import LEVELS, groups, small_pages, store

__all__ = ["small_pages"]  # a fixture


def listed(services: Services) -> dict[str, tuple[str, ...]]:
    with services.read() as tx:
        page = ml_groups.list_groups(
            tx, domain_name=DOMAIN, limit=1000, after=None, generated_at=None
        )
    assert page.total == len(page.groups)
    return {g.match_id: g.profile_ids for g in page.groups}


def match_ids(services: Services, profile_ids: list[str]) -> set[str]:
    with services.read() as tx:
        return ml_groups.match_ids_of(tx, domain_name=DOMAIN, profile_ids=profile_ids)


def delete(services: Services, profile_id: str) -> None:
    with services.write() as tx:
        profiles.delete_profile(tx, domain_name=DOMAIN, profile_id=profile_id)


def test_deleted_and_merged_away_profiles_leave_the_match_groups(
    services: Services, domain: str
) -> None:
    a, b, c, d, e, f = (new_profile(services, FirstName=n) for n in "abcdef")
    with services.write() as tx:
        identity.merge_profiles(tx, domain_name=DOMAIN, main_profile_id=e, profile_ids=[f])
    g1, g2, g3 = ("1".ljust(32, "a"), "2".ljust(32, "a"), "3".ljust(32, "a"))
    store(
        services,
        [
            # b links a and c; a and c are linked too.
            MatchGroup(
                g1,
                (a, b, c),
                0.9,
                pairs=((0, 1, 0.9, 4.0, 0), (1, 2, 0.8, 3.0, 1), (0, 2, 0.7, 2.0, 0)),
            ),
            MatchGroup(g2, (d, e), 0.8, pairs=((0, 1, 0.8, 3.0, 0),)),
            # f was merged into e since the job.
            MatchGroup(g3, (c, f), 0.7, pairs=((0, 1, 0.7, 2.0, 1),)),
        ],
    )

    delete(services, b)

    assert listed(services) == {g1: (a, c), g2: (d, e), g3: (c, f)}
    with services.read() as tx:
        group = ml_groups.get_group(tx, domain_name=DOMAIN, match_id=g1)
    assert group.explanation == [
        {"ProfileIds": [a, c], "MatchProbability": 0.7, "MatchWeight": 2.0, "Attributes": LEVELS[0]}
    ]
    assert match_ids(services, [b]) == set()
    assert match_ids(services, [a]) == {g1}

    delete(services, e)  # and f, merged into it

    assert listed(services) == {g1: (a, c)}
    assert match_ids(services, [d, e, f]) == set()
    assert match_ids(services, [c]) == {g1}


def test_erasing_rewrites_only_the_pages_holding_the_profiles(
    services: Services, domain: str, small_pages: None
) -> None:
    stored = groups(23)
    store(services, stored)
    # One member of a three-profile group (it stays, with two), every member of one group
    # (it goes), one of a pair (it goes, with its other member's entry).
    trio = next(g for g in stored if len(g.profile_ids) == 3)
    pair, other = [g for g in stored if len(g.profile_ids) == 2][3:5]
    erased = {trio.profile_ids[0], *pair.profile_ids, other.profile_ids[1]}

    with services.write() as tx:
        ml_groups.forget_profiles(tx, DOMAIN, sorted(erased))

    expected = {g.match_id: g.profile_ids for g in stored if g not in (pair, other)}
    expected[trio.match_id] = trio.profile_ids[1:]
    assert listed(services) == expected
    for group in stored:
        for profile_id in group.profile_ids:
            found = match_ids(services, [profile_id])
            assert found == (
                {group.match_id} if profile_id in expected.get(group.match_id, ()) else set()
            )
    with services.read() as tx:
        members = sum(
            len(m) for m in tx.conn.execute(select(ml_match_member_page.c.members)).scalars()
        )
        counted = tx.conn.execute(select(func.sum(ml_match_page.c.group_count))).scalar_one()
    assert members == sum(len(ids) for ids in expected.values())
    assert counted == len(expected)


def test_erasing_a_whole_page_of_groups_removes_the_page(
    services: Services, domain: str, small_pages: None
) -> None:
    stored = sorted(groups(8), key=lambda g: g.match_id)
    store(services, stored)
    first_page = stored[:4]
    # All but one member of each: every group of the page goes, with its last member's entry.
    erased: list[Any] = [p for g in first_page for p in g.profile_ids[1:]]

    with services.write() as tx:
        ml_groups.forget_profiles(tx, DOMAIN, erased)

    assert list(listed(services)) == [g.match_id for g in stored[4:]]
    with services.read() as tx:
        pages = tx.conn.execute(select(func.count()).select_from(ml_match_page)).scalar_one()
    assert pages == 1
    assert match_ids(services, [p for g in first_page for p in g.profile_ids]) == set()
