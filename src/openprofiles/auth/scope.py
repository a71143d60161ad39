"""API credentials scoped to domains: what a key limited to some domains may reach.

A credential made with `openprofiles credentials create --domain NAME` (or limited later with
`credentials scope`) acts only on those domains; one without a scope acts on every domain, as
every key did before scopes existed. The scope rides on the request's `Principal` (`scope`: a
`DomainScope`, None for an unscoped key), looked up and cached with the key's secret
(auth.credentials), so a change reaches every server process as promptly as a revocation.

Where it is enforced:
* an operation whose URI names a domain (`{DomainName}`, every one under /domains/{DomainName}:
  CreateDomain included, so a scoped key creates only the domains of its scope), or whose URI
  names a resource by ARN (`{resourceArn}`: the tag operations, whose ARN names its domain), is
  refused with AccessDeniedException (403) by `refuse_out_of_scope`, which the API's dispatcher
  runs once the signature is verified and before the body is parsed or the handler runs. Not
  sooner: before the body proves the signature, a refusal would tell anyone who knows a key id
  which domains it may reach;
* the operations that name no domain are decided one by one in `DOMAINLESS_OPERATIONS` (a test
  keeps it equal to the model's list, so a new operation is decided, not let through);
* the contact feeds (contacts.service `ingest_contact_items`, `apply_contact_event`) route each
  record by its instance: a record that would go to a domain outside the scope, or be kept for
  an instance associated with no domain (it would go to whichever domain is associated next),
  is refused, per record, with `feed_refusal`'s reason, neither applied, dead-lettered nor kept.
  The reason names neither the domain nor whether there is one: the key named an instance only.
  A record it sends that waits for the contact it continues is confined to the domain it waits
  in (contacts.kept `confined_to`): it never follows its instance to another domain;
* what reaches beyond a domain is for a key of every domain only: a flow (PutIntegration with a
  FlowDefinition: `flow_refusal`) reads its source with the server's own access, and
  associating an instance (`association_refusal`) sends it the instance's kept and future
  records. A scoped key may still update the integration of an instance already associated
  with a domain of its scope, delete an integration (a flow's, an instance's) of its domains,
  and replace a flow's integration with one that is no flow.

A refusal is written to the audit log with the key id and the denied domain (openprofiles.audit
writes the line of a request that may change state; `refuse_out_of_scope` writes one for the
reads, which it does not log unless OPENPROFILES_AUDIT_API_READS says so, and for the feeds'
refused records).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from openprofiles import audit
from openprofiles.arns import parse_resource_arn
from openprofiles.errors import AccessDenied, BadRequest

# The model's pattern of a domain name (botocore: `name`).
DOMAIN_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")

# The operations whose URI names no domain, and what a scoped key may do with each.
DOMAINLESS_OPERATIONS: Mapping[str, str] = {
    # Filtered: only the domains of the scope are listed (domains.handlers).
    "ListDomains": "lists only the domains of the key's scope",
    # Filtered: an instance's integrations in the domains of the scope only (integrations).
    "ListAccountIntegrations": "lists only the integrations of the domains of the key's scope",
    # The built-in catalogue (object type templates, recommender recipes): no domain's data.
    "GetProfileObjectTypeTemplate": "allowed: the built-in templates hold no domain's data",
    "ListProfileObjectTypeTemplates": "allowed: the built-in templates hold no domain's data",
    "ListRecommenderRecipes": "allowed: the built-in recipes hold no domain's data",
    # The resource's ARN names its domain (arn:aws:profile:REGION:ACCOUNT:domains/NAME[/...]):
    # refused as a path's DomainName is (`refuse_out_of_scope`). These three do not declare
    # AccessDeniedException in the model; IAM answers it for any operation all the same, and
    # botocore raises it as a ClientError of that code.
    "TagResource": "refused unless the ARN's domain is in the key's scope",
    "UntagResource": "refused unless the ARN's domain is in the key's scope",
    "ListTagsForResource": "refused unless the ARN's domain is in the key's scope",
}

# The operation a feed's refusal is written under in the audit log (no API operation).
FEED_OPERATIONS = {"records": "PostContactRecords", "event": "PostContactEvent"}


@dataclass(frozen=True, slots=True)
class DomainScope:
    """The domains a credential may act on, with what a refusal names: the key, and the region
    and account of the domains' ARNs (Settings)."""

    access_key_id: str
    domains: frozenset[str]
    region: str
    account_id: str

    def allows(self, domain_name: str) -> bool:
        return domain_name in self.domains

    def domain_arn(self, domain_name: str) -> str:
        return f"arn:aws:profile:{self.region}:{self.account_id}:domains/{domain_name}"

    def refusal(self, operation: str, domain_name: str) -> AccessDenied:
        """AccessDeniedException in IAM's words, naming the key, the action and the domain."""
        return AccessDenied(
            f"User: {self.access_key_id} is not authorized to perform: profile:{operation} on "
            f"resource: {self.domain_arn(domain_name)} because the access key is limited to "
            "other domains"
        )

    def feed_refusal(self, domain_name: str | None, feed: str) -> str:
        """The reason a contact record (or event) refused for its domain is answered with,
        written to the audit log with the domain now (`log_feed_refusal`). `domain_name` None:
        its instance is associated with no domain, and a kept record would go to whichever is
        associated next."""
        self.log_feed_refusal(domain_name, feed)
        return self.feed_refusal_reason()

    def feed_refusal_reason(self) -> str:
        """`feed_refusal`'s reason alone. It names no domain, nor tells an instance associated
        with another domain from one associated with none: the key named an instance only,
        and whether that is associated, and with which domain, is not its to learn."""
        return (
            f"User: {self.access_key_id} is not authorized to send records of this instance: "
            "it is not associated with a domain this access key may feed (the key is limited "
            "to some domains). The record is neither applied nor kept."
        )

    def log_feed_refusal(self, domain_name: str | None, feed: str) -> None:
        """The audit log's line of a feed's refusal for `domain_name`."""
        _log_refusal(FEED_OPERATIONS[feed], domain_name, self.access_key_id)

    def flow_refusal(self) -> AccessDenied:
        """PutIntegration with a FlowDefinition: a flow reads its source (a folder of the
        server, a bucket) with the server's own access, which reaches every domain's sources."""
        return AccessDenied(
            f"User: {self.access_key_id} is not authorized to perform: profile:PutIntegration "
            "with a FlowDefinition because the access key is limited to some domains: a flow "
            "reads its source with the server's own access (its folders and its AWS "
            "credentials), so only an access key for every domain may define or change one."
        )

    def association_refusal(self, instance_arn: str) -> AccessDenied:
        """PutIntegration of an instance associated with no domain: associating it sends the
        domain every record kept for it, and all that come next, whoever sent them."""
        return AccessDenied(
            f"User: {self.access_key_id} is not authorized to associate the instance "
            f"{instance_arn} with a domain because the access key is limited to some domains: "
            "an association sends the domain every record kept for the instance and every one "
            "that comes next, so only an access key for every domain may associate or move an "
            "instance. An instance already associated with a domain of the key's scope can be "
            "updated with it."
        )


