"""AWS operations of identity resolution: MergeProfiles (spec §5.3), ListRuleBasedMatches and
GetSimilarProfiles for rule-based matching (spec §5.1)."""

from __future__ import annotations

from typing import Any

from openprofiles.context import RequestContext
from openprofiles.errors import BadRequest
from openprofiles.identity import matching, service

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
    after = None
    if params.get("NextToken"):
        state = ctx.services.tokens.decode("ListRuleBasedMatches", params["NextToken"])
        after = state["after"]
    with ctx.read() as tx:
        ids, more = matching.list_matches(
            tx,
            domain_name=domain_name,
            limit=params.get("MaxResults") or DEFAULT_MATCH_PAGE,
            after=after,
        )
    out: dict[str, Any] = {"MatchIds": ids}
    if more and ids:
        out["NextToken"] = ctx.services.tokens.encode("ListRuleBasedMatches", {"after": ids[-1]})
    return out


def get_similar_profiles(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    domain_name = params["DomainName"]
    if params["MatchType"] != matching.MATCH_TYPE:
        raise BadRequest(
            f"MatchType {params['MatchType']} is not available: only RULE_BASED_MATCHING "
            "is supported by this server yet."
        )
    with ctx.read() as tx:
        found = matching.similar_profiles(
            tx,
            domain_name=domain_name,
            search_key=params["SearchKey"],
            search_value=params["SearchValue"],
        )
    out: dict[str, Any] = {"MatchType": matching.MATCH_TYPE, "ProfileIds": []}
    if found is None:
        return out
    limit = params.get("MaxResults") or DEFAULT_SIMILAR_PAGE
    after = None
    if params.get("NextToken"):
        after = ctx.services.tokens.decode("GetSimilarProfiles", params["NextToken"])["after"]
    ids = [p for p in found.profile_ids if after is None or p > after]
    out.update(MatchId=found.match_id, RuleLevel=found.level, ProfileIds=ids[:limit])
    if len(ids) > limit:
        out["NextToken"] = ctx.services.tokens.encode(
            "GetSimilarProfiles", {"after": ids[limit - 1]}
        )
    return out
