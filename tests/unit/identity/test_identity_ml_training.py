"""Probabilistic matching jobs on domains large enough to train the model (at least
`ml_jobs.MIN_TRAINING_PROFILES` profiles), through `run_job`: a training step that cannot run
leaves the model usable, and the job completes and finds the planted duplicates.

Splink's EM training removes the comparisons its blocking rule uses from the model while it
runs; one that raised used to leave them removed, so every job of 1,000 profiles or more whose
EM step failed stopped at FIND_MATCHING (BinderException: the predictions lacked the removed
comparison's weight). Two ways a step fails, each on a population generated from a fixed seed:
no two profiles share a birth date (contact-centre data without birth dates), and an EM run
whose estimates underflow (Splink's ValueError "m_probability value 0.0 is below the
minimum"), here after EM on pairs that share a birth date but are mostly different people.

The populations have names from small pools (so many unrelated people share a name), unique
emails and phones, and duplicates (the same person with the email in capitals and the phone
written another way). Scoring does not depend on the backend, so these run on SQLite only: a
job of 1,000 profiles takes seconds."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from typing import Any

import pytest

from openprofiles.app import build_services
from openprofiles.context import Services
from openprofiles.domains.service import update_domain
from openprofiles.identity import ml_jobs
from openprofiles.profiles import service as profiles
from openprofiles.settings import Settings

from .conftest import DOMAIN, make_domain

FIRST = ["ann", "bob", "cara", "dan", "eve", "fred", "gus", "hana", "ivan", "jo", "kim", "lee"]
LAST = ["smith", "jones", "brown", "lopez", "ng", "patel", "kim", "diaz"]
PROFILES = ml_jobs.MIN_TRAINING_PROFILES
DUPLICATES = 40


def population(
    *, seed: int, birth_dates: float, shared_phones: float
) -> tuple[dict[str, dict[str, Any]], list[tuple[str, str]]]:
    """PROFILES profiles by profile id, and the (person, duplicate) id pairs among them.

    `birth_dates`: the share of people with a birth date, one of 28 days (so unrelated people
    share one); `shared_phones`: the share of people (not duplicated) who call from the phone
    of someone before them (a household or a switchboard)."""
    rng = random.Random(seed)
    fields: dict[str, dict[str, Any]] = {}
    pairs: list[tuple[str, str]] = []

    def add(values: dict[str, Any]) -> str:
        profile_id = f"{rng.getrandbits(128):032x}"
        fields[profile_id] = values
        return profile_id

    for n in range(PROFILES - DUPLICATES):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        person: dict[str, Any] = {
            "FirstName": first.title(),
            "LastName": last.title(),
            "EmailAddress": f"{first}.{last}{n}@example.com",
            "PhoneNumber": f"+1 206 555 {n:04d}",
        }
        if n > DUPLICATES and rng.random() < shared_phones:
            person["PhoneNumber"] = rng.choice(list(fields.values()))["PhoneNumber"]
        if rng.random() < birth_dates:
            person["BirthDate"] = f"1980-01-{rng.randrange(28) + 1:02d}"
        profile_id = add(person)
        if n < DUPLICATES:
            duplicate = {
                **person,
                "EmailAddress": person["EmailAddress"].upper(),
                "PhoneNumber": f"(206) 555-{n:04d}",
            }
            pairs.append((profile_id, add(duplicate)))
    return fields, pairs


@pytest.fixture
def services(sqlite_settings: Settings) -> Iterator[Services]:
    built = build_services(sqlite_settings)
    try:
        yield built
    finally:
        built.database.dispose()


def load(services: Services, fields: dict[str, dict[str, Any]]) -> None:
    """A domain with Matching on and the profiles, written in one batch (as ingestion does)."""
    make_domain(services)
    with services.write() as tx:
        update_domain(tx, domain_name=DOMAIN, changes={"Matching": {"Enabled": True}})
        records = [
            profiles.new_profile_record(tx, fields=values, manual=False, profile_id=profile_id)
            for profile_id, values in fields.items()
        ]
        profiles.write_profiles(tx, domain_name=DOMAIN, created=records, updated=[])


def run(services: Services, caplog: pytest.LogCaptureFixture) -> tuple[ml_jobs.JobRecord, str]:
    """Run a job at the default training threshold; the job and what it logged."""
    caplog.set_level(logging.INFO, logger=ml_jobs.logger.name)
    job = ml_jobs.run_matching_job(services, domain_name=DOMAIN)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == ml_jobs.logger.name)
    return job, logged


def found_groups(services: Services) -> list[tuple[str, ...]]:
    with services.read() as tx:
        page = ml_jobs.list_groups(tx, domain_name=DOMAIN, limit=1000)
    assert not page.more
    return [g.profile_ids for g in page.groups]


def test_a_domain_without_birth_dates_trains_and_finds_the_duplicates(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    fields, pairs = population(seed=0, birth_dates=0.0, shared_phones=0.0)
    load(services, fields)
    job, logged = run(services, caplog)
    assert job.status == ml_jobs.COMPLETED, job.message
    assert job.profiles_reviewed == PROFILES
    # Trained (u by sampling, m by EM on the pairs sharing a phone), not the priors alone.
    assert job.message is None
    # EM blocked on birth date had no pair to learn from, and the job went on without it.
    assert "m estimation blocked on birth_date could not run (EMTrainingException)" in logged
    assert sorted(found_groups(services)) == sorted(tuple(sorted(p)) for p in pairs)
    assert job.matches_found == DUPLICATES


# EM is no longer blocked on the phone (ml_jobs._train), whose step seed 1 made fail.
@pytest.mark.parametrize(("seed", "failed_step"), [(9, "birth_date")], ids=["birth-date"])
def test_an_em_step_whose_estimates_underflow_keeps_the_model(
    services: Services, caplog: pytest.LogCaptureFixture, seed: int, failed_step: str
) -> None:
    fields, pairs = population(seed=seed, birth_dates=0.34, shared_phones=0.3)
    load(services, fields)
    job, logged = run(services, caplog)
    assert job.status == ml_jobs.COMPLETED, job.message
    assert job.message is None
    # The population makes this EM step fail as described above: if Splink stops failing on
    # it, this test no longer covers a failed step and needs another population.
    assert f"m estimation blocked on {failed_step} could not run (ValueError)" in logged
    groups = found_groups(services)
    for pair in pairs:
        assert any(set(pair) <= set(group) for group in groups), pair
    # The other groups are people the data cannot tell apart (same name, birth date or phone),
    # never people of different names.
    for group in groups:
        names = {(fields[p]["FirstName"], fields[p]["LastName"]) for p in group}
        assert len(names) == 1, names