def scope_of(principal: Any) -> DomainScope | None:
    """The scope of a request's principal (context.Principal); None: every domain."""
    scope = getattr(principal, "scope", None)
    return scope if isinstance(scope, DomainScope) else None


def refuse_out_of_scope(
    principal: Any, operation: str, uri_params: Mapping[str, str], *, audited: bool
) -> None:
    """AccessDenied when the operation's URI names a domain outside the principal's scope (the
    module docstring): run before the body is parsed. `audited`: the API's audit log writes
    the request's line anyway (wire.dispatch.ApiDispatcher.audited)."""
    scope = scope_of(principal)
    if scope is None:
        return
    # None: it names no domain (a resourceArn that is no profile ARN: the handler refuses it
    # as for any key).
    domain_name = domain_named(uri_params)
    if domain_name is None or scope.allows(domain_name):
        return
    if not audited:
        # The API writes no line for a read (unless told to); a refused one is worth one (who
        # tried where).
        _log_refusal(operation, domain_name, scope.access_key_id)
    raise scope.refusal(operation, domain_name)


def domain_named(uri_params: Mapping[str, str]) -> str | None:
    """The domain an operation's URI names: its DomainName, or the domain of its resourceArn
    (the tag operations); None when it names none. The audit log's line of a request names it
    too (wire.dispatch), so a refused tag operation says which domain it was refused."""
    domain_name = uri_params.get("DomainName")
    if domain_name is None and "resourceArn" in uri_params:
        try:
            return parse_resource_arn(uri_params["resourceArn"]).domain_name
        except BadRequest:
            return None
    return domain_name


def refuse_event_out_of_scope(scope: DomainScope | None, domain_name: str | None) -> None:
    """AccessDenied for a contact event whose instance is associated with a domain outside
    `scope` (or with none: refused alike, `feed_refusal`): an event is one record, refused as
    a whole request."""
    if scope is not None and (domain_name is None or not scope.allows(domain_name)):
        raise AccessDenied(scope.feed_refusal(domain_name, "event"))


def _log_refusal(operation: str, domain_name: str | None, access_key_id: str) -> None:
    audit.api_request(
        operation,
        domain_name=domain_name,
        access_key_id=access_key_id,
        status=AccessDenied.status,
        error=AccessDenied.code,
        profile_id=None,
    )


def checked_scope(names: Iterable[str] | None) -> frozenset[str] | None:
    """The scope given as names (the CLI's --domain), checked: None (every domain) for None;
    BadRequest for an empty one or a name that is no domain name's form."""
    if names is None:
        return None
    scope = frozenset(names)
    if not scope:
        raise BadRequest("A scope names at least one domain; leave it out for every domain.")
    for name in sorted(scope):
        if not DOMAIN_NAME.fullmatch(name):
            raise BadRequest(
                f"{name!r} is not a domain name (1 to 64 letters, digits, '_' or '-')."
            )
    return scope


def stored_scope(scope: frozenset[str] | None) -> list[str] | None:
    """The column's value of a scope (store.schema credential.domain_scope)."""
    return None if scope is None else sorted(scope)


def loaded_scope(value: Any) -> frozenset[str] | None:
    """A scope from the column's value (a JSON array, or its text on a driver that returns it)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = json.loads(value)
    return frozenset(value)


def shown_scope(scope: frozenset[str] | None) -> str:
    """A scope as the CLI lists it."""
    return "*" if scope is None else ",".join(sorted(scope))
