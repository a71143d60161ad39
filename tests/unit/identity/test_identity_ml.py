"""Probabilistic matching jobs (spec §5.2) on both backends: a small synthetic population with
known duplicates (typos, formatting variants), the job lifecycle and counts, match groups with
confidence scores and their explanation, GetSimilarProfiles' lookup, auto-merging, errors."""

from __future__ import annotations

from typing import Any

import pytest

from openprofiles.context import Services
from openprofiles.domains.service import update_domain
from openprofiles.errors import BadRequest, NotFound
from openprofiles.identity import ml_jobs, service
from openprofiles.identity.ml_groups import MatchGroup
from openprofiles.profiles import service as profiles

from .conftest import DOMAIN, new_profile

# Three people with a duplicate each (typo, phone formatting, email case, postal-code spacing),
# and four distinct people, two of whom share a surname and a city with the others.
PEOPLE: list[dict[str, Any]] = [
    {
        "FirstName": "Margaret",
        "LastName": "Hamilton",
        "EmailAddress": "margaret.hamilton@example.com",
        "PhoneNumber": "+1 206 555 0101",
        "BirthDate": "1936-08-17",
        "Address": {"City": "Boston", "PostalCode": "02139"},
    },
    {
        "FirstName": "Grace",
        "LastName": "Hopper",
        "EmailAddress": "grace@navy.example",
        "PhoneNumber": "+1 206 555 0102",
        "BirthDate": "1906-12-09",
        "Address": {"City": "Arlington", "PostalCode": "22201"},
    },
    {
        "FirstName": "Alan",
        "LastName": "Turing",
        "EmailAddress": "alan@bletchley.example",
        "PhoneNumber": "+44 20 7946 0103",
        "BirthDate": "1912-06-23",
        "Address": {"City": "London", "PostalCode": "NW1 6XE"},
    },
]
DUPLICATES: list[dict[str, Any]] = [
    {
        "FirstName": "Margret",
        "LastName": "Hamilton",
        "EmailAddress": "Margaret.Hamilton@Example.com",
        "PhoneNumber": "(206) 555-0101",
        "BirthDate": "1936-08-17",
        "Address": {"City": "boston", "PostalCode": "02139"},
    },
    {
        "FirstName": "Grace",
        "LastName": "Hoper",
        "PhoneNumber": "206.555.0102",
        "BirthDate": "1906-12-09",
        "Address": {"City": "Arlington", "PostalCode": "22201"},
    },
    {
        "FirstName": "Alan",
        "LastName": "Turing",
        "EmailAddress": "ALAN@bletchley.example",
        "BirthDate": "1912-06-23",
        "Address": {"City": "London", "PostalCode": "NW16XE"},
    },
]
OTHERS: list[dict[str, Any]] = [
    {
        "FirstName": "Ada",
        "LastName": "Lovelace",
        "EmailAddress": "ada@example.com",
        "PhoneNumber": "+44 20 7946 0200",
        "BirthDate": "1815-12-10",
        "Address": {"City": "London", "PostalCode": "W1 1AA"},
    },
    {
        "FirstName": "Katherine",
        "LastName": "Hamilton",
        "EmailAddress": "k.hamilton@example.org",
        "PhoneNumber": "+1 617 555 0300",
        "BirthDate": "1970-01-01",
        "Address": {"City": "Boston", "PostalCode": "02139"},
    },
    {
        "FirstName": "Edsger",
        "LastName": "Dijkstra",
        "EmailAddress": "ewd@example.nl",
        "PhoneNumber": "+31 20 555 0400",
        "BirthDate": "1930-05-11",
        "Address": {"City": "Amsterdam", "PostalCode": "1012"},
    },
    {
        "FirstName": "Barbara",
        "LastName": "Liskov",
        "EmailAddress": "liskov@example.edu",
        "PhoneNumber": "+1 617 555 0500",
        "BirthDate": "1939-11-07",
        "Address": {"City": "Boston", "PostalCode": "02140"},
    },
]


def enable(services: Services, **matching: Any) -> None:
    with services.write() as tx:
        update_domain(tx, domain_name=DOMAIN, changes={"Matching": {"Enabled": True, **matching}})


def population(services: Services) -> tuple[list[tuple[str, str]], list[str]]:
    """(person, duplicate) id pairs and the ids of the distinct people."""
    pairs = [
        (new_profile(services, **p), new_profile(services, **d))
        for p, d in zip(PEOPLE, DUPLICATES, strict=True)
    ]
    others = [new_profile(services, **p) for p in OTHERS]
    return pairs, others


def test_job_finds_the_duplicates_and_nothing_else(services: Services, domain: str) -> None:
    enable(services)
    pairs, _ = population(services)
    job = ml_jobs.run_matching_job(services, domain_name=DOMAIN)
    assert job.status == ml_jobs.COMPLETED
    assert job.profiles_reviewed == 10
    assert job.matches_found == 3
    assert job.merges_done == 0
    assert job.started_at is not None and job.ended_at is not None
    with services.read() as tx:
        page = ml_jobs.list_groups(tx, domain_name=DOMAIN)
    assert page.total == 3 and not page.more
    assert page.generated_at is not None
    assert sorted(g.profile_ids for g in page.groups) == sorted(tuple(sorted(p)) for p in pairs)
    for group in page.groups:
        assert ml_jobs.MATCH_THRESHOLD <= group.confidence <= 1.0


