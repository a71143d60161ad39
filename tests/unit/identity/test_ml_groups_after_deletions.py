"""The stored match groups stay right when DeleteProfile changes them (identity.ml_groups):
two deletions at once on PostgreSQL each rewrite the pages they share without undoing the
other's removals (they lock the pages before reading them), and GetMatches goes on paging
through pages that deletions left with fewer groups than a full page holds."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.support.lock_waits import (
    in_its_own_transaction,
    postgres_services,
    second_writer_meets_first,
)

from openprofiles.context import Services, Tx
from openprofiles.identity import ml_groups
from openprofiles.identity.ml_groups import MatchGroup
from openprofiles.profiles import service as profiles

from .conftest import DOMAIN, make_domain, new_profile
from .test_identity_ml_groups import small_pages, store

__all__ = ["small_pages"]  # a fixture

PAIRS = ((0, 1, 0.95, 9.0, 0), (1, 2, 0.95, 9.0, 0))


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Services]:
    with postgres_services(tmp_path) as services:
        make_domain(services)
        yield services


def _all_groups(services: Services) -> dict[str, tuple[str, ...]]:
    with services.read() as tx:
        page = ml_groups.list_groups(
            tx, domain_name=DOMAIN, limit=1000, after=None, generated_at=None
        )
    assert page.total == len(page.groups)
    return {g.match_id: g.profile_ids for g in page.groups}


def _delete(profile_id: str) -> Callable[[Tx], None]:
    def run(tx: Tx) -> None:
        profiles.delete_profile(tx, domain_name=DOMAIN, profile_id=profile_id)

    return run


@pytest.mark.postgres
def test_two_deletions_at_once_keep_each_others_removals(pg: Services) -> None:
    """Two groups on one match page, their members on one member page: each of two
    DeleteProfile takes one profile out. The second, waiting for the first's page, rewrites
    it from what the first committed: neither deleted profile comes back."""
    ids = sorted(new_profile(pg, FirstName=f"n{i}") for i in range(6))
    first_group, second_group = "a" * 32, "b" * 32
    store(
        pg,
        [
            MatchGroup(first_group, tuple(ids[0:3]), 0.95, pairs=PAIRS),
            MatchGroup(second_group, tuple(ids[3:6]), 0.95, pairs=PAIRS),
        ],
    )
    x, y = ids[0], ids[3]

    def first(tx: Tx) -> None:
        profiles.delete_profile(tx, domain_name=DOMAIN, profile_id=x)

    out = second_writer_meets_first(
        pg,
        first,
        in_its_own_transaction(
            pg, lambda tx: profiles.delete_profile(tx, domain_name=DOMAIN, profile_id=y)
        ),
    )

    assert not isinstance(out, BaseException), out
    assert _all_groups(pg) == {first_group: tuple(ids[1:3]), second_group: tuple(ids[4:6])}
    with pg.read() as tx:
        assert ml_groups.match_ids_of(tx, domain_name=DOMAIN, profile_ids=[x, y]) == set()
        assert ml_groups.match_ids_of(tx, domain_name=DOMAIN, profile_ids=ids[1:3]) == {first_group}
        assert ml_groups.match_ids_of(tx, domain_name=DOMAIN, profile_ids=ids[4:6]) == {
            second_group
        }


@pytest.mark.postgres
def test_a_page_the_other_deletion_removed_is_skipped(pg: Services, small_pages: None) -> None:
    """Four groups to a page: the fifth group, of two, is alone on its page. Each of two
    DeleteProfile at once erases one of its profiles: the first takes the group, and its page,
    away; the second, waiting for that page, finds it gone and has nothing left to do."""
    ids = sorted(new_profile(pg, FirstName=f"n{i}") for i in range(10))
    match_ids = [f"{n}".ljust(32, "a") for n in range(5)]
    store(
        pg,
        [
            MatchGroup(m, tuple(ids[2 * n : 2 * n + 2]), 0.95, pairs=PAIRS[:1])
            for n, m in enumerate(match_ids)
        ],
    )

    out = second_writer_meets_first(
        pg, _delete(ids[8]), in_its_own_transaction(pg, _delete(ids[9]))
    )

    assert not isinstance(out, BaseException), out
    assert _all_groups(pg) == {
        m: tuple(ids[2 * n : 2 * n + 2]) for n, m in enumerate(match_ids[:4])
    }
    with pg.read() as tx:
        assert ml_groups.match_ids_of(tx, domain_name=DOMAIN, profile_ids=ids[8:]) == set()
        assert ml_groups.match_ids_of(tx, domain_name=DOMAIN, profile_ids=ids[:8]) == set(
            match_ids[:4]
        )


def test_getmatches_pages_through_pages_that_deletions_shrank(
    services: Services, domain: str
) -> None:
    """Three stored pages of 256 groups; deletions empty most of the middle one. GetMatches by
    100 still returns full pages with a NextToken until every group has been seen."""
    per_page = ml_groups.GROUPS_PER_PAGE
    stored = [
        MatchGroup(f"{n:032x}", (f"a{n:031x}", f"b{n:031x}"), 0.95, pairs=PAIRS[:1])
        for n in range(3 * per_page)
    ]
    store(services, stored)
    with services.write() as tx:
        # DeleteProfile's part: one profile of each of 250 groups of the middle page.
        ml_groups.forget_profiles(
            tx, DOMAIN, [g.profile_ids[0] for g in stored[per_page + 3 : 2 * per_page - 3]]
        )
    left = [g.match_id for g in stored[: per_page + 3] + stored[2 * per_page - 3 :]]
    seen: list[str] = []
    after = None
    with services.read() as tx:
        while True:
            page = ml_groups.list_groups(
                tx, domain_name=DOMAIN, limit=100, after=after, generated_at=None
            )
            assert page.total == len(left)
            expected = left[len(seen) : len(seen) + 100]
            assert [g.match_id for g in page.groups] == expected
            assert page.more == (len(seen) + 100 < len(left))
            seen += expected
            if not page.more:
                break
            after = page.groups[-1].match_id
    assert seen == left
