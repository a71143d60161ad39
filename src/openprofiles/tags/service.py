"""Tags of resources, stored by ARN. A resource must exist to be tagged.

TagResource and UntagResource change some of a resource's tags: the row is read, merged and
written back, under a lock named by the resource's ARN (`_lock_tags`; PostgreSQL, where READ
COMMITTED let two calls read the same row and the second write drop the first's tags, both
answered 200; SQLite's one writer serialises them already). It closes no cycle of waits
(store.advisory's order): TagResource and UntagResource hold only the resource's own locks
(below) while they wait for it, nor wait for anything but the tag row while they hold it; a
writer that tags what it puts (PutIntegration, PutProfileObjectType, UpdateDomain) takes it once
it holds the locks of what it puts, which no other holder of it waits for.

TagResource and UntagResource hold the resource against its deletion before they look it up
(`require_taggable`, PostgreSQL): the domain's lock shared (DeleteDomain takes it exclusively,
integrations.service.lock_domain), and an object type's lock shared (DeleteProfileObjectType
takes it exclusively, object_types.lock_object_type), in store.advisory's order (steps 0
and 1), before the tags' own lock. resource_tag has no foreign key: without them, a TagResource
that found the resource before a deletion committed wrote its tags after the deletion had
removed the resource's, and a resource created again under that name showed them. (An
integration's deletion takes no lock of its own to share: DeleteIntegration is not covered.)"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote

from sqlalchemy import delete, insert, select, update

from openprofiles.arns import child_arn, domain_arn, parse_resource_arn, require_local
from openprofiles.context import Tx
from openprofiles.errors import BadRequest, NotFound
from openprofiles.store.advisory import take_locks
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
    _lock_tags(tx, resource_arn)
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
    _lock_tags(tx, resource_arn)
    current = get_tags(tx, resource_arn=resource_arn)
    remaining = {k: v for k, v in current.items() if k not in set(tag_keys)}
    if remaining == current:
        return
    tx.conn.execute(
        update(resource_tag)
        .where(resource_tag.c.resource_arn == resource_arn)
        .values(tags=remaining)
    )


def _lock_tags(tx: Tx, resource_arn: str) -> None:
    """Hold the resource's tags until the transaction ends (the module docstring): a lock
    named by the ARN rather than the row, as a resource's first tags have no row yet."""
    take_locks(tx, [("resource-tags", resource_arn)])


def delete_domain_tags(tx: Tx, *, domain_name: str) -> None:
    tx.conn.execute(delete(resource_tag).where(resource_tag.c.domain_name == domain_name))


def delete_tags(tx: Tx, *, resource_arn: str) -> None:
    """Forget a deleted resource's tags."""
    tx.conn.execute(delete(resource_tag).where(resource_tag.c.resource_arn == resource_arn))


@dataclass(frozen=True)
class Taggable:
    """A resource TagResource, UntagResource or ListTagsForResource may act on."""

    domain_name: str
    # The ARN its tags are stored by: for an integration, its Uri percent-encoded whole
    # (integrations.service.integration_arn), whichever spelling the caller gave.
    arn: str


def require_taggable(tx: Tx, *, resource_arn: str) -> Taggable:
    """The resource `resource_arn` names; NotFound unless it exists on this server."""
    from openprofiles.domains.service import find_domain

    parsed = parse_resource_arn(resource_arn)
    require_local(tx.settings, resource_arn)
    if tx.writing:
        _hold_against_deletion(tx, parsed.domain_name, parsed.child)
    if find_domain(tx, domain_name=parsed.domain_name) is None:
        raise NotFound(f"The resource {resource_arn} does not exist.")
    if parsed.child is None:
        if resource_arn != domain_arn(tx.settings, parsed.domain_name):
            raise NotFound(f"The resource {resource_arn} does not exist.")
        return Taggable(parsed.domain_name, resource_arn)
    if parsed.child[0] == "object-types":
        from openprofiles.object_types.service import find_object_type

        name = parsed.child[1]
        if (
            resource_arn == child_arn(tx.settings, parsed.domain_name, "object-types", name)
            and find_object_type(tx, domain_name=parsed.domain_name, name=name) is not None
        ):
            return Taggable(parsed.domain_name, resource_arn)
        raise NotFound(f"The resource {resource_arn} does not exist.")
    if parsed.child[0] == "integrations":
        from openprofiles.integrations.service import integration_arn

        uri = _integration_uri(tx, parsed.domain_name, parsed.child[1])
        if uri is not None:
            return Taggable(parsed.domain_name, integration_arn(tx, parsed.domain_name, uri))
        raise NotFound(f"The resource {resource_arn} does not exist.")
    raise NotFound(f"The resource {resource_arn} does not exist or cannot be tagged yet.")


def _hold_against_deletion(tx: Tx, domain_name: str, child: tuple[str, str] | None) -> None:
    """The locks a deletion of the resource takes exclusively, shared, before the resource is
    looked up (the module docstring): a deletion under way is waited for, and the resource
    then found gone; one that starts later waits for these tags, and deletes them."""
    from openprofiles.integrations.service import lock_domain
    from openprofiles.object_types.service import lock_object_type

    lock_domain(tx, domain_name=domain_name, shared=True)
    if child is not None and child[0] == "object-types":
        lock_object_type(tx, domain_name=domain_name, name=child[1], shared=True)


def _integration_uri(tx: Tx, domain_name: str, spelled: str) -> str | None:
    """The Uri of the domain's integration that `spelled` (what follows `.../integrations/` in
    an ARN) names, or None.

    Two spellings name an integration: its Uri percent-encoded whole (`quote(uri, safe="")`,
    the one integration_arn builds and the README documents) and its Uri as it is, the one
    AWS's CloudFormation handler builds (`arn:%s:profile:%s:%s:domains/%s/integrations/%s`
    with the Uri) and tags with. When `spelled` is exactly the whole encoding of what it
    decodes to, that reading comes first: an ARN that named an integration before the raw
    spelling was accepted still names the same one. The readings can differ only for a Uri
    that has no ':' and no '/' (an encoding has neither; an ARN has both): for `a%3Ab` when
    the domain has integrations `a:b` and `a%3Ab`, the first is named, and the second by its own
    encoding (`a%253Ab`). Otherwise the raw reading comes first, then the decoded one (a partial
    or lower-case encoding, e.g. with its '/' left as it is).
    """
    from openprofiles.integrations.service import find_integration

    decoded = unquote(spelled)
    readings = [decoded, spelled] if quote(decoded, safe="") == spelled else [spelled, decoded]
    for uri in dict.fromkeys(readings):
        if find_integration(tx, domain_name=domain_name, uri=uri) is not None:
            return uri
    return None
