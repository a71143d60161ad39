"""AWS operations on tags: TagResource, UntagResource, ListTagsForResource.

Tags are read and written under the resource's own ARN (tags.service.Taggable.arn): an
integration's tags are one set whichever spelling of its ARN the caller gave."""

from __future__ import annotations

from typing import Any

from openprofiles.context import RequestContext
from openprofiles.tags import service


def tag_resource(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.write() as tx:
        found = service.require_taggable(tx, resource_arn=params["resourceArn"])
        service.put_tags(
            tx, domain_name=found.domain_name, resource_arn=found.arn, tags=params["tags"]
        )
    return {}


def untag_resource(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.write() as tx:
        found = service.require_taggable(tx, resource_arn=params["resourceArn"])
        service.remove_tags(tx, resource_arn=found.arn, tag_keys=params["tagKeys"])
    return {}


def list_tags_for_resource(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.read() as tx:
        found = service.require_taggable(tx, resource_arn=params["resourceArn"])
        return {"tags": service.get_tags(tx, resource_arn=found.arn)}
