"""AWS operations on profile objects: PutProfileObject, BatchPutProfileObject, ListProfileObjects,
DeleteProfileObject.

PutProfileObject answers synchronously only for request errors (the Object is not a JSON object
in strict JSON, is too large, names a standard type, or the object type does not exist). AWS
processes objects asynchronously (spec §0): a record the pipeline rejects (no profile matched, a
ambiguous key, a value the mapping cannot convert) is not a request error there, it shows up
in the domain's dead-letter queue. OpenProfiles processes synchronously but keeps that contract:
the rejected record is dead-lettered in its own transaction (nothing of it is written) and the
call still answers 200 with a ProfileObjectUniqueKey (the dead-letter message id). Only a record
with no value for its UNIQUE key, or for every PROFILE key, is a request error, as in AWS
(BadRequestException), and is dead-lettered too (objects.answers).
On the event loop (SQLite) the PutProfileObject calls of one turn are applied as one pipeline
batch (objects.coalesce), each still with its own answer.

BatchPutProfileObject applies its items in order, in one transaction, through the same
pipeline (`ingest_batch`): each item is applied whole or not at all, and a later item sees what
the earlier ones did. Its answer has a `Failed` list, so unlike PutProfileObject it says which
items did not apply: an Object that is not a JSON object (400, not dead-lettered: the caller
has it and must fix it), and a record the pipeline rejected (400, with the reason and the id of
its dead letter, where it waits to be retried). What concerns the whole request (an unknown
domain or object type, a standard type, duplicate item Ids, the model's limits) is an error
of the request, with nothing written.

An agent may not write objects of a type an integration feeds (auth.policy): contact records
(`CTR`, any type built on a contact-record template, an instance integration's type) and the
type of any other integration of the domain, such as a flow's. Both operations name one type
for all their records, so a refused BatchPutProfileObject is refused whole, before any of it
is applied.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from openprofiles.auth.policy import authorize_object_write, writes_fed_object_types
from openprofiles.blocking import Deferred, may_defer
from openprofiles.contacts.history import (
    contact_after,
    contact_object_types,
    cursor_from_state,
    cursor_state,
)
from openprofiles.contacts.links import CONTACT_TEMPLATES
from openprofiles.context import RequestContext, Tx
from openprofiles.errors import BadRequest, NotFound
from openprofiles.ingest import MAX_OBJECT_CHARS
from openprofiles.ingest.pipeline import IngestRejected, ingest_batch, ingest_object
from openprofiles.ingest.rejections import dead_letter_rejected
from openprofiles.normalize import ContentType, normalize
from openprofiles.object_types.service import find_object_type, get_object_type, key_content_type
from openprofiles.object_types.standard_objects import STANDARD_OBJECT_TYPES
from openprofiles.objects import service
from openprofiles.objects.answers import rejected_answer
from openprofiles.objects.coalesce import queue_put
from openprofiles.profiles.keys import PREDEFINED_CONTENT_TYPES
from openprofiles.store.schema import integration
from openprofiles.wire.pagination import token_scope
from openprofiles.wire.parse import load_json

# The model's limit for BatchPutProfileObjectErrorItem.Message.
MAX_ERROR_MESSAGE_CHARS = 1000
DEFAULT_PAGE = 20
# Standard objects ingestion writes and ListProfileObjects can list (spec §1.3, §1.8).
LISTABLE_STANDARD_TYPES = frozenset({"_asset", "_case", "_order"})


def parse_object(raw: str) -> dict[str, Any]:
    """The submitted Object as a JSON object, or BadRequest saying what is wrong with it."""
    if len(raw) > MAX_OBJECT_CHARS:
        raise BadRequest(
            f"The Object is {len(raw)} characters long; the limit is {MAX_OBJECT_CHARS}."
        )
    # Strictly, as the request body is: NaN, a lone surrogate in a key field or a record nested
    # thousands deep would otherwise fail (500) or be stored as text that is not JSON.
    parsed = load_json(raw, "The Object")
    if not isinstance(parsed, dict):
        raise BadRequest("The Object must be a JSON object ({...}), not a JSON array or value.")
    return parsed


def _refuse_standard_type(type_name: str, operation: str) -> None:
    if type_name in STANDARD_OBJECT_TYPES:
        raise BadRequest(
            f"{type_name} is a standard object type; objects are written to it through the "
            f"Targets of an object type's mapping, not with {operation}."
        )


def _authorize_write(ctx: RequestContext, domain_name: str, type_name: str, operation: str) -> None:
    """AccessDenied when the caller's role may not write objects of the type (auth.policy).
    Looked up only for such a role: an admin's write costs no extra read."""
    if writes_fed_object_types(ctx.principal.role):
        return
    with ctx.read() as tx:
        fed = fed_by_integration(tx, domain_name=domain_name, type_name=type_name)
    authorize_object_write(ctx.principal.role, operation, type_name, fed=fed)