def test_explanation_names_attributes_and_weights(services: Services, domain: str) -> None:
    enable(services)
    pairs, _ = population(services)
    ml_jobs.run_matching_job(services, domain_name=DOMAIN)
    with services.read() as tx:
        page = ml_jobs.list_groups(tx, domain_name=DOMAIN)
        margaret = next(g for g in page.groups if set(g.profile_ids) == set(pairs[0]))
        group = ml_jobs.get_group(tx, domain_name=DOMAIN, match_id=margaret.match_id)
    (edge,) = group.explanation
    weights = {a["Attribute"]: a for a in edge["Attributes"]}
    assert set(weights) == set(ml_jobs.ATTRIBUTES.values())
    # Same phone and email after normalisation; the first name differs by a typo.
    assert weights["PhoneNumber"]["Level"].startswith("Exact match")
    assert weights["EmailAddress"]["Level"].startswith("Exact match")
    assert not weights["FirstName"]["Level"].startswith("Exact match")
    assert weights["PhoneNumber"]["MatchWeight"] > 0
    assert edge["MatchProbability"] >= ml_jobs.MATCH_THRESHOLD


def test_similar_profiles_finds_the_group(services: Services, domain: str) -> None:
    enable(services)
    pairs, others = population(services)
    ml_jobs.run_matching_job(services, domain_name=DOMAIN)
    with services.read() as tx:
        found = ml_jobs.similar_profiles(
            tx, domain_name=DOMAIN, search_key="_profileId", search_value=pairs[1][0]
        )
        alone = ml_jobs.similar_profiles(
            tx, domain_name=DOMAIN, search_key="_profileId", search_value=others[0]
        )
        with pytest.raises(NotFound):
            ml_jobs.similar_profiles(
                tx, domain_name=DOMAIN, search_key="_profileId", search_value="0" * 32
            )
    assert found is not None and set(found.profile_ids) == set(pairs[1])
    assert alone is None


def test_training_path_runs_and_a_tiny_domain_does_not_crash(
    services: Services, domain: str
) -> None:
    enable(services)
    population(services)
    trained = ml_jobs.run_matching_job(services, domain_name=DOMAIN, min_training_profiles=2)
    assert trained.status == ml_jobs.COMPLETED
    assert trained.matches_found >= 2
    one = ml_jobs.score(ml_jobs.features({"p1": PEOPLE[0]}, "US"))
    assert one.groups == []


def test_jobs_are_listed_newest_first(services: Services, domain: str) -> None:
    enable(services)
    first = ml_jobs.run_matching_job(services, domain_name=DOMAIN)
    second = ml_jobs.run_matching_job(services, domain_name=DOMAIN)
    with services.read() as tx:
        jobs, more = ml_jobs.list_jobs(tx, domain_name=DOMAIN)
        assert ml_jobs.get_job(tx, domain_name=DOMAIN, job_id=first.job_id).status == "COMPLETED"
    assert [j.job_id for j in jobs] == [second.job_id, first.job_id] and not more
    assert first.matches_found == 0 and first.profiles_reviewed == 0


def test_auto_merging_merges_by_consolidation_and_can_be_undone(
    services: Services, domain: str
) -> None:
    enable(
        services,
        AutoMerging={
            "Enabled": True,
            "Consolidation": {
                "MatchingAttributesList": [["BirthDate", "LastName"], ["EmailAddress"]]
            },
            "MinAllowedConfidenceScoreForMerging": 0.5,
        },
    )
    pairs, _ = population(services)
    job = ml_jobs.run_matching_job(services, domain_name=DOMAIN)
    # Margaret/Margret and Alan: same birth date and last name; Grace/Hoper: the last names
    # differ and the duplicate has no email, so no criterion holds.
    assert job.status == ml_jobs.COMPLETED and job.merges_done == 2
    with services.read() as tx:
        merges = service.list_merges(tx, domain_name=DOMAIN)
    merged = {frozenset((m.main_profile_id, *m.merged_profile_ids)) for m in merges}
    assert merged == {frozenset(pairs[0]), frozenset(pairs[2])}
    with services.write() as tx:
        service.undo_merge(tx, domain_name=DOMAIN, merge_id=merges[0].merge_id)


