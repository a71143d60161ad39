"""A profile erased (DeleteProfile) while a probabilistic matching job runs is not saved in the
job's groups (identity.ml_jobs.run_job, spec §5.2): the job reads the profiles in one
transaction and saves its groups in another, and the save leaves out whatever no longer
exists then, as DeleteProfile would have taken it out of saved groups. Both databases; on
PostgreSQL also a deletion still uncommitted when the save looks at the profiles."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.backends import database_url_for
from tests.support.lock_waits import second_writer_meets_first

from openprofiles.app import build_services
from openprofiles.context import Services, Tx
from openprofiles.identity import ml_groups, ml_jobs
from openprofiles.identity.ml_groups import MatchGroup, explanation
from openprofiles.profiles import service as profiles
from openprofiles.settings import Settings

from .conftest import DOMAIN, make_domain, new_profile
from .test_identity_ml import DUPLICATES, OTHERS, PEOPLE, enable
from .test_identity_ml_groups import LEVELS, store


def delete(services: Services, profile_id: str) -> None:
    with services.write() as tx:
        profiles.delete_profile(tx, domain_name=DOMAIN, profile_id=profile_id)


def saved_groups(services: Services) -> dict[str, tuple[str, ...]]:
    with services.read() as tx:
        page = ml_jobs.list_groups(tx, domain_name=DOMAIN, limit=1000)
    assert page.total == len(page.groups)
    return {g.match_id: g.profile_ids for g in page.groups}


def test_profiles_erased_between_the_read_and_the_save_are_not_saved(
    services: Services, domain: str
) -> None:
    enable(services)
    margaret, margret = (new_profile(services, **p) for p in (PEOPLE[0], DUPLICATES[0]))
    # Grace three times: her group keeps two profiles when one of them is erased.
    graces = [new_profile(services, **p) for p in (PEOPLE[1], DUPLICATES[1], PEOPLE[1])]
    alan, alan_again = (new_profile(services, **p) for p in (PEOPLE[2], DUPLICATES[2]))
    for person in OTHERS:
        new_profile(services, **person)
    with services.write() as tx:
        job = ml_jobs.create_job(tx, domain_name=DOMAIN)

    def erase() -> None:
        # Scored, not yet saved: the job has read these profiles and found their groups.
        delete(services, margaret)
        delete(services, graces[0])

    done = ml_jobs.run_job(services, job, after_scoring=erase)

    assert done.status == ml_jobs.COMPLETED
    assert done.profiles_reviewed == 11
    # Margaret's pair lost one of its two profiles and went; Grace's group kept two.
    assert done.matches_found == 2
    saved = saved_groups(services)
    assert sorted(map(sorted, saved.values())) == sorted(
        [sorted(graces[1:]), sorted([alan, alan_again])]
    )
    with services.read() as tx:
        assert ml_groups.match_ids_of(tx, domain_name=DOMAIN, profile_ids=[margaret]) == set()
        assert ml_groups.match_ids_of(tx, domain_name=DOMAIN, profile_ids=[graces[0]]) == set()
        # Margret's only match was erased: she is in no group.
        assert (
            ml_jobs.similar_profiles(
                tx, domain_name=DOMAIN, search_key="_profileId", search_value=margret
            )
            is None
        )
        (grace_id,) = (m for m, ids in saved.items() if graces[1] in ids)
        group = ml_jobs.get_group(tx, domain_name=DOMAIN, match_id=grace_id)
    # Its explanation names only the profiles kept, through their renumbered positions.
    assert group.explanation
    for edge in group.explanation:
        assert sorted(edge["ProfileIds"]) == sorted(graces[1:])


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Services]:
    with database_url_for("postgres", tmp_path) as url:
        services = build_services(Settings(data_dir=tmp_path / "data", database_url=url))
        make_domain(services)
        try:
            yield services
        finally:
            services.database.dispose()


def test_a_deletion_committing_during_the_save_is_not_saved(pg: Services) -> None:
    """PostgreSQL, READ COMMITTED: DeleteProfile has taken Margaret out of the (previous job's)
    groups but not committed when the job saves. Looking then, the save would find her still
    there and store her where the deletion never looks again; it waits for the deletion
    (ml_groups.lock_groups) and leaves her out."""
    enable(pg)
    margaret, margret = (new_profile(pg, **p) for p in (PEOPLE[0], DUPLICATES[0]))
    grace, grace_again = (new_profile(pg, **p) for p in (PEOPLE[1], DUPLICATES[1]))
    with pg.write() as tx:
        job = ml_jobs.create_job(tx, domain_name=DOMAIN)

    def erase(tx: Tx) -> None:
        profiles.delete_profile(tx, domain_name=DOMAIN, profile_id=margaret)

    done = second_writer_meets_first(pg, erase, lambda: ml_jobs.run_job(pg, job))

    assert isinstance(done, ml_jobs.JobRecord) and done.status == ml_jobs.COMPLETED
    assert done.matches_found == 1
    assert list(map(sorted, saved_groups(pg).values())) == [sorted([grace, grace_again])]
    with pg.read() as tx:
        assert (
            ml_groups.match_ids_of(tx, domain_name=DOMAIN, profile_ids=[margaret, margret]) == set()
        )


def test_a_job_saves_what_deletion_would_leave_of_its_groups(
    services: Services, domain: str
) -> None:
    """`without_profiles` (the save) and `forget_profiles` (a deletion after the save) agree."""
    a, b, c, d, e = (n.ljust(32, "0") for n in "abcde")
    found = [
        # a goes; c and d stay, linked by the pair renumbered from (1, 2) to (0, 1).
        MatchGroup(
            "1".ljust(32, "a"),
            (a, c, d),
            0.9,
            pairs=((0, 1, 0.9, 4.0, 0), (1, 2, 0.95, 5.0, 1), (0, 2, 0.92, 4.5, 0)),
        ),
        MatchGroup("2".ljust(32, "a"), (b, d), 0.8, pairs=((0, 1, 0.8, 3.0, 0),)),
        MatchGroup("3".ljust(32, "a"), (d, e), 0.7, pairs=((0, 1, 0.7, 2.0, 1),)),
    ]
    store(services, found)
    with services.write() as tx:
        ml_groups.forget_profiles(tx, DOMAIN, [a, b])
    with services.read() as tx:
        forgotten = [
            ml_groups.get_group(tx, domain_name=DOMAIN, match_id=g.match_id)
            for g in ml_groups.list_groups(
                tx, domain_name=DOMAIN, limit=100, after=None, generated_at=None
            ).groups
        ]

    kept = ml_groups.without_profiles(found, {a, b})

    assert [(g.match_id, g.profile_ids) for g in kept] == [
        ("1".ljust(32, "a"), (c, d)),
        ("3".ljust(32, "a"), (d, e)),
    ]
    assert kept[0].pairs == ((0, 1, 0.95, 5.0, 1),)
    assert [
        (g.match_id, g.profile_ids, g.confidence, explanation(g.pairs, g.profile_ids, LEVELS))
        for g in kept
    ] == [(g.match_id, g.profile_ids, g.confidence, g.explanation) for g in forgotten]
