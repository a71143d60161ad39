"""AWS operations of identity resolution: MergeProfiles (spec §5.3), ListRuleBasedMatches and
GetSimilarProfiles for rule-based matching (spec §5.1), and for ML-based matching (spec §5.2)
GetSimilarProfiles, GetMatches, ListIdentityResolutionJobs and GetIdentityResolutionJob."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openprofiles.context import RequestContext
from openprofiles.errors import BadRequest
from openprofiles.identity import matching, ml_jobs, service
from openprofiles.wire.pagination import token_scope

# What the cloud service answers (spec §5.3, observed).
MERGE_MESSAGE = "Success!"


def merge_profiles(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.write() as tx:
        service.merge_profiles(
            tx,
            domain_name=params["DomainName"],
            main_profile_id=params["MainProfileId"],
            profile_ids=params["ProfileIdsToBeMerged"],
            field_sources=params.get("FieldSourceProfileIds"),
        )
    return {"Message": MERGE_MESSAGE}


# ---------------------------------------------------------------------------- rule-based matching

DEFAULT_MATCH_PAGE = 100
DEFAULT_SIMILAR_PAGE = 20


def list_rule_based_matches(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    domain_name = params["DomainName"]
    scope = token_scope("ListRuleBasedMatches", domain_name)
    after = None
    if params.get("NextToken"):
        after = ctx.services.tokens.decode(scope, params["NextToken"])["after"]
    with ctx.read() as tx:
        ids, more = matching.list_matches(
            tx,
            domain_name=domain_name,
            limit=params.get("MaxResults") or DEFAULT_MATCH_PAGE,
            after=after,
        )
    out: dict[str, Any] = {"MatchIds": ids}
    if more and ids:
        out["NextToken"] = ctx.services.tokens.encode(scope, {"after": ids[-1]})
    return out


def get_similar_profiles(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    domain_name = params["DomainName"]
    # The token is read before the search, so a foreign one is refused whatever the search finds.
    after = None
    if params.get("NextToken"):
        after = ctx.services.tokens.decode(_similar_scope(params), params["NextToken"])["after"]
    if params["MatchType"] == ml_jobs.MATCH_TYPE:
        return _similar_ml(ctx, params, after)
    if params["MatchType"] != matching.MATCH_TYPE:
        raise BadRequest(f"MatchType {params['MatchType']} is not a known match type.")
    with ctx.read() as tx:
        found = matching.similar_profiles(
            tx,
            domain_name=domain_name,
            search_key=params["SearchKey"],
            search_value=params["SearchValue"],
        )
    if found is None:
        return {"MatchType": matching.MATCH_TYPE, "ProfileIds": []}
    return {
        "MatchType": matching.MATCH_TYPE,
        "MatchId": found.match_id,
        "RuleLevel": found.level,
        **_page_of_ids(ctx, params, found.profile_ids, after),
    }


def _similar_scope(params: dict[str, Any]) -> str:
    """GetSimilarProfiles' token resumes only the search it came from: the domain, the match
    type, the search key and value."""
    return token_scope(
        "GetSimilarProfiles",
        params["DomainName"],
        params["MatchType"],
        params["SearchKey"],
        params["SearchValue"],
    )


def _page_of_ids(
    ctx: RequestContext, params: dict[str, Any], profile_ids: Sequence[str], after: str | None
) -> dict[str, Any]:
    """ProfileIds (and NextToken) of one page of a match group, for either match type."""
    limit = params.get("MaxResults") or DEFAULT_SIMILAR_PAGE
    ids = [p for p in profile_ids if after is None or p > after]
    out: dict[str, Any] = {"ProfileIds": ids[:limit]}
    if len(ids) > limit:
        out["NextToken"] = ctx.services.tokens.encode(
            _similar_scope(params), {"after": ids[limit - 1]}
        )
    return out


def _similar_ml(ctx: RequestContext, params: dict[str, Any], after: str | None) -> dict[str, Any]:
    with ctx.read() as tx:
        group = ml_jobs.similar_profiles(
            tx,
            domain_name=params["DomainName"],
            search_key=params["SearchKey"],
            search_value=params["SearchValue"],
        )
    if group is None:
        return {"MatchType": ml_jobs.MATCH_TYPE, "ProfileIds": []}
    return {
        "MatchType": ml_jobs.MATCH_TYPE,
        "MatchId": group.match_id,
        "ConfidenceScore": group.confidence,
        **_page_of_ids(ctx, params, group.profile_ids, after),
    }


# ---------------------------------------------------------------------------- ML-based matching

DEFAULT_JOB_PAGE = 100


def get_auto_merging_preview(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    ml_jobs.validate_consolidation(params["Consolidation"])
    with ctx.read() as tx:
        preview = ml_jobs.auto_merging_preview(
            tx,
            domain_name=params["DomainName"],
            consolidation=params["Consolidation"],
            min_confidence=params.get("MinAllowedConfidenceScoreForMerging"),
        )
    return {
        "DomainName": params["DomainName"],
        "NumberOfMatchesInSample": preview.matches_in_sample,
        "NumberOfProfilesInSample": preview.profiles_in_sample,
        "NumberOfProfilesWillBeMerged": preview.profiles_to_merge,
    }


def get_matches(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    scope = token_scope("GetMatches", params["DomainName"])
    after = None
    if params.get("NextToken"):
        after = ctx.services.tokens.decode(scope, params["NextToken"])["after"]
    with ctx.read() as tx:
        page = ml_jobs.list_groups(
            tx,
            domain_name=params["DomainName"],
            limit=params.get("MaxResults") or DEFAULT_MATCH_PAGE,
            after=after,
        )
    out: dict[str, Any] = {
        "PotentialMatches": page.total,
        "Matches": [
            {
                "MatchId": g.match_id,
                "ProfileIds": list(g.profile_ids),
                "ConfidenceScore": g.confidence,
            }
            for g in page.groups
        ],
    }
    if page.generated_at is not None:
        out["MatchGenerationDate"] = page.generated_at
    if page.more and page.groups:
        out["NextToken"] = ctx.services.tokens.encode(scope, {"after": page.groups[-1].match_id})
    return out


def _job_stats(job: ml_jobs.JobRecord) -> dict[str, Any]:
    return {
        "NumberOfProfilesReviewed": job.profiles_reviewed,
        "NumberOfMatchesFound": job.matches_found,
        "NumberOfMergesDone": job.merges_done,
    }


def _job_summary(job: ml_jobs.JobRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "DomainName": job.domain_name,
        "JobId": job.job_id,
        "Status": job.status,
        "JobStats": _job_stats(job),
    }
    if job.started_at is not None:
        out["JobStartTime"] = job.started_at
    if job.ended_at is not None:
        out["JobEndTime"] = job.ended_at
    if job.message:
        out["Message"] = job.message
    return out


def list_identity_resolution_jobs(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    scope = token_scope("ListIdentityResolutionJobs", params["DomainName"])
    offset = 0
    if params.get("NextToken"):
        offset = ctx.services.tokens.decode(scope, params["NextToken"])["offset"]
    limit = params.get("MaxResults") or DEFAULT_JOB_PAGE
    with ctx.read() as tx:
        jobs, more = ml_jobs.list_jobs(
            tx, domain_name=params["DomainName"], limit=limit, offset=offset
        )
    out: dict[str, Any] = {"IdentityResolutionJobsList": [_job_summary(j) for j in jobs]}
    if more:
        out["NextToken"] = ctx.services.tokens.encode(scope, {"offset": offset + len(jobs)})
    return out


def get_identity_resolution_job(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    # A past job answers even with Matching off now; an unknown id is ResourceNotFound
    # (ml_jobs.get_job says why).
    with ctx.read() as tx:
        job = ml_jobs.get_job(tx, domain_name=params["DomainName"], job_id=params["JobId"])
    out = _job_summary(job)
    out["LastUpdatedAt"] = job.updated_at
    if job.auto_merging:
        out["AutoMerging"] = job.auto_merging
    return out
