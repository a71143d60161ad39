"""Rules for integrations: put, get, list, delete, and contact-centre instance association.

An integration binds a Uri to a domain and an object type. Two kinds matter here:

* a contact-centre instance ARN (`arn:aws:connect:{region}:{account}:instance/{id}`): the
  instance's contact records go to this domain, as objects of the integration's object type
  (`CTR` by default, spec §3.2). An instance belongs to one domain at a time; putting it on
  another domain is refused, naming the domain it belongs to, unless it is moved
  (`associate_instance(move=True)`), which removes the old association. Profiles already built
  in the old domain stay there. Every way of associating an instance (PutIntegration, the CLI,
  the admin pages) goes through contacts.service.connect_instance, which also replays the
  records kept while the instance had no domain, under the instance's association lock
  (`lock_instances`), so that no record kept meanwhile by another process is left behind: the
  first `REPLAY_CHUNK` of them in the association's transaction, the rest after its commit,
  a transaction per chunk (contacts.sweep.send_kept_on: every record kept before the commit
  is in the store by then, and none is kept for the instance after it). A PutIntegration and
  a DeleteDomain of its domain at once go one after the other (`lock_domain`): the deletion
  removes the integration with the domain, or the PutIntegration finds no domain.
* an integration with a FlowDefinition: a flow pulling records from a bucket or a folder (see
  openprofiles.flows). Its Uri defaults to the flow's ARN. The definition is stored sealed with
  the domain's key (`flow_sealed`), apart from the other settings: its tasks can hold a
  customer's value, its source a customer's file name.

DeleteProfileObjectType "disables integrations from this specific ProfileObjectType" (the
model's doc): every integration of the domain that ingests as the deleted type (ObjectTypeName,
or one of ObjectTypeNames) is kept, and GetIntegration and ListIntegrations answer it as it was
put (the model has no member for a state), but it brings nothing in: a contact record of its
instance goes to the domain's dead-letter queue with the reason, a live contact event and a run
of its flow are refused with it (a scheduled or event flow is not started; its items wait in
the source). This holds for an implicit type too (CTR): deleting it drops its data and stops
the instance's records; PutProfileObject with that name still works, as implicit types do.
AWS's admin guide says to go through the setup again to re-enable ingestion
(delete-customer-profile-connection); here either step of it does: PutIntegration with the
Uri (any association of the instance), or defining the deleted type again with
PutProfileObjectType. The choice of re-enabling on the type's definition keeps a record
flowing again once what it needs exists, as it did before a type could disable anything.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from openprofiles.arns import child_arn
from openprofiles.context import Tx
from openprofiles.domains.service import get_domain, register_domain_table
from openprofiles.errors import BadRequest, NotFound
from openprofiles.flows.models import parse_flow_definition
from openprofiles.flows.sources import SourceError, inside_folder_roots
from openprofiles.integrations.models import (
    DEFAULT_INSTANCE_OBJECT_TYPE,
    InstanceAssociation,
    Integration,
    is_connect_arn,
    is_instance_arn,
)
from openprofiles.object_types.service import (
    find_object_type,
    lock_object_types,
    on_object_type_deleted,
    on_object_type_put,
)
from openprofiles.object_types.templates import find_template
from openprofiles.store.advisory import take_locks
from openprofiles.store.schema import instance_moved_from, integration
from openprofiles.tags.service import delete_tags, put_tags

register_domain_table(integration)

SETTING_MEMBERS = ("RoleArn", "EventTriggerNames", "Scope", "WorkflowId", "IsUnstructured")
# Kept in the settings of an integration DeleteProfileObjectType disabled: the deleted type's
# name. Not an API member; putting the integration again writes its settings without it.
DISABLED_BY = "DisabledByDeletedObjectType"
# The FlowDefinition is stored sealed (integration.flow_sealed), bound to this table and the Uri:
# a Filter task can compare a field with a customer's value, a source name a customer's file.
SEALED_TABLE = "integration"
# The longest Uri: the model's (string1To255), and the integration.uri column's.
MAX_URI_CHARS = 255


def integration_arn(tx: Tx, domain_name: str, uri: str) -> str:
    """`.../domains/D/integrations/{Uri}`, the Uri URI-encoded (it contains ':' and '/')."""
    return child_arn(tx.settings, domain_name, "integrations", quote(uri, safe=""))


def flow_arn(tx: Tx, flow_name: str) -> str:
    return f"arn:aws:appflow:{tx.settings.region}:{tx.settings.account_id}:flow/{flow_name}"


def _flow_uri(tx: Tx, flow_name: str) -> str:
    """The flow's ARN, the Uri of an integration put with a FlowDefinition and no Uri.
    BadRequest when it is longer than a Uri may be: a FlowName may have 256 characters (the
    model's), its ARN only 255 as a Uri. Stored, such a Uri was refused by GetIntegration and
    DeleteIntegration (longer than their Uri may be) on SQLite, and by PostgreSQL's column."""
    arn = flow_arn(tx, flow_name)
    if len(arn) <= MAX_URI_CHARS:
        return arn
    room = MAX_URI_CHARS - (len(arn) - len(flow_name))
    raise BadRequest(
        f"The FlowName is too long for the flow's ARN ({flow_arn(tx, 'FlowName')}), which is "
        f"the integration's Uri when none is given: the ARN can have at most {MAX_URI_CHARS} "
        f"characters, so the FlowName at most {room} here ({len(flow_name)} given). Give a "
        "shorter FlowName, or a Uri."
    )


def _record(tx: Tx, row: Any) -> Integration:
    settings = dict(row.settings or {})
    deleted_type = settings.pop(DISABLED_BY, None)
    if row.flow_sealed is not None:
        settings["FlowDefinition"] = tx.cipher(row.domain_name).open_record(
            SEALED_TABLE, row.uri, bytes(row.flow_sealed)
        )
    return Integration(
        domain_name=row.domain_name,
        uri=row.uri,
        object_type_name=row.object_type_name,
        object_type_names=dict(row.object_type_names) if row.object_type_names else None,
        settings=settings,
        instance_arn=row.instance_arn,
        flow_name=row.flow_name,
        created_at=row.created_at,
        updated_at=row.updated_at,
        disabled_reason=_disabled_reason(row.uri, deleted_type) if deleted_type else None,
    )


def _disabled_reason(uri: str, deleted_type: str) -> str:
    # Putting the integration again enables it only where the type exists without a
    # definition (an implicit, template-named type such as CTR); PutIntegration refuses a
    # custom type that is not defined.
    again = (
        " or put the integration again (PutIntegration)"
        if find_template(deleted_type) is not None
        else ""
    )
    return (
        f"The integration {uri} is disabled: its object type {deleted_type} was deleted "
        f"(DeleteProfileObjectType). Define {deleted_type} again (PutProfileObjectType){again} "
        "to enable it."
    )


def _ingests_as(row: Any, object_type_name: str) -> bool:
    return row.object_type_name == object_type_name or object_type_name in (
        (row.object_type_names or {}).values()
    )


def _on_object_type_deleted(tx: Tx, domain_name: str, object_type_name: str) -> None:
    """Disable the domain's integrations that ingest as the deleted type (module docstring)."""
    for row in _locked_rows(tx, domain_name, lambda row: _ingests_as(row, object_type_name)):
        _set_settings(tx, row, {**(row.settings or {}), DISABLED_BY: object_type_name})


def _on_object_type_put(tx: Tx, domain_name: str, object_type_name: str) -> None:
    """Enable again the integrations the deletion of the type disabled (module docstring)."""

    def disabled_by_it(row: Any) -> bool:
        return (row.settings or {}).get(DISABLED_BY) == object_type_name

    for row in _locked_rows(tx, domain_name, disabled_by_it):
        _set_settings(tx, row, {k: v for k, v in row.settings.items() if k != DISABLED_BY})


def _locked_rows(tx: Tx, domain_name: str, wanted: Callable[[Any], bool]) -> list[Any]:
    """The domain's integration rows that `wanted` picks, locked (PostgreSQL: FOR UPDATE, in
    Uri order) and read again once locked, for their settings to be written back whole.

    Read unlocked, a row a PutIntegration was changing kept its old settings here; under READ
    COMMITTED the write then waited for the PutIntegration and wrote the old settings over its
    new ones. Locked, the row is read as the PutIntegration committed it, and picked again. Only
    the rows picked are locked, as the write alone locked them before: a PutIntegration that
    makes a row ingest as a type holds that type's lock (`put_integration`), so the deletion of
    the type, which holds it exclusively, reads such a row only once it is committed."""
    rows = tx.conn.execute(select(integration).where(integration.c.domain_name == domain_name))
    uris = sorted(row.uri for row in rows if wanted(row))
    if not uris:
        return []
    locked = tx.conn.execute(
        select(integration)
        .where(integration.c.domain_name == domain_name, integration.c.uri.in_(uris))
        .order_by(integration.c.uri)
        .with_for_update()
    )
    return [row for row in locked if wanted(row)]


def _set_settings(tx: Tx, row: Any, settings: dict[str, Any]) -> None:
    tx.conn.execute(
        update(integration)
        .where(integration.c.domain_name == row.domain_name, integration.c.uri == row.uri)
        .values(settings=settings)
    )


if _on_object_type_deleted not in on_object_type_deleted:
    on_object_type_deleted.append(_on_object_type_deleted)
if _on_object_type_put not in on_object_type_put:
    on_object_type_put.append(_on_object_type_put)


def find_integration(tx: Tx, *, domain_name: str, uri: str) -> Integration | None:
    row = tx.conn.execute(
        select(integration).where(
            integration.c.domain_name == domain_name, integration.c.uri == uri
        )
    ).first()
    return _record(tx, row) if row else None


def get_integration(tx: Tx, *, domain_name: str, uri: str) -> Integration:
    get_domain(tx, domain_name=domain_name)
    found = find_integration(tx, domain_name=domain_name, uri=uri)
    if found is None:
        raise NotFound(f"The integration {uri} does not exist in domain {domain_name}.")
    return found


class InstanceTaken(BadRequest):
    """PutIntegration of an instance another domain holds, naming that domain (`owner`). A
    caller whose access key may not act on it (auth.scope) is answered `unnamed` instead
    (integrations.handlers): the name of a domain is not theirs to learn."""

    def __init__(self, uri: str, owner: str, advice: str, caller_advice: str | None = None) -> None:
        # `advice` may name an openprofiles command, for the CLI and the logs; the API caller
        # is answered `caller_advice` instead: an API error never names a server command.
        taken = f"The instance {uri} is already associated with domain {owner}"
        super().__init__(
            taken + advice,
            caller_message=None if caller_advice is None else taken + caller_advice,
        )
        self.owner = owner
        self.unnamed = (
            f"The instance {uri} is already associated with a domain this access key may not "
            "act on; an instance belongs to one domain at a time."
        )


def put_integration(
    tx: Tx,
    *,
    domain_name: str,
    uri: str | None,
    object_type_name: str | None = None,
    object_type_names: Mapping[str, str] | None = None,
    flow_definition: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    move: bool = False,
    refuse_association: Exception | None = None,
) -> InstanceAssociation:
    """Create or replace the integration of `uri` in the domain (PutIntegration).
    `refuse_association`: raised when `uri` is an instance not associated with the domain yet
    (read under its association lock), for a caller that may only update an association (a key
    limited to some domains: auth.scope); one associated with another domain is refused as
    for any caller (`InstanceTaken`)."""
    # Before the domain is read: a DeleteDomain under way commits first, and the domain is
    # then not found (`lock_domain`).
    lock_domain(tx, domain_name=domain_name, shared=True)
    get_domain(tx, domain_name=domain_name)
    flow_name: str | None = None
    if flow_definition is not None:
        flow = parse_flow_definition(flow_definition, put_at=tx.now)
        if flow.folder is not None:
            try:
                inside_folder_roots(tx.settings, flow.folder)
            except SourceError as exc:
                # The roots are the server's folders and setting: the operator's to know. A
                # path whose links cannot be followed (a loop) says so; it names no root.
                unfollowed = isinstance(exc.__cause__, OSError | RuntimeError)
                raise BadRequest(
                    exc.message,
                    caller_message=exc.message
                    if unfollowed
                    else (
                        f"The path {flow.folder} is outside the folders flows may read on "
                        "this server."
                    ),
                ) from exc
        flow_name = flow.name
        uri = uri or _flow_uri(tx, flow.name)
    if not uri:
        raise BadRequest("Either Uri or FlowDefinition is required.")
    if len(uri) > MAX_URI_CHARS:
        # The API's callers are held to it by the model; the CLI's and the pages' are here.
        raise BadRequest(f"The Uri can have at most {MAX_URI_CHARS} characters.")
    instance = is_instance_arn(uri)
    if is_connect_arn(uri) and not instance:
        # In any partition: a queue's ARN of an instance in aws-cn was stored as an ordinary
        # integration, which brought nothing in.
        raise BadRequest(
            f"The Uri {uri} is not a contact-centre instance ARN "
            "(expected arn:PARTITION:connect:REGION:ACCOUNT:instance/ID)."
        )
    if instance and object_type_names:
        # ObjectTypeNames maps an application's event types (Segment, Shopify) to object types;
        # an instance's records have one type. Accepting the map would ingest them as CTR.
        raise BadRequest(
            "ObjectTypeNames maps the event types of an application such as Segment or Shopify; "
            f"a contact-centre instance ({uri}) takes ObjectTypeName instead: CTR, "
            "CTR-NoInferred or CTR-AutoAssociateOnly, or an object type of your own."
        )
    if instance and flow_definition is not None:
        raise BadRequest(
            f"A contact-centre instance ({uri}) takes no FlowDefinition: its contact records "
            "come from the instance. Give the flow its own Uri, or none."
        )
    if object_type_name and object_type_names:
        raise BadRequest("Give ObjectTypeName or ObjectTypeNames, not both.")
    if not object_type_name and not object_type_names:
        if not instance:
            raise BadRequest("ObjectTypeName or ObjectTypeNames is required.")
        object_type_name = DEFAULT_INSTANCE_OBJECT_TYPE
    if flow_definition is not None and not object_type_name:
        raise BadRequest("An integration with a FlowDefinition needs ObjectTypeName.")
    type_names = (
        [object_type_name] if object_type_name else list((object_type_names or {}).values())
    )
    if instance:
        # Held to the commit: the caller's replay of the kept records (connect_instance) runs
        # under it, so a record kept meanwhile is either seen by the replay or routed here.
        # Before the object types' locks (store.advisory).
        lock_instances(tx, [uri])
    _lock_integration(tx, domain_name, uri, type_names, flow_name)
    for name in type_names:
        if find_object_type(tx, domain_name=domain_name, name=name) is None:
            raise BadRequest(f"The object type {name} does not exist in domain {domain_name}.")
    if flow_name is not None:
        _check_flow_name_free(tx, domain_name, flow_name, uri)

    previous_domain = None
    if instance:
        owner = instance_domain(tx, instance_arn=uri)
        if owner is not None and owner != domain_name and not move:
            raise InstanceTaken(
                uri,
                owner,
                "; an instance belongs to one domain at a time. Delete that integration "
                "first, or move the instance (openprofiles instances associate --move).",
                "; an instance belongs to one domain at a time. Delete that integration "
                "(DeleteIntegration) first, then put it in this domain.",
            )
        if refuse_association is not None and owner != domain_name:
            raise refuse_association
        if owner is not None and owner != domain_name:
            tx.conn.execute(
                delete(integration).where(
                    integration.c.domain_name == owner, integration.c.uri == uri
                )
            )
            delete_tags(tx, resource_arn=integration_arn(tx, owner, uri))
            previous_domain = owner

    values = {
        "object_type_name": object_type_name or None,
        "object_type_names": dict(object_type_names) if object_type_names else None,
        "settings": {k: v for k, v in (settings or {}).items() if v is not None},
        "flow_sealed": (
            None
            if flow_definition is None
            else tx.cipher(domain_name).seal_record(SEALED_TABLE, uri, _jsonable(flow_definition))
        ),
        "instance_arn": uri if instance else None,
        "flow_name": flow_name,
        "updated_at": tx.now,
    }
    previous = find_integration(tx, domain_name=domain_name, uri=uri)
    if previous is None:
        try:
            with tx.conn.begin_nested():
                tx.conn.execute(
                    insert(integration).values(
                        domain_name=domain_name, uri=uri, created_at=tx.now, **values
                    )
                )
        except IntegrityError:
            # Another domain took the instance concurrently (the UNIQUE constraint held).
            owner = instance_domain(tx, instance_arn=uri) if instance else None
            if owner:
                raise InstanceTaken(uri, owner, ".") from None
            raise BadRequest(
                f"The integration {uri} was created concurrently; try again."
            ) from None
    else:
        tx.conn.execute(
            update(integration)
            .where(integration.c.domain_name == domain_name, integration.c.uri == uri)
            .values(**values)
        )
    if previous is not None and previous.flow_name not in (None, flow_name):
        # Renamed (another FlowName under the same Uri), or no longer a flow. The FlowName is
        # the flow's identity (AppFlow's, and its ARN's): another name is another flow, which
        # reads its source afresh, as one deleted and put again does. Its checkpoints are not
        # carried over, as the new definition may read another source, nor left behind, where
        # the old name put back (on this integration or another) would resume from them.
        assert previous.flow_name is not None
        forget_flow(tx, domain_name, previous.flow_name)
    if flow_name is not None and (previous is None or previous.flow_name != flow_name):
        # A name new to the integration: what is kept under it belongs to no flow (a name is
        # one integration's), left by a rename before renames forgot them.
        forget_flow(tx, domain_name, flow_name)
    if tags:
        put_tags(
            tx,
            domain_name=domain_name,
            resource_arn=integration_arn(tx, domain_name, uri),
            tags=dict(tags),
        )
    return InstanceAssociation(
        integration=get_integration(tx, domain_name=domain_name, uri=uri),
        previous_domain=previous_domain,
    )


def _lock_integration(
    tx: Tx, domain_name: str, uri: str, type_names: Iterable[str], flow_name: str | None
) -> None:
    """PutIntegration's locks after the instance's (store.advisory; PostgreSQL, SQLite's one
    writer serialises already): the object types it names, shared, then its Uri's and its
    FlowName's (when it has a flow), exclusively.

    Without the types' locks a PutIntegration checked that its type existed while a
    DeleteProfileObjectType of it was uncommitted, and left the integration enabled for a
    deleted type, whichever committed first. Holding them, as an ingestion does
    (object_types.lock_object_type), it either commits first, and the deletion disables it, or
    waits for the deletion and finds the type gone (an implicit type, CTR, is there still: the
    integration is enabled again, as the module docstring says). Without the Uri's lock two
    PutIntegration calls of a new Uri both found no integration, and the second's insert failed:
    an idempotent PUT refused. Holding it, the second finds the first's integration and
    replaces it. Without the FlowName's lock two PutIntegration calls of other Uris with one
    FlowName both found it free (`_check_flow_name_free`), and the domain had two flows of
    that name. Holding it, the second finds the first's flow, and is refused."""
    # ObjectTypeNames can name several types: all in one `take_locks` (one global order).
    lock_object_types(tx, domain_name=domain_name, names=type_names, shared=True)
    names: list[tuple[str, ...]] = [("integration", domain_name, uri)]
    if flow_name is not None:
        names.append(("integration-flow", domain_name, flow_name))
    # One `take_locks`: two puts of one FlowName under two Uris queue rather than deadlock.
    take_locks(tx, names)


def _check_flow_name_free(tx: Tx, domain_name: str, flow_name: str, uri: str) -> None:
    row = tx.conn.execute(
        select(integration.c.uri).where(
            integration.c.domain_name == domain_name,
            integration.c.flow_name == flow_name,
            integration.c.uri != uri,
        )
    ).first()
    if row is not None:
        raise BadRequest(
            f"A flow named {flow_name} already exists in domain {domain_name} "
            f"(integration {row.uri})."
        )


def _jsonable(value: Any) -> Any:
    """FlowDefinition as JSON for storage: timestamps become epoch seconds."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


# Called as hook(tx, instance_arn, domain_name) when an instance's integration is deleted (its
# dissociation), inside the same transaction and under the instance's association lock:
# contacts.moves remembers the domain it left, as a move does.
on_instance_dissociated: list[Callable[[Tx, str, str], None]] = []


def delete_integration(tx: Tx, *, domain_name: str, uri: str) -> None:
    if is_instance_arn(uri):
        # As an association takes it (`put_integration`): a replay or a move under way
        # commits first, and the dissociation's note of the domain left is not raced.
        lock_instances(tx, [uri])
    found = get_integration(tx, domain_name=domain_name, uri=uri)
    tx.conn.execute(
        delete(integration).where(
            integration.c.domain_name == domain_name, integration.c.uri == uri
        )
    )
    if found.flow_name is not None:
        forget_flow(tx, domain_name, found.flow_name)
    delete_tags(tx, resource_arn=integration_arn(tx, domain_name, uri))
    if is_instance_arn(uri):
        for hook in on_instance_dissociated:
            hook(tx, uri, domain_name)


def forget_flow(tx: Tx, domain_name: str, flow_name: str) -> None:
    """Delete the runs and checkpoints of a flow the integration no longer has (deleted,
    renamed): a flow put again under its name reads its source afresh, and a run of it in
    progress stops (flows.claims: called after the integration's row was deleted or changed,
    which the run's transactions hold shared). Erases (`Tx.erased`): a failed run's sealed error
    can quote a customer's value, and an item's digest names a file or object key."""
    from openprofiles.store.schema import flow_item, flow_run

    tx.erased()
    for table in (flow_item, flow_run):
        tx.conn.execute(
            delete(table).where(table.c.domain_name == domain_name, table.c.flow_name == flow_name)
        )


def list_integrations(
    tx: Tx, *, domain_name: str, after: str | None, limit: int
) -> tuple[list[Integration], bool]:
    """The domain's integrations in Uri order after `after`; the flag says whether more follow."""
    get_domain(tx, domain_name=domain_name)
    query = (
        select(integration)
        .where(integration.c.domain_name == domain_name)
        .order_by(integration.c.uri)
        .limit(limit + 1)
    )
    if after is not None:
        query = query.where(integration.c.uri > after)
    rows = [_record(tx, r) for r in tx.conn.execute(query)]
    return rows[:limit], len(rows) > limit


def list_account_integrations(
    tx: Tx, *, uri: str, after: str | None, limit: int, only: Collection[str] | None = None
) -> tuple[list[Integration], bool]:
    """Every domain's integration of `uri`, in domain order (ListAccountIntegrations); of the
    domains `only` when given (a credential's scope, auth.scope)."""
    query = (
        select(integration)
        .where(integration.c.uri == uri)
        .order_by(integration.c.domain_name)
        .limit(limit + 1)
    )
    if only is not None:
        query = query.where(integration.c.domain_name.in_(sorted(only)))
    if after is not None:
        query = query.where(integration.c.domain_name > after)
    rows = [_record(tx, r) for r in tx.conn.execute(query)]
    return rows[:limit], len(rows) > limit


def list_flow_integrations(tx: Tx, *, domain_name: str | None = None) -> list[Integration]:
    """Enabled integrations that have a flow (all domains when `domain_name` is None): the
    flows the scheduler may start. A disabled one's items wait in its source."""
    query = select(integration).where(integration.c.flow_name.is_not(None))
    if domain_name is not None:
        query = query.where(integration.c.domain_name == domain_name)
    found = [_record(tx, r) for r in tx.conn.execute(query.order_by(integration.c.domain_name))]
    return [f for f in found if f.disabled_reason is None]


def find_flow_integration(tx: Tx, *, domain_name: str, flow_name: str) -> Integration | None:
    row = tx.conn.execute(
        select(integration).where(
            integration.c.domain_name == domain_name, integration.c.flow_name == flow_name
        )
    ).first()
    return _record(tx, row) if row else None


# ---------------------------------------------------------------------------- instances


def lock_instances(tx: Tx, instance_arns: Iterable[str], *, shared: bool = False) -> None:
    """Take the instances' association locks (PostgreSQL; SQLite's one writer serialises
    already), first of the transaction's locks (store.advisory).

    An association takes its instance's exclusively, before it reads the owner and writes the
    integration, and holds it through the replay of the kept records; a dissociation
    (DeleteIntegration) and DeleteDomain (`lock_domain_instances`) take it exclusively too. The
    intake takes the lock shared for every instance of a batch before it looks them up
    (contacts.routing.Router.look_up); so does the connector's replay of held records, before
    it takes them out (replay_held). Without it, a record read "no integration" while an
    association was uncommitted, and was kept after the association's replay had read the kept
    records: it stayed kept, its instance associated; and a batch routed to a domain that a
    DeleteDomain then removed failed whole (the domain does not exist). With it, either the
    association (or deletion) commits first, and the batch routes by what it left, or the batch
    commits first, and the association's replay sends on what it kept."""
    take_locks(tx, (("instance", arn) for arn in instance_arns), shared=shared)


def lock_domain(tx: Tx, *, domain_name: str, shared: bool = False) -> None:
    """The domain's lock (PostgreSQL; SQLite's one writer serialises already), before its
    instances' association locks (store.advisory): exclusive by DeleteDomain
    (`lock_domain_instances`), shared by every PutIntegration, before it reads the domain.

    DeleteDomain's association locks are those of the instances the domain has when it looks;
    an instance being associated with it for the first time is not among them. Without this
    lock, such a PutIntegration wrote its integration while the deletion was under way: when
    the deletion committed first, the insert failed on the foreign key and was answered as a
    conflict to try again (for a domain that no longer existed). With it, either the
    PutIntegration commits first, and the deletion finds its integration and deletes it with
    the domain, or the deletion does, and the PutIntegration finds no domain (NotFound)."""
    take_locks(tx, [("domain", domain_name)], shared=shared)


def lock_domain_instances(tx: Tx, *, domain_name: str) -> None:
    """DeleteDomain's locks, exclusively, first of its locks: the domain's (`lock_domain`),
    then the association locks of the instances associated with the domain, and of those
    moved away from it, whose records may still go back to it (contacts.moves). A batch of
    contact records of one of them then either commits before the deletion goes on, or waits
    for it and finds the instance associated with no domain, and keeps its records
    (`lock_instances`)."""
    # First, so that the instances are looked up once it is held: one whose PutIntegration
    # committed meanwhile is among them.
    lock_domain(tx, domain_name=domain_name)
    associated = select(integration.c.instance_arn).where(
        integration.c.domain_name == domain_name, integration.c.instance_arn.is_not(None)
    )
    moved = select(instance_moved_from.c.instance_arn).where(
        instance_moved_from.c.domain_name == domain_name
    )
    lock_instances(tx, tx.conn.execute(associated.union(moved)).scalars())


def instance_domain(tx: Tx, *, instance_arn: str) -> str | None:
    """The domain the instance is associated with, or None."""
    row = tx.conn.execute(
        select(integration.c.domain_name).where(integration.c.instance_arn == instance_arn)
    ).first()
    return row.domain_name if row else None


def find_instance_integration(tx: Tx, *, instance_arn: str) -> Integration | None:
    """The integration routing the instance's contact records, or None when unassociated."""
    row = tx.conn.execute(_BY_INSTANCE, {"instance_arn": instance_arn}).first()
    return _record(tx, row) if row else None


# Built once: every contact-start event looks its instance up (building costs more than running).
_BY_INSTANCE = select(integration).where(integration.c.instance_arn == bindparam("instance_arn"))


def associate_instance(
    tx: Tx,
    *,
    domain_name: str,
    instance_arn: str,
    move: bool = False,
    object_type_name: str | None = None,
    object_type_names: Mapping[str, str] | None = None,
    settings: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    refuse_association: Exception | None = None,
) -> InstanceAssociation:
    """Associate a contact-centre instance with the domain (PutIntegration with the instance
    ARN, `openprofiles instances associate`, the admin pages; contacts.service.connect_instance
    also replays the records kept meanwhile). With `move`, an association with another domain
    is removed first; without it, that is refused with the domain's name. Existing profiles
    never move between domains.

    `object_type_name` and `settings` not given (None) keep those of the instance's association
    with this domain, so associating it again (the way to replay its kept records) changes
    nothing else; a new association gets CTR and no settings. PutIntegration gives both."""
    if not is_instance_arn(instance_arn):
        raise BadRequest(
            f"{instance_arn} is not a contact-centre instance ARN "
            "(expected arn:aws:connect:REGION:ACCOUNT:instance/ID)."
        )
    # The locks PutIntegration takes first (its domain's, shared, then the instance's), taken
    # before the association's type and settings are read to be kept: read unlocked, a
    # PutIntegration of the instance committing meanwhile had its new ones written over.
    lock_domain(tx, domain_name=domain_name, shared=True)
    lock_instances(tx, [instance_arn])
    existing = find_integration(tx, domain_name=domain_name, uri=instance_arn)
    if object_type_name is None and not object_type_names:
        object_type_name = (
            existing.object_type_name if existing else None
        ) or DEFAULT_INSTANCE_OBJECT_TYPE
    if settings is None and existing is not None:
        settings = {m: existing.settings.get(m) for m in SETTING_MEMBERS}
    return put_integration(
        tx,
        domain_name=domain_name,
        uri=instance_arn,
        object_type_name=object_type_name,
        object_type_names=object_type_names,
        settings=settings,
        tags=tags,
        move=move,
        refuse_association=refuse_association,
    )


def list_instances(tx: Tx) -> list[Integration]:
    """Every associated instance (all domains), in instance order."""
    rows = tx.conn.execute(
        select(integration)
        .where(integration.c.instance_arn.is_not(None))
        .order_by(integration.c.instance_arn)
    )
    return [_record(tx, r) for r in rows]