def fed_by_integration(tx: Tx, *, domain_name: str, type_name: str) -> bool:
    """Whether an integration feeds `type_name` in the domain: it holds contact records (CTR,
    the default type of an instance's records, or a type built on a contact-record template),
    or an integration of the domain (an instance, a flow, any other Uri) ingests as it, even
    one that DeleteProfileObjectType disabled (it is enabled again by defining the type)."""
    if type_name in CONTACT_TEMPLATES:
        return True
    found = find_object_type(tx, domain_name=domain_name, name=type_name)
    if found is not None and found.template_id in CONTACT_TEMPLATES:
        return True
    rows = tx.conn.execute(
        select(integration.c.object_type_name, integration.c.object_type_names).where(
            integration.c.domain_name == domain_name
        )
    )
    return any(
        row.object_type_name == type_name or type_name in (row.object_type_names or {}).values()
        for row in rows
    )


def put_profile_object(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any] | Deferred:
    domain_name = params["DomainName"]
    type_name = params["ObjectTypeName"]
    raw = params["Object"]
    _refuse_standard_type(type_name, "PutProfileObject")
    _authorize_write(ctx, domain_name, type_name, "PutProfileObject")
    source = parse_object(raw)
    if may_defer():
        # On the event loop: applied with the other PutProfileObject calls of this turn, in one
        # pipeline batch (objects.coalesce).
        return queue_put(ctx, domain_name, type_name, source, raw)
    try:
        with ctx.write() as tx:
            result = ingest_object(
                tx, domain_name=domain_name, object_type_name=type_name, source=source, raw=raw
            )
        return {"ProfileObjectUniqueKey": result.profile_object_unique_key}
    except IngestRejected as exc:
        rejection = exc
    (letter_id,) = dead_letter_rejected(ctx, domain_name, type_name, [(raw, rejection)])
    return rejected_answer(rejection, letter_id)


