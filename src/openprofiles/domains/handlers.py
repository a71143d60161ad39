"""AWS operations on domains: CreateDomain, GetDomain, UpdateDomain, DeleteDomain, ListDomains."""

from __future__ import annotations

from typing import Any

from openprofiles.arns import domain_arn
from openprofiles.auth.policy import domain_shown_to
from openprofiles.auth.scope import scope_of
from openprofiles.context import RequestContext, Tx
from openprofiles.crypto.arns import is_aws_kms_arn
from openprofiles.crypto.errors import CurrentKeyUnusable, KeyProblem
from openprofiles.domains import service
from openprofiles.domains.models import CONFIG_MEMBERS, DomainRecord
from openprofiles.domains.setup import key_refusal, new_domain_key
from openprofiles.errors import AccessDenied, BadRequest, InternalServer, ServiceError
from openprofiles.identity import ml_jobs, rule_activation
from openprofiles.identity.ml_jobs import validate_consolidation
from openprofiles.identity.rules import validate_rule_based_matching
from openprofiles.tags.service import get_tags, put_tags

DEFAULT_PAGE = 100


def _to_wire(tx: Tx, record: DomainRecord, *, with_stats: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "DomainName": record.name,
        **record.config,
        "CreatedAt": record.created_at,
        "LastUpdatedAt": record.updated_at,
        "Tags": get_tags(tx, resource_arn=domain_arn(tx.settings, record.name)) or None,
    }
    if with_stats:
        stats = service.domain_stats(tx, domain_name=record.name)
        out["Stats"] = {
            "ProfileCount": stats.profile_count,
            "MeteringProfileCount": stats.metering_profile_count,
            "ObjectCount": stats.object_count,
            "TotalSize": stats.total_size,
        }
    return out


def _new_key(ctx: RequestContext, domain_name: str, key_id: str | None) -> tuple[str, bytes]:
    """A data key for the domain under `key_id` (the server default when None), proven usable."""
    return new_domain_key(ctx.services, domain_name, key_id)


def _check_dead_letter_queue(ctx: RequestContext, domain_name: str, queue_url: str) -> None:
    """Like AWS, send a test message to a new DeadLetterQueueUrl (spec §6.1), before any write
    transaction: it is a network call."""
    from openprofiles.dlq.sinks import SinkError, check_queue
    from openprofiles.domains.setup import parse_queue_url

    # A URL that names no queue says so, rather than what calling it failed with.
    parse_queue_url(ctx.services.settings, queue_url)
    try:
        check_queue(ctx.services.settings, queue_url, domain_name)
    except SinkError as exc:
        raise BadRequest(
            f"The DeadLetterQueueUrl {queue_url} cannot be written to: {exc.message}"
        ) from exc


def _apply_rules(tx: Tx, params: dict[str, Any], record: DomainRecord) -> tuple[DomainRecord, bool]:
    """New or changed RuleBasedMatching: a full matching pass over the domain's profiles, in
    this request for a small domain, after it for a large one (the flag says to `start` it;
    openprofiles.identity.rule_activation)."""
    if params.get("RuleBasedMatching") is None:
        return record, False
    later = rule_activation.apply_rules(tx, domain_name=record.name)
    return service.get_domain(tx, domain_name=record.name), later


