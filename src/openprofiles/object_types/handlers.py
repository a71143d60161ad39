"""AWS operations on object types and templates: PutProfileObjectType, GetProfileObjectType,
ListProfileObjectTypes, DeleteProfileObjectType, ListProfileObjectTypeTemplates,
GetProfileObjectTypeTemplate."""

from __future__ import annotations

from typing import Any

from openprofiles.auth.policy import object_type_shown_to
from openprofiles.context import RequestContext, Tx
from openprofiles.domains.setup import check_encryption_key
from openprofiles.object_types import service, templates
from openprofiles.object_types.models import ObjectType, Template
from openprofiles.object_types.validation import compile_templates
from openprofiles.tags.service import get_tags, put_tags

DEFAULT_PAGE = 100


def _to_wire(tx: Tx, found: ObjectType) -> dict[str, Any]:
    definition = found.definition
    out: dict[str, Any] = {
        "ObjectTypeName": found.name,
        **{m: definition[m] for m in ("Description", "TemplateId") if m in definition},
        "ExpirationDays": found.expiration_days,
        "EncryptionKey": found.encryption_key,
        # The model's default is false; emit it as a boolean always (spec §1.6).
        "AllowProfileCreation": found.allow_profile_creation,
        "SourceLastUpdatedTimestampFormat": found.source_last_updated_timestamp_format,
        "MaxProfileObjectCount": found.max_profile_object_count,
        "SourcePriority": found.source_priority,
        "Fields": definition.get("Fields"),
        "Keys": definition.get("Keys"),
        "CreatedAt": found.created_at,
        "LastUpdatedAt": found.updated_at,
        "Tags": _tags(tx, found) or None,
    }
    if found.max_profile_object_count is not None:
        out["MaxAvailableProfileObjectCount"] = service.max_available_profile_object_count(
            tx, domain_name=found.domain_name, name=found.name
        )
    return {k: v for k, v in out.items() if v is not None}


def _tags(tx: Tx, found: ObjectType) -> dict[str, str]:
    return get_tags(tx, resource_arn=service.object_type_arn(tx, found.domain_name, found.name))


def put_profile_object_type(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    domain_name, name = params["DomainName"], params["ObjectTypeName"]
    if params.get("EncryptionKey"):
        # Checked as CreateDomain checks DefaultEncryptionKey, and kept and echoed; the type's
        # objects are sealed under the domain's data key all the same (README, "What is
        # implemented"). Before the transaction: the check may call KMS.
        check_encryption_key(ctx.services, domain_name, params["EncryptionKey"], "EncryptionKey")
    # Before the transaction: compiling a type's Source templates can take seconds, which
    # SQLite's one writer would otherwise spend holding every other write back.
    compile_templates(params)
    with ctx.write() as tx:
        found = service.put_object_type(tx, domain_name=domain_name, name=name, params=params)
        if params.get("Tags"):
            put_tags(
                tx,
                domain_name=domain_name,
                resource_arn=service.object_type_arn(tx, domain_name, name),
                tags=params["Tags"],
            )
        return _to_wire(tx, found)


def get_profile_object_type(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.read() as tx:
        found = service.get_object_type(
            tx, domain_name=params["DomainName"], name=params["ObjectTypeName"]
        )
        return object_type_shown_to(ctx.principal.role, _to_wire(tx, found))


def list_profile_object_types(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    domain_name = params["DomainName"]
    scope = f"ListProfileObjectTypes/{domain_name}"
    limit = params.get("MaxResults") or DEFAULT_PAGE
    after = None
    if params.get("NextToken"):
        after = ctx.services.tokens.decode(scope, params["NextToken"])["after"]
    with ctx.read() as tx:
        found, more = service.list_object_types(
            tx, domain_name=domain_name, after=after, limit=limit
        )
        items = []
        for item in found:
            wire = _to_wire(tx, item)
            items.append(
                {
                    k: wire[k]
                    for k in (
                        "ObjectTypeName",
                        "Description",
                        "CreatedAt",
                        "LastUpdatedAt",
                        "MaxProfileObjectCount",
                        "MaxAvailableProfileObjectCount",
                        "SourcePriority",
                        "Tags",
                    )
                    if k in wire
                }
            )
    out: dict[str, Any] = {"Items": items}
    if more and found:
        out["NextToken"] = ctx.services.tokens.encode(scope, {"after": found[-1].name})
    return out


def delete_profile_object_type(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    domain_name, name = params["DomainName"], params["ObjectTypeName"]
    with ctx.write() as tx:
        service.delete_object_type(tx, domain_name=domain_name, name=name)
    return {"Message": f"Object type {name} and its objects were deleted."}


def _template_item(template: Template) -> dict[str, Any]:
    return {
        "TemplateId": template.template_id,
        "SourceName": template.source_name,
        "SourceObject": template.source_object,
    }


def list_profile_object_type_templates(
    ctx: RequestContext, params: dict[str, Any]
) -> dict[str, Any]:
    scope = "ListProfileObjectTypeTemplates"
    limit = params.get("MaxResults") or DEFAULT_PAGE
    after = ""
    if params.get("NextToken"):
        after = ctx.services.tokens.decode(scope, params["NextToken"])["after"]
    remaining = [t for t in templates.list_templates() if t.template_id > after]
    page = remaining[:limit]
    out: dict[str, Any] = {"Items": [_template_item(t) for t in page]}
    if len(remaining) > limit:
        out["NextToken"] = ctx.services.tokens.encode(scope, {"after": page[-1].template_id})
    return out


def get_profile_object_type_template(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    template = templates.get_template(params["TemplateId"])
    return {**_template_item(template), **template.definition}
