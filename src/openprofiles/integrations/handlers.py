"""AWS operations on integrations: PutIntegration, GetIntegration, ListIntegrations,
DeleteIntegration, ListAccountIntegrations."""

from __future__ import annotations

import logging
from typing import Any

from openprofiles.auth.scope import scope_of
from openprofiles.contacts.service import connect_instance
from openprofiles.contacts.sweep import send_kept_on
from openprofiles.context import RequestContext, Tx
from openprofiles.errors import BadRequest
from openprofiles.integrations import service
from openprofiles.integrations.models import (
    DEFAULT_INSTANCE_OBJECT_TYPE,
    Integration,
    is_instance_arn,
)
from openprofiles.tags.service import get_tags

DEFAULT_PAGE = 20

logger = logging.getLogger(__name__)


def _out(tx: Tx, record: Integration) -> dict[str, Any]:
    settings = record.settings
    return {
        "DomainName": record.domain_name,
        "Uri": record.uri,
        "ObjectTypeName": record.object_type_name,
        "ObjectTypeNames": dict(record.object_type_names) if record.object_type_names else None,
        "CreatedAt": record.created_at,
        "LastUpdatedAt": record.updated_at,
        "Tags": get_tags(
            tx, resource_arn=service.integration_arn(tx, record.domain_name, record.uri)
        )
        or None,
        "WorkflowId": settings.get("WorkflowId"),
        "IsUnstructured": settings.get("IsUnstructured"),
        "RoleArn": settings.get("RoleArn"),
        "EventTriggerNames": settings.get("EventTriggerNames"),
        "Scope": settings.get("Scope"),
    }


def put_integration(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    try:
        return _put_integration(ctx, params)
    except service.InstanceTaken as exc:
        # The instance's domain is named only to a key that may act on it (auth.scope).
        key_scope = scope_of(ctx.principal)
        if key_scope is not None and not key_scope.allows(exc.owner):
            raise BadRequest(exc.unnamed) from None
        raise


def _put_integration(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    uri = params.get("Uri")
    settings = {m: params.get(m) for m in service.SETTING_MEMBERS}
    key_scope = scope_of(ctx.principal)
    if key_scope is not None and params.get("FlowDefinition") is not None:
        # A flow reads its source with the server's access, not the key's (auth.scope).
        raise key_scope.flow_refusal()
    if uri and is_instance_arn(uri) and params.get("FlowDefinition") is None:
        with ctx.write() as tx:
            # Associating an instance also replays the records kept while it had no domain: the
            # one way to associate (contacts.service.connect_instance). PutIntegration replaces
            # the integration, so its ObjectTypeName defaults to CTR rather than kept. A key
            # limited to some domains may only update an association its domain has already
            # (auth.scope): decided under the instance's association lock, with the owner.
            done, replayed = connect_instance(
                tx,
                domain_name=params["DomainName"],
                instance_arn=uri,
                move=False,
                object_type_name=params.get("ObjectTypeName") or DEFAULT_INSTANCE_OBJECT_TYPE,
                object_type_names=params.get("ObjectTypeNames"),
                settings=settings,
                tags=params.get("Tags"),
                refuse_association=(
                    None if key_scope is None else key_scope.association_refusal(uri)
                ),
            )
            out = _out(tx, done.integration)
        # The association committed with the first chunk of the kept records; the rest are sent
        # on here, a transaction per chunk, before the answer (a stop among them leaves them to
        # the server's sweep).
        replayed = send_kept_on(ctx.services, instance_arns=[uri], sent=replayed)
        if replayed.sent_on:
            # The response shape is botocore's: the replay is told in the log only.
            logger.info(
                "PutIntegration of instance %s in domain %s replayed %d kept contact "
                "records: %d accepted, %d rejected (in the domain's dead-letter queue)",
                uri,
                params["DomainName"],
                replayed.sent_on,
                replayed.accepted,
                replayed.rejected_for_good,
            )
        return out
    with ctx.write() as tx:
        done = service.put_integration(
            tx,
            domain_name=params["DomainName"],
            uri=uri,
            object_type_name=params.get("ObjectTypeName"),
            object_type_names=params.get("ObjectTypeNames"),
            flow_definition=params.get("FlowDefinition"),
            settings=settings,
            tags=params.get("Tags"),
        )
        return _out(tx, done.integration)


def get_integration(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.read() as tx:
        record = service.get_integration(tx, domain_name=params["DomainName"], uri=params["Uri"])
        return _out(tx, record)


def delete_integration(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.write() as tx:
        service.delete_integration(tx, domain_name=params["DomainName"], uri=params["Uri"])
    return {"Message": f"Integration {params['Uri']} deleted."}


def list_integrations(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    domain_name = params["DomainName"]
    scope = f"ListIntegrations/{domain_name}"
    after = None
    if params.get("NextToken"):
        after = ctx.services.tokens.decode(scope, params["NextToken"])["after"]
    with ctx.read() as tx:
        records, more = service.list_integrations(
            tx,
            domain_name=domain_name,
            after=after,
            limit=params.get("MaxResults") or DEFAULT_PAGE,
        )
        out: dict[str, Any] = {"Items": [_out(tx, r) for r in records]}
    if more and records:
        # The cursor is the last Uri itself: any the model allows (255 characters of any kind)
        # fits in a NextToken, packed when it is too long as JSON (wire.pagination).
        out["NextToken"] = ctx.services.tokens.encode(scope, {"after": records[-1].uri})
    return out


def list_account_integrations(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    uri = params["Uri"]
    scope = f"ListAccountIntegrations/{uri}"
    after = None
    if params.get("NextToken"):
        after = ctx.services.tokens.decode(scope, params["NextToken"])["after"]
    with ctx.read() as tx:
        # A key limited to some domains is shown their integrations only (auth.scope).
        key_scope = scope_of(ctx.principal)
        records, more = service.list_account_integrations(
            tx,
            uri=uri,
            after=after,
            limit=params.get("MaxResults") or DEFAULT_PAGE,
            only=None if key_scope is None else key_scope.domains,
        )
        out: dict[str, Any] = {"Items": [_out(tx, r) for r in records]}
    if more and records:
        out["NextToken"] = ctx.services.tokens.encode(scope, {"after": records[-1].domain_name})
    return out
