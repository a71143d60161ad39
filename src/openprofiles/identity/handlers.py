"""AWS operations of identity resolution: MergeProfiles (spec §5.3)."""

from __future__ import annotations

from typing import Any

from openprofiles.context import RequestContext
from openprofiles.identity import service

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
