"""Tags of resources, stored by ARN. A resource must exist to be tagged."""

from __future__ import annotations

from sqlalchemy import delete, insert, select, update

from openprofiles.arns import child_arn, domain_arn, parse_resource_arn
from openprofiles.context import Tx
from openprofiles.errors import BadRequest, NotFound
from openprofiles.store.schema import resource_tag

MAX_TAGS = 50


def get_tags(tx: Tx, *, resource_arn: str) -> dict[str, str]:
    return _stored_tags(tx, resource_arn) or {}


def _stored_tags(tx: Tx, resource_arn: str) -> dict[str, str] | None:
    """The resource's tags, or None when no row exists yet."""
    row = tx.conn.execute(
        select(resource_tag.c.tags).where(resource_tag.c.resource_arn == resource_arn)
    ).first()
    return dict(row.tags) if row else None


def put_tags(tx: Tx, *, domain_name: str, resource_arn: str, tags: dict[str, str]) -> None:
    """Add or overwrite tags on a resource (TagResource semantics)."""
    stored = _stored_tags(tx, resource_arn)
    merged = {**(stored or {}), **tags}
    if len(merged) > MAX_TAGS:
        raise BadRequest(
            f"A resource can have at most {MAX_TAGS} tags; this would give it {len(merged)}."
        )
    if stored is not None:
        tx.conn.execute(
            update(resource_tag)
            .where(resource_tag.c.resource_arn == resource_arn)
            .values(tags=merged)
        )
    elif merged:
        tx.conn.execute(
            insert(resource_tag).values(
                resource_arn=resource_arn, domain_name=domain_name, tags=merged
            )
        )


def remove_tags(tx: Tx, *, resource_arn: str, tag_keys: list[str]) -> None:
    current = get_tags(tx, resource_arn=resource_arn)
    remaining = {k: v for k, v in current.items() if k not in set(tag_keys)}
    if remaining == current:
        return
    tx.conn.execute(
        update(resource_tag)
        .where(resource_tag.c.resource_arn == resource_arn)
        .values(tags=remaining)
    )


def delete_domain_tags(tx: Tx, *, domain_name: str) -> None:
    tx.conn.execute(delete(resource_tag).where(resource_tag.c.domain_name == domain_name))


def delete_tags(tx: Tx, *, resource_arn: str) -> None:
    """Forget a deleted resource's tags."""
    tx.conn.execute(delete(resource_tag).where(resource_tag.c.resource_arn == resource_arn))


def require_taggable(tx: Tx, *, resource_arn: str) -> str:
    """The domain that owns `resource_arn`; NotFound unless the resource exists."""
    from openprofiles.domains.service import find_domain

    parsed = parse_resource_arn(resource_arn)
    if find_domain(tx, domain_name=parsed.domain_name) is None:
        raise NotFound(f"The resource {resource_arn} does not exist.")
    if parsed.child is None:
        if resource_arn != domain_arn(tx.settings, parsed.domain_name):
            raise NotFound(f"The resource {resource_arn} does not exist.")
        return parsed.domain_name
    if parsed.child[0] == "object-types":
        from openprofiles.object_types.service import find_object_type

        name = parsed.child[1]
        if (
            resource_arn == child_arn(tx.settings, parsed.domain_name, "object-types", name)
            and find_object_type(tx, domain_name=parsed.domain_name, name=name) is not None
        ):
            return parsed.domain_name
        raise NotFound(f"The resource {resource_arn} does not exist.")
    if parsed.child[0] == "integrations":
        from urllib.parse import unquote

        from openprofiles.integrations.service import find_integration, integration_arn

        # The Uri is URI-encoded in the ARN (it contains ':' and '/'); only that spelling.
        uri = unquote(parsed.child[1])
        if (
            resource_arn == integration_arn(tx, parsed.domain_name, uri)
            and find_integration(tx, domain_name=parsed.domain_name, uri=uri) is not None
        ):
            return parsed.domain_name
        raise NotFound(f"The resource {resource_arn} does not exist.")
    raise NotFound(f"The resource {resource_arn} does not exist or cannot be tagged yet.")
