"""AWS operations on profiles: CreateProfile, UpdateProfile, DeleteProfile, BatchGetProfile,
SearchProfiles, AddProfileKey, DeleteProfileKey."""

from __future__ import annotations

from typing import Any

from openprofiles.context import RequestContext
from openprofiles.errors import NotFound, ServiceError
from openprofiles.profiles import service
from openprofiles.profiles.models import PROFILE_FIELDS, KeyMatch, ProfileRecord
from openprofiles.wire.pagination import token_scope

SEARCH_DEFAULT_PAGE = 20


def profile_to_wire(
    record: ProfileRecord, found_by: list[KeyMatch] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"ProfileId": record.profile_id, **record.fields}
    if found_by:
        out["FoundByItems"] = [{"KeyName": m.key_name, "Values": list(m.values)} for m in found_by]
    return out


def _fields(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k in PROFILE_FIELDS}


def create_profile(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.write() as tx:
        record = service.create_profile(
            tx, domain_name=params["DomainName"], fields=_fields(params)
        )
    return {"ProfileId": record.profile_id}


def update_profile(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.write() as tx:
        record = service.update_profile(
            tx,
            domain_name=params["DomainName"],
            profile_id=params["ProfileId"],
            changes=_fields(params),
        )
    return {"ProfileId": record.profile_id}


def delete_profile(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.write() as tx:
        service.delete_profile(tx, domain_name=params["DomainName"], profile_id=params["ProfileId"])
    return {"Message": "Profile deleted."}


def batch_get_profile(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    """Each requested id is answered once, by a profile of that id or by an Errors entry of that
    id: the output has no mapping from requested ids to profiles, so a merged-away id is an error
    (its profile was deleted by the merge, as on AWS; profiles.service docstring), not the
    survivor under another id that a client could not tell from an answer to its own request."""
    domain_name = params["DomainName"]
    requested = list(dict.fromkeys(params["ProfileIds"]))
    with ctx.read() as tx:
        found = service.get_profiles(tx, domain_name=domain_name, profile_ids=requested)
    errors = []
    for pid in requested:
        if pid not in found:
            errors.append(_batch_error(pid, NotFound("Profile not found.")))
        elif found[pid].profile_id != pid:
            errors.append(
                _batch_error(pid, service.merged_away(domain_name, pid, found[pid].profile_id))
            )
    return {
        "Profiles": [
            profile_to_wire(found[pid])
            for pid in requested
            if pid in found and found[pid].profile_id == pid
        ],
        "Errors": errors,
    }


def _batch_error(profile_id: str, error: ServiceError) -> dict[str, str]:
    return {"Code": error.code, "Message": error.caller_message, "ProfileId": profile_id}


def search_profiles(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    criteria = [service.SearchCriterion(params["KeyName"], tuple(params["Values"]))]
    criteria += [
        service.SearchCriterion(item["KeyName"], tuple(item["Values"]))
        for item in params.get("AdditionalSearchKeys") or []
    ]
    operator = params.get("LogicalOperator") or "OR"
    limit = params.get("MaxResults") or SEARCH_DEFAULT_PAGE
    # The token is bound to the exact search, so it cannot page through another one.
    scope = token_scope(
        "SearchProfiles",
        params["DomainName"],
        operator,
        [(c.key_name, c.values) for c in criteria],
    )
    after = None
    if params.get("NextToken"):
        after = ctx.services.tokens.decode(scope, params["NextToken"])["after"]
    with ctx.read() as tx:
        page, cursor = service.search_profiles(
            tx,
            domain_name=params["DomainName"],
            criteria=criteria,
            logical_operator=operator,
            limit=limit,
            after=after,
        )
    out: dict[str, Any] = {"Items": [profile_to_wire(rec, found) for rec, found in page]}
    if cursor is not None:
        out["NextToken"] = ctx.services.tokens.encode(scope, {"after": cursor})
    return out


def add_profile_key(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.write() as tx:
        service.add_profile_key(
            tx,
            domain_name=params["DomainName"],
            profile_id=params["ProfileId"],
            key_name=params["KeyName"],
            values=params["Values"],
        )
    return {"KeyName": params["KeyName"], "Values": params["Values"]}


def delete_profile_key(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.write() as tx:
        service.delete_profile_key(
            tx,
            domain_name=params["DomainName"],
            profile_id=params["ProfileId"],
            key_name=params["KeyName"],
            values=params["Values"],
        )
    return {"Message": "Key deleted."}
