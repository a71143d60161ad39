"""GetAutoMergingPreview counts the merges the matching job would make: not those of profiles
an undone merge separated (identity.matching._joinable), which the job leaves apart. Both
databases."""

from __future__ import annotations

from openprofiles.context import Services
from openprofiles.identity import ml_jobs, service

from .conftest import DOMAIN
from .test_identity_ml import enable, population

CONSOLIDATION = {"MatchingAttributesList": [["BirthDate", "LastName"], ["EmailAddress"]]}


def test_the_preview_leaves_out_profiles_an_undone_merge_separated(
    services: Services, domain: str
) -> None:
    enable(services)
    pairs, _ = population(services)
    # An operator merged Margaret and Margret, then undid it: they are two customers.
    with services.write() as tx:
        merge = service.merge_profiles(
            tx, domain_name=DOMAIN, main_profile_id=pairs[0][0], profile_ids=[pairs[0][1]]
        )
    with services.write() as tx:
        service.undo_merge(tx, domain_name=DOMAIN, merge_id=merge.merge_id)
    ml_jobs.run_matching_job(services, domain_name=DOMAIN)
    with services.read() as tx:
        preview = ml_jobs.auto_merging_preview(
            tx, domain_name=DOMAIN, consolidation=CONSOLIDATION, min_confidence=0.5
        )
    # Three groups, as without the undo; of the two pairs the criteria join, Alan's only.
    assert preview == ml_jobs.MergePreview(3, 6, 1)

    # What the job then does with these settings: the same.
    enable(
        services,
        AutoMerging={
            "Enabled": True,
            "Consolidation": CONSOLIDATION,
            "MinAllowedConfidenceScoreForMerging": 0.5,
        },
    )
    job = ml_jobs.run_matching_job(services, domain_name=DOMAIN)
    assert job.status == ml_jobs.COMPLETED and job.merges_done == preview.profiles_to_merge
    with services.read() as tx:
        standing = [m for m in service.list_merges(tx, domain_name=DOMAIN) if m.undone_at is None]
    assert [{m.main_profile_id, *m.merged_profile_ids} for m in standing] == [set(pairs[2])]