def test_auto_merging_preview_counts_without_merging(services: Services, domain: str) -> None:
    enable(services)
    population(services)
    ml_jobs.run_matching_job(services, domain_name=DOMAIN)
    consolidation = {"MatchingAttributesList": [["BirthDate", "LastName"], ["EmailAddress"]]}
    with services.read() as tx:
        preview = ml_jobs.auto_merging_preview(
            tx, domain_name=DOMAIN, consolidation=consolidation, min_confidence=0.5
        )
        # A threshold above every score leaves nothing in the sample.
        empty = ml_jobs.auto_merging_preview(
            tx, domain_name=DOMAIN, consolidation=consolidation, min_confidence=1.01
        )
    # The same plan the auto-merge test merges: two of the three pairs.
    assert preview == ml_jobs.MergePreview(3, 6, 2)
    assert empty == ml_jobs.MergePreview(0, 0, 0)
    with services.read() as tx:
        assert service.list_merges(tx, domain_name=DOMAIN) == []


def test_errors(services: Services, domain: str) -> None:
    with pytest.raises(BadRequest, match="not enabled"):
        ml_jobs.run_matching_job(services, domain_name=DOMAIN)
    with pytest.raises(NotFound):
        ml_jobs.run_matching_job(services, domain_name="nosuch")
    enable(services)
    with services.read() as tx:
        with pytest.raises(NotFound):
            ml_jobs.get_job(tx, domain_name=DOMAIN, job_id="nosuch")
        with pytest.raises(NotFound):
            ml_jobs.get_group(tx, domain_name=DOMAIN, match_id="nosuch")


def test_cli_run_job_and_explain(settings: Any, services: Services, domain: str) -> None:
    import json

    from click.testing import CliRunner

    from openprofiles.cli import main

    storage = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        storage += ["--database-url", settings.database_url]
    refused = CliRunner().invoke(main, ["matches", "run-job", *storage, "--domain", DOMAIN])
    assert refused.exit_code == 1 and "not enabled" in refused.output
    enable(services)
    pairs, _ = population(services)
    ran = CliRunner().invoke(main, ["matches", "run-job", *storage, "--domain", DOMAIN, "--json"])
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.output)["JobStats"]["NumberOfMatchesFound"] == 3
    with services.read() as tx:
        match_id = ml_jobs.list_groups(tx, domain_name=DOMAIN).groups[0].match_id
    shown = CliRunner().invoke(
        main, ["matches", "explain-ml", *storage, "--domain", DOMAIN, match_id]
    )
    assert shown.exit_code == 0, shown.output
    assert "PhoneNumber" in shown.output and "confidence" in shown.output
    # No value is printed: the explanation holds levels and weights only.
    assert "hamilton" not in shown.output.casefold()


def test_features_are_normalised_column_by_column() -> None:
    table = ml_jobs.features(
        {
            "p1": {
                "FirstName": "  Mary  Ann ",
                "LastName": "O'Neil",
                "EmailAddress": "   ",
                "BusinessEmailAddress": " Mary@Work.Example ",
                "PhoneNumber": "",
                "MobilePhoneNumber": "(206) 555-0101",
                "ShippingAddress": {"City": " New   York ", "PostalCode": "100 01"},
                "BirthDate": " 1990-01-02 ",
            },
            "p2": {"FirstName": "Mary  ann", "PhoneNumber": "+1 206 555 0101"},
        },
        "US",
    )
    assert len(table) == 2
    assert table.row(0) == {
        "unique_id": "p1",
        "first_name": "mary ann",
        "last_name": "o'neil",
        "email": "mary@work.example",
        "phone": "+12065550101",
        "postal_code": "10001",
        "city": "new york",
        "birth_date": "1990-01-02",
    }
    assert table.row(1) == {
        "unique_id": "p2",
        "first_name": "mary ann",
        "last_name": None,
        "email": None,
        "phone": "+12065550101",
        "postal_code": None,
        "city": None,
        "birth_date": None,
    }


def test_auto_merging_a_group_larger_than_one_merge_merges_all_of_it(
    services: Services, domain: str
) -> None:
    """MergeProfiles takes 20 ids; a larger group merges in chunks (it used to cut the list at
    20 while resolving fields over all of it: BadRequest, and the whole job FAILED)."""
    enable(
        services,
        AutoMerging={
            "Enabled": True,
            "Consolidation": {"MatchingAttributesList": [["EmailAddress"]]},
        },
    )
    same = {"FirstName": "Maria", "LastName": "Garcia", "EmailAddress": "maria@example.com"}
    ids = [new_profile(services, **same, Attributes={f"only{i}": "v"}) for i in range(23)]
    group = MatchGroup(match_id="g", profile_ids=tuple(ids), confidence=0.99)
    with services.write() as tx:
        merges = ml_jobs.auto_merge(
            tx,
            domain_name=DOMAIN,
            groups=[group],
            auto={"Consolidation": {"MatchingAttributesList": [["EmailAddress"]]}},
        )
    assert merges == 2  # 22 others: 19 + 3 (each merge names the main profile and 19 more)
    with services.read() as tx:
        [survivor] = {
            r.profile_id
            for r in profiles.get_profiles(tx, domain_name=DOMAIN, profile_ids=ids).values()
        }
        fields = profiles.get_profile(tx, domain_name=DOMAIN, profile_id=survivor).fields
    # Every profile's own attribute reached the survivor.
    assert set(fields["Attributes"]) == {f"only{i}" for i in range(23)}
