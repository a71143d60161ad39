"""AWS operations on tags: TagResource, UntagResource, ListTagsForResource."""

from __future__ import annotations

from typing import Any

from openprofiles.context import RequestContext
from openprofiles.tags import service


def tag_resource(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    arn = params["resourceArn"]
    with ctx.write() as tx:
        domain_name = service.require_taggable(tx, resource_arn=arn)
        service.put_tags(tx, domain_name=domain_name, resource_arn=arn, tags=params["tags"])
    return {}


def untag_resource(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    arn = params["resourceArn"]
    with ctx.write() as tx:
        service.require_taggable(tx, resource_arn=arn)
        service.remove_tags(tx, resource_arn=arn, tag_keys=params["tagKeys"])
    return {}


def list_tags_for_resource(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    arn = params["resourceArn"]
    with ctx.read() as tx:
        service.require_taggable(tx, resource_arn=arn)
        return {"tags": service.get_tags(tx, resource_arn=arn)}