def batch_put_profile_object(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    domain_name = params["DomainName"]
    type_name = params["ObjectTypeName"]
    items = params["Items"]
    _refuse_standard_type(type_name, "BatchPutProfileObject")
    # Every item is of the one type: refused, the request is refused whole, nothing applied.
    _authorize_write(ctx, domain_name, type_name, "BatchPutProfileObject")
    ids = [item["Id"] for item in items]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        # An answer names items by Id: two items with one Id could not be told apart in it.
        raise BadRequest(f"Each item needs its own Id; repeated: {', '.join(repeated)}.")
    failed: dict[str, str] = {}
    parsed: list[tuple[str, dict[str, Any], str]] = []
    for item in items:
        try:
            parsed.append((item["Id"], parse_object(item["Object"]), item["Object"]))
        except BadRequest as exc:
            failed[item["Id"]] = exc.caller_message
    with ctx.write() as tx:
        object_type = get_object_type(tx, domain_name=domain_name, name=type_name)
        outcomes = (
            ingest_batch(
                tx,
                domain_name=domain_name,
                object_type_name=type_name,
                records=[(source, raw) for _, source, raw in parsed],
                object_type=object_type,
            )
            if parsed
            else []
        )
    keys: dict[str, str] = {}
    rejected: list[tuple[str, str, IngestRejected]] = []
    for (item_id, _, raw), outcome in zip(parsed, outcomes, strict=True):
        if isinstance(outcome, IngestRejected):
            rejected.append((item_id, raw, outcome))
        else:
            keys[item_id] = outcome.profile_object_unique_key
    if rejected:
        letter_ids = dead_letter_rejected(
            ctx, domain_name, type_name, [(r, o) for _, r, o in rejected]
        )
        for (item_id, _, outcome), letter_id in zip(rejected, letter_ids, strict=True):
            failed[item_id] = (
                f"{outcome.reason} The record is kept in the dead-letter queue as {letter_id}."
            )
    return {
        "Successful": [{"Id": i, "ProfileObjectUniqueKey": keys[i]} for i in ids if i in keys],
        "Failed": [
            {"Id": i, "Code": 400, "Message": _capped(failed[i])} for i in ids if i in failed
        ],
    }


def _capped(message: str) -> str:
    if len(message) <= MAX_ERROR_MESSAGE_CHARS:
        return message
    return message[: MAX_ERROR_MESSAGE_CHARS - 1] + "…"


def list_profile_objects(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    domain_name = params["DomainName"]
    type_name = params["ObjectTypeName"]
    profile_id = params["ProfileId"]
    limit = params.get("MaxResults") or DEFAULT_PAGE
    object_filter = params.get("ObjectFilter")
    if object_filter is not None and not object_filter["Values"]:
        # As SearchProfiles refuses it (the model sets no minimum for either list): a filter
        # with no value would match no object, which a caller who meant to filter never wants.
        raise BadRequest(
            f"ObjectFilter.Values of key {object_filter['KeyName']} must list at least one "
            "value; leave the ObjectFilter out to list every object."
        )
    # The token resumes only the listing it came from: a changed filter is another listing. The
    # filter's values may be personal data; token_scope only digests them, into the token's
    # associated data, so the token itself never carries them.
    scope = token_scope(
        "ListProfileObjects",
        domain_name,
        type_name,
        profile_id,
        [object_filter["KeyName"], object_filter["Values"]] if object_filter else None,
    )
    state = (
        ctx.services.tokens.decode(scope, params["NextToken"]) if params.get("NextToken") else None
    )
    with ctx.read() as tx:
        cipher = tx.cipher(domain_name)
        if type_name not in LISTABLE_STANDARD_TYPES and (
            find_object_type(tx, domain_name=domain_name, name=type_name) is None
        ):
            raise NotFound(f"The object type {type_name} does not exist in domain {domain_name}.")
        key_filter = None
        if object_filter:
            key_name = object_filter["KeyName"]
            content_type = (
                PREDEFINED_CONTENT_TYPES.get(key_name)
                or key_content_type(tx, domain_name=domain_name, key_name=key_name)
                or ContentType.STRING
            )
            region = tx.settings.default_phone_region
            key_filter = (
                key_name,
                [
                    cipher.digest(key_name, normalize(content_type, v, phone_region=region))
                    for v in object_filter["Values"]
                ],
            )
        # Contact records are listed newest contact first; other objects newest first stored
        # first, a place no write of the object again changes, so a caller paging through sees
        # each object once even if it is re-put meanwhile (objects.service._FIRST_STORED).
        by_contact = type_name in contact_object_types(tx, domain_name=domain_name)
        which = {
            "domain_name": domain_name,
            "object_type_name": type_name,
            "profile_id": profile_id,
            "key_filter": key_filter,
            "limit": limit,
        }
        if by_contact:
            records, more = service.list_profile_contacts(tx, **which, after=_contact_after(state))
        else:
            records, more = service.list_profile_objects_as_stored(
                tx, **which, after=_stored_after(state)
            )
    out: dict[str, Any] = {
        "Items": [
            {
                "ObjectTypeName": r.object_type_name,
                "ProfileObjectUniqueKey": r.unique_key,
                "Object": r.object_json,
            }
            for r in records
        ]
    }
    if more and records:
        last = records[-1]
        next_state = (
            {"c": cursor_state(contact_after(last))}
            if by_contact
            else {"s": last.created_at.isoformat(), "w": last.write_order, "d": last.unique_key}
        )
        out["NextToken"] = ctx.services.tokens.encode(scope, next_state)
    return out


_INVALID_TOKEN = "The NextToken is not valid for this listing."
# A token of the order objects were listed in before (newest write first: {"u": updated_at,
# "w", "d"}), from a server before the change: that order no longer exists to resume.
_OLD_ORDER_TOKEN = (
    "The NextToken comes from an earlier order of this listing (newest write first); objects "
    "are now listed newest first stored first. List again without a NextToken."
)


def _stored_after(state: dict[str, Any] | None) -> service.StoredAfter | None:
    if state is None:
        return None
    if "u" in state and "s" not in state:
        raise BadRequest(_OLD_ORDER_TOKEN)
    try:
        return datetime.fromisoformat(state["s"]), int(state["w"]), bytes.fromhex(state["d"])
    except (KeyError, TypeError, ValueError):
        # A token of the other ordering: the type became (or stopped being) a contact type.
        raise BadRequest(_INVALID_TOKEN) from None


def _contact_after(state: dict[str, Any] | None) -> service.ContactAfter | None:
    if state is None:
        return None
    try:
        return cursor_from_state(state["c"])
    except (KeyError, ValueError):
        raise BadRequest(_INVALID_TOKEN) from None


def delete_profile_object(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.write() as tx:
        service.delete_profile_object(
            tx,
            domain_name=params["DomainName"],
            object_type_name=params["ObjectTypeName"],
            profile_id=params["ProfileId"],
            unique_key=params["ProfileObjectUniqueKey"],
        )
    # The cloud service's own words (spec §4: AWS's solutions check for exactly "OK").
    return {"Message": "OK"}