def create_domain(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = params["DomainName"]
    validate_rule_based_matching(params.get("RuleBasedMatching"))
    validate_consolidation(
        ((params.get("Matching") or {}).get("AutoMerging") or {}).get("Consolidation")
    )
    # Before the side effects (a test message, a data key from KMS): a name taken is told at
    # once. The write transaction checks again, and decides.
    with ctx.read() as tx:
        service.require_new_name(tx, domain_name=name)
    if params.get("DeadLetterQueueUrl"):
        _check_dead_letter_queue(ctx, name, params["DeadLetterQueueUrl"])
    key = _new_key(ctx, name, params.get("DefaultEncryptionKey"))
    with ctx.write() as tx:
        record = service.create_domain(
            tx,
            domain_name=name,
            config={k: params.get(k) for k in CONFIG_MEMBERS},
            key_id=key[0],
            wrapped_key=key[1],
        )
        response, pass_later = _settle(tx, params, record)
    if pass_later:
        rule_activation.start(ctx.services, domain_name=name)
    return response


def _settle(tx: Tx, params: dict[str, Any], record: DomainRecord) -> tuple[dict[str, Any], bool]:
    """What CreateDomain and UpdateDomain do after writing the domain's settings: its rules
    (and whether a full rule pass must start once the transaction commits), pending ML jobs
    dropped when matching was turned off, its tags; and the answer."""
    name = record.name
    record, pass_later = _apply_rules(tx, params, record)
    if params.get("Matching") is not None and not record.config["Matching"].get("Enabled"):
        ml_jobs.delete_pending_jobs(tx, domain_name=name)
    if params.get("Tags"):
        put_tags(
            tx, domain_name=name, resource_arn=domain_arn(tx.settings, name), tags=params["Tags"]
        )
    return _to_wire(tx, record), pass_later


def get_domain(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.read() as tx:
        record = service.get_domain(tx, domain_name=params["DomainName"])
        return domain_shown_to(ctx.principal.role, _to_wire(tx, record, with_stats=True))


def update_domain(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = params["DomainName"]
    validate_rule_based_matching(params.get("RuleBasedMatching"))
    validate_consolidation(
        ((params.get("Matching") or {}).get("AutoMerging") or {}).get("Consolidation")
    )
    with ctx.read() as tx:
        current = service.get_domain(tx, domain_name=name)
    requested_queue = params.get("DeadLetterQueueUrl")
    if requested_queue and requested_queue != current.config.get("DeadLetterQueueUrl"):
        _check_dead_letter_queue(ctx, name, requested_queue)
    new_key = None
    requested_key = params.get("DefaultEncryptionKey")
    if requested_key is not None and requested_key != current.config.get("DefaultEncryptionKey"):
        # The domain's data key stays the same; only the key that wraps it changes, so no
        # record has to be sealed again.
        with key_refusal("DefaultEncryptionKey"):
            try:
                new_key = ctx.services.keys.rewrap_domain_key(
                    name, current.key_id, current.wrapped_key, requested_key or None
                )
            except CurrentKeyUnusable as exc:
                raise _current_key_refusal(name, requested_key or "the default key", exc) from exc
    with ctx.write() as tx:
        record = service.update_domain(
            tx,
            domain_name=name,
            changes={k: params.get(k) for k in CONFIG_MEMBERS},
            new_key=(new_key.key_id, new_key.wrapped) if new_key else None,
            # What the key and the queue were decided on: run again if the name now holds
            # another domain, or another wrapping of its data key (service.update_domain).
            read_before=current,
        )
        response, pass_later = _settle(tx, params, record)
    if pass_later:
        rule_activation.start(ctx.services, domain_name=name)
    return response


def _current_key_refusal(name: str, target: str, exc: CurrentKeyUnusable) -> ServiceError:
    """A change of the domain's key refused because its current key cannot unwrap the data key
    to re-wrap it: the current key is named, not the requested one, which was never tried. As
    when the domain's data is read (domains.service.domain_cipher, spec §6.2: a key failing at
    data time): AccessDeniedException, or InternalServerException while KMS does not answer."""
    key = exc.key_id
    start = f"Domain {name}: its data key cannot be re-wrapped under {target}:"
    if exc.problem is KeyProblem.DISABLED:
        disabled = f"{start} its current key {key} is disabled, so it cannot unwrap the data key."
        if is_aws_kms_arn(key):
            enable, disable = "aws kms enable-key", "aws kms disable-key"
        else:
            enable, disable = f"openprofiles keys enable {key}", f"openprofiles keys disable {key}"
        message = (
            f"{disabled} Enable it for the change (`{enable}`), make the request again, then "
            f"disable it again (`{disable}`) if it is to stay disabled."
        )
        caller = (
            f"{disabled} Enable it for the change, make the request again, then disable it "
            "again if it is to stay disabled."
        )
    else:
        message = f"{start} its current key {key} cannot unwrap the data key: {exc.message}"
        caller = f"{start} its current key {key} cannot unwrap the data key: {exc.caller_message}"
    kind = InternalServer if exc.transient else AccessDenied
    return kind(message, caller_message=caller)


def delete_domain(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = params["DomainName"]
    with ctx.write() as tx:
        service.delete_domain(tx, domain_name=name)
    ctx.services.keys.forget(name)
    return {"Message": f"Domain {name} and all of its data were deleted."}


def list_domains(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    limit = params.get("MaxResults") or DEFAULT_PAGE
    after = None
    if params.get("NextToken"):
        after = ctx.services.tokens.decode("ListDomains", params["NextToken"])["after"]
    with ctx.read() as tx:
        # A key limited to some domains lists those only (auth.scope).
        scope = scope_of(ctx.principal)
        records, more = service.list_domains(
            tx, after=after, limit=limit, only=None if scope is None else scope.domains
        )
        items = [
            {
                "DomainName": r.name,
                "CreatedAt": r.created_at,
                "LastUpdatedAt": r.updated_at,
                "Tags": get_tags(tx, resource_arn=domain_arn(tx.settings, r.name)) or None,
            }
            for r in records
        ]
    out: dict[str, Any] = {"Items": items}
    if more and records:
        out["NextToken"] = ctx.services.tokens.encode("ListDomains", {"after": records[-1].name})
    return out
