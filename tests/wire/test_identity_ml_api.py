"""ML-based matching (spec §5.2) through a real boto3 client against a live server (both
backends): a job run on demand, then GetMatches (paged), ListIdentityResolutionJobs,
GetIdentityResolutionJob and GetSimilarProfiles with ML_BASED_MATCHING, and the error codes."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from openprofiles.identity import ml_jobs

PEOPLE = [
    ("Margaret", "Hamilton", "margaret@example.com", "+1 206 555 0101", "1936-08-17", "02139"),
    ("Margret", "Hamilton", "Margaret@Example.com", "(206) 555-0101", "1936-08-17", "02139"),
    ("Grace", "Hopper", "grace@navy.example", "+1 206 555 0102", "1906-12-09", "22201"),
    ("Grace", "Hoper", "grace@navy.example", "206.555.0102", "1906-12-09", "22201"),
    ("Ada", "Lovelace", "ada@example.com", "+44 20 7946 0200", "1815-12-10", "W1 1AA"),
    ("Katherine", "Hamilton", "k.hamilton@example.org", "+1 617 555 0300", "1970-01-01", "02139"),
]


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


@pytest.fixture
def domain(live_server: Any) -> str:
    name = f"ml-{uuid.uuid4().hex[:10]}"
    live_server.client().create_domain(
        DomainName=name, DefaultExpirationDays=30, Matching={"Enabled": True}
    )
    return name


def _populate(client: Any, domain: str) -> list[str]:
    return [
        client.create_profile(
            DomainName=domain,
            FirstName=first,
            LastName=last,
            EmailAddress=email,
            PhoneNumber=phone,
            BirthDate=birth,
            Address={"PostalCode": postal},
        )["ProfileId"]
        for first, last, email, phone, birth, postal in PEOPLE
    ]


def test_job_matches_and_jobs_through_boto3(live_server: Any, domain: str) -> None:
    client = live_server.client()
    ids = _populate(client, domain)
    assert client.get_matches(DomainName=domain)["Matches"] == []
    job = ml_jobs.run_matching_job(live_server.services, domain_name=domain)
    assert job.status == "COMPLETED"

    first = client.get_matches(DomainName=domain, MaxResults=1)
    assert first["PotentialMatches"] == 2 and len(first["Matches"]) == 1
    rest = client.get_matches(DomainName=domain, MaxResults=1, NextToken=first["NextToken"])
    assert "NextToken" not in rest and "MatchGenerationDate" in rest
    matches = first["Matches"] + rest["Matches"]
    assert sorted(sorted(m["ProfileIds"]) for m in matches) == sorted(
        [sorted(ids[0:2]), sorted(ids[2:4])]
    )
    assert all(0.9 <= m["ConfidenceScore"] <= 1.0 for m in matches)

    jobs = client.list_identity_resolution_jobs(DomainName=domain)["IdentityResolutionJobsList"]
    assert [j["JobId"] for j in jobs] == [job.job_id]
    assert jobs[0]["Status"] == "COMPLETED"
    got = client.get_identity_resolution_job(DomainName=domain, JobId=job.job_id)
    assert got["JobStats"] == {
        "NumberOfProfilesReviewed": 6,
        "NumberOfMatchesFound": 2,
        "NumberOfMergesDone": 0,
    }
    assert got["JobStartTime"] <= got["JobEndTime"]

    similar = client.get_similar_profiles(
        DomainName=domain,
        MatchType="ML_BASED_MATCHING",
        SearchKey="_profileId",
        SearchValue=ids[2],
    )
    assert sorted(similar["ProfileIds"]) == sorted(ids[2:4])
    assert similar["MatchType"] == "ML_BASED_MATCHING" and similar["ConfidenceScore"] >= 0.9
    alone = client.get_similar_profiles(
        DomainName=domain, MatchType="ML_BASED_MATCHING", SearchKey="_profileId", SearchValue=ids[4]
    )
    assert alone["ProfileIds"] == [] and "MatchId" not in alone


def test_errors(live_server: Any, domain: str) -> None:
    client = live_server.client()
    with pytest.raises(ClientError) as exc:
        client.get_matches(DomainName="nosuch-domain")
    assert _code(exc) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as exc:
        client.get_identity_resolution_job(DomainName=domain, JobId=uuid.uuid4().hex)
    assert _code(exc) == "ResourceNotFoundException"
    off = f"ml-{uuid.uuid4().hex[:10]}"
    client.create_domain(DomainName=off, DefaultExpirationDays=30)
    # Jobs are listed, like one is got, whether or not Matching is on now: none here.
    assert client.list_identity_resolution_jobs(DomainName=off)["IdentityResolutionJobsList"] == []
    with pytest.raises(ClientError) as exc:
        client.list_identity_resolution_jobs(DomainName="nosuch-domain")
    assert _code(exc) == "ResourceNotFoundException"
    for call in (
        lambda: client.get_matches(DomainName=off),
        lambda: client.get_similar_profiles(
            DomainName=off, MatchType="ML_BASED_MATCHING", SearchKey="_profileId", SearchValue="x"
        ),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert _code(exc) == "BadRequestException"


def test_turning_matching_off_deletes_pending_jobs_only(live_server: Any, domain: str) -> None:
    """The model's IdentityResolutionJobStatus: turning the feature off deletes PENDING jobs;
    the jobs that ran stay listed and readable."""
    client = live_server.client()
    _populate(client, domain)
    ran = ml_jobs.run_matching_job(live_server.services, domain_name=domain)
    assert ran is not None and ran.status == "COMPLETED"
    with live_server.services.write() as tx:
        pending = ml_jobs.create_job(tx, domain_name=domain)
    listed = client.list_identity_resolution_jobs(DomainName=domain)["IdentityResolutionJobsList"]
    assert {j["JobId"]: j["Status"] for j in listed} == {
        ran.job_id: "COMPLETED",
        pending.job_id: "PENDING",
    }

    client.update_domain(DomainName=domain, Matching={"Enabled": False})

    listed = client.list_identity_resolution_jobs(DomainName=domain)["IdentityResolutionJobsList"]
    assert [j["JobId"] for j in listed] == [ran.job_id]
    with pytest.raises(ClientError) as exc:
        client.get_identity_resolution_job(DomainName=domain, JobId=pending.job_id)
    assert _code(exc) == "ResourceNotFoundException"
    assert client.get_identity_resolution_job(DomainName=domain, JobId=ran.job_id)["Status"] == (
        "COMPLETED"
    )
    # The process that created the deleted job finds it gone when it starts, and runs nothing.
    assert ml_jobs.run_job(live_server.services, pending) is None
    # An update that leaves Matching out does not touch the jobs.
    client.update_domain(DomainName=domain, Matching={"Enabled": True})
    with live_server.services.write() as tx:
        kept = ml_jobs.create_job(tx, domain_name=domain)
    client.update_domain(DomainName=domain, DefaultExpirationDays=40)
    assert client.get_identity_resolution_job(DomainName=domain, JobId=kept.job_id)["Status"] == (
        "PENDING"
    )


def test_auto_merging_preview_through_boto3(live_server: Any, domain: str) -> None:
    client = live_server.client()
    _populate(client, domain)
    ml_jobs.run_matching_job(live_server.services, domain_name=domain)
    preview = client.get_auto_merging_preview(
        DomainName=domain,
        # Margaret/Margret share birth date and last name; Grace/Hoper do not.
        Consolidation={"MatchingAttributesList": [["BirthDate", "LastName"]]},
        ConflictResolution={"ConflictResolvingModel": "RECENCY"},
        MinAllowedConfidenceScoreForMerging=0.5,
    )
    assert preview["DomainName"] == domain
    assert preview["NumberOfMatchesInSample"] == 2
    assert preview["NumberOfProfilesInSample"] == 4
    assert preview["NumberOfProfilesWillBeMerged"] == 1
    # A preview merges nothing.
    assert len(client.get_matches(DomainName=domain)["Matches"]) == 2
    with pytest.raises(ClientError) as exc:
        client.get_auto_merging_preview(
            DomainName="no-such-domain",
            Consolidation={"MatchingAttributesList": [["BirthDate"]]},
            ConflictResolution={"ConflictResolvingModel": "RECENCY"},
        )
    assert _code(exc) == "ResourceNotFoundException"


def test_get_identity_resolution_job_with_matching_off(live_server: Any, domain: str) -> None:
    """Turning Matching off keeps the jobs that ran (the model deletes only PENDING ones):
    GetIdentityResolutionJob still answers for them, and an id the domain has no job by is
    ResourceNotFoundException naming the job and the domain, Matching on or off."""
    client = live_server.client()
    _populate(client, domain)
    job = ml_jobs.run_matching_job(live_server.services, domain_name=domain)
    unknown = uuid.uuid4().hex
    client.update_domain(DomainName=domain, Matching={"Enabled": False})

    got = client.get_identity_resolution_job(DomainName=domain, JobId=job.job_id)
    assert (got["JobId"], got["Status"]) == (job.job_id, "COMPLETED")
    assert got["JobStats"]["NumberOfMatchesFound"] == 2

    for enabled in (False, True):
        client.update_domain(DomainName=domain, Matching={"Enabled": enabled})
        with pytest.raises(ClientError) as exc:
            client.get_identity_resolution_job(DomainName=domain, JobId=unknown)
        assert _code(exc) == "ResourceNotFoundException"
        assert exc.value.response["Error"]["Message"] == (
            f"The identity resolution job {unknown} does not exist in domain {domain}."
        )
    with pytest.raises(ClientError) as exc:
        client.get_identity_resolution_job(DomainName="no-such-domain", JobId=unknown)
    assert _code(exc) == "ResourceNotFoundException"
