"""Rules for object types: put (an upsert), get, list, delete, implicit template-named types,
and the ContentType a key name has in a domain.

An object type is either explicit (defined with PutProfileObjectType, possibly from a template)
or implicit: any name that is a TemplateId works without a definition and behaves like the
template (spec §2.1); once used it is recorded so it shows in ListProfileObjectTypes.
DeleteProfileObjectType removes the definition; removing the type's objects and scrubbing the
profile fields they populated belongs to openprofiles.objects, and disabling the integrations
that ingest as the type to openprofiles.integrations, which register in
`on_object_type_deleted` (integrations also in `on_object_type_put`, to enable them again).

On PostgreSQL a deletion and the ingestions of the type serialise on the type's lock
(`lock_object_type`): ingestion holds it shared, the deletion exclusive, so nothing an
ingestion stores outlives a deletion it raced with. PutProfileObjectType checks a definition
against the domain's others holding a lock on the domain's object types, so two puts at once
cannot each pass against what the other has not committed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, exists, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from openprofiles.arns import child_arn
from openprofiles.context import Tx
from openprofiles.domains.service import find_domain, get_domain, register_domain_table
from openprofiles.errors import BadRequest, NotFound
from openprofiles.normalize import ContentType
from openprofiles.object_types.models import (
    DEFINITION_MEMBERS,
    ObjectType,
    Template,
    key_content_type_of,
)
from openprofiles.object_types.standard_objects import STANDARD_OBJECT_TYPES
from openprofiles.object_types.templates import find_template
from openprofiles.object_types.validation import (
    ExistingKeys,
    compile_templates,
    validate_definition,
    validate_object_type_name,
)
from openprofiles.profiles.keys import PREDEFINED_CONTENT_TYPES
from openprofiles.store.advisory import take_locks
from openprofiles.store.prepared import PreparedRead
from openprofiles.store.schema import object_type, profile_object
from openprofiles.tags.service import delete_tags

__all__ = [
    "STANDARD_OBJECT_TYPES",
    "delete_object_type",
    "find_object_type",
    "get_object_type",
    "hold_key_content_types",
    "key_content_type",
    "list_object_types",
    "lock_object_type",
    "max_available_profile_object_count",
    "note_implicit_type_used",
    "object_type_arn",
    "on_object_type_deleted",
    "on_object_type_put",
    "put_object_type",
]

register_domain_table(object_type)

# Called as hook(tx, domain_name, type_name) when an object type is deleted, inside the same
# transaction (the removal of the type's objects, the disabling of its integrations).
on_object_type_deleted: list[Callable[[Tx, str, str], None]] = []
# Called as hook(tx, domain_name, type_name) when an object type is defined or replaced
# (PutProfileObjectType), inside the same transaction.
on_object_type_put: list[Callable[[Tx, str, str], None]] = []

# Objects a profile may hold across all types (spec §1.9).
PROFILE_OBJECT_QUOTA = 1000
# Members that cannot accompany a TemplateId (spec §1.5 rule 11).
TEMPLATE_EXCLUSIVE = ("Fields", "Keys", "AllowProfileCreation", "SourceLastUpdatedTimestampFormat")


def object_type_arn(tx: Tx, domain_name: str, name: str) -> str:
    return child_arn(tx.settings, domain_name, "object-types", name)


# ---------------------------------------------------------------------------- reading


def _from_row(row: Any) -> ObjectType | None:
    if row.definition is not None:
        return ObjectType.from_definition(
            row.definition,
            domain_name=row.domain_name,
            name=row.name,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
    template = find_template(row.template_id or row.name)
    if template is None:
        return None
    return ObjectType.from_definition(
        _implicit_definition(template),
        domain_name=row.domain_name,
        name=row.name,
        created_at=row.created_at,
        updated_at=row.updated_at,
        implicit=True,
    )


def _implicit_definition(template: Template) -> dict[str, Any]:
    """The definition an implicit type of `template` has: the template's, with its id and its
    description (required in GetProfileObjectType's and ListProfileObjectTypes' output)."""
    return {
        **template.definition,
        "Description": template.description,
        "TemplateId": template.template_id,
    }


# Built once: every PutProfileObject reads its type, and building a statement costs more than
# running it on SQLite.
# Every PutProfileObject reads its type: straight on the driver (store.prepared).
_FIND_TYPE = PreparedRead(
    select(object_type).where(
        object_type.c.domain_name == bindparam("d"), object_type.c.name == bindparam("n")
    )
)


def find_object_type(tx: Tx, *, domain_name: str, name: str) -> ObjectType | None:
    """The explicit definition of `name`, else the implicit type when `name` is a TemplateId."""
    row = _FIND_TYPE.first(tx.conn, {"d": domain_name, "n": name})
    if row is not None:
        return _from_row(row)
    template = find_template(name)
    if template is None:
        return None
    since = _implicit_since(tx, domain_name)
    return ObjectType.from_definition(
        _implicit_definition(template),
        domain_name=domain_name,
        name=name,
        created_at=since,
        updated_at=since,
        implicit=True,
    )


def _implicit_since(tx: Tx, domain_name: str) -> datetime:
    """When an implicit type came to be: the domain's creation. A template-named type exists in
    a domain from its creation on (spec §2.1), with nothing stored until it is used, so no later
    time is its own; the read's time made CreatedAt and LastUpdatedAt change on every
    GetProfileObjectType. The type keeps it once used (`note_implicit_type_used`), its first use
    being its LastUpdatedAt."""
    record = find_domain(tx, domain_name=domain_name)
    return record.created_at if record is not None else tx.now


def get_object_type(tx: Tx, *, domain_name: str, name: str) -> ObjectType:
    get_domain(tx, domain_name=domain_name)
    found = find_object_type(tx, domain_name=domain_name, name=name)
    if found is None:
        raise NotFound(f"The object type {name} does not exist in domain {domain_name}.")
    return found


def _domain_types(tx: Tx, domain_name: str) -> Iterator[ObjectType]:
    """Every explicit or used implicit object type of the domain, in name order."""
    rows = tx.conn.execute(
        select(object_type)
        .where(object_type.c.domain_name == domain_name)
        .order_by(object_type.c.name)
    )
    for row in rows:
        found = _from_row(row)
        if found is not None:
            yield found


def list_object_types(
    tx: Tx, *, domain_name: str, after: str | None, limit: int
) -> tuple[list[ObjectType], bool]:
    """Object types in name order after `after`; the flag says whether more follow."""
    get_domain(tx, domain_name=domain_name)
    query = (
        select(object_type)
        .where(object_type.c.domain_name == domain_name)
        .order_by(object_type.c.name)
        .limit(limit + 1)
    )
    if after is not None:
        query = query.where(object_type.c.name > after)
    rows = list(tx.conn.execute(query))
    found = [t for t in (_from_row(r) for r in rows[:limit]) if t is not None]
    return found, len(rows) > limit


def key_content_type(tx: Tx, *, domain_name: str, key_name: str) -> ContentType | None:
    """How `key_name`'s values are normalised according to the domain's object types."""
    for defined in _domain_types(tx, domain_name):
        types = defined.key_content_types(key_name)
        if types:
            return key_content_type_of(types)
    return None


def _in_force(types: Iterable[ObjectType]) -> dict[str, ContentType]:
    """Key name -> the ContentType `key_content_type` gives it, given the domain's types in
    name order; the keys none of them defines, and the predefined keys (their ContentTypes are
    fixed: profiles.keys), are left out."""
    out: dict[str, ContentType] = {}
    for defined in types:
        for key_name in defined.keys:
            if key_name in out or key_name in PREDEFINED_CONTENT_TYPES:
                continue
            types_of_key = defined.key_content_types(key_name)
            if types_of_key:
                out[key_name] = key_content_type_of(types_of_key)
    return out


def _changed_key_types(
    before: Mapping[str, ContentType], after: Mapping[str, ContentType]
) -> dict[str, ContentType]:
    """Key name -> its new ContentType, for the keys whose ContentType differs (an undefined
    key's values are compared as written: STRING, as profiles.service.key_content_type says)."""
    out: dict[str, ContentType] = {}
    for key_name in sorted({*before, *after}):
        new = after.get(key_name, ContentType.STRING)
        if before.get(key_name, ContentType.STRING) != new:
            out[key_name] = new
    return out


def _own_key_type(defined: ObjectType, key_name: str) -> ContentType | None:
    """How the type's ingestion normalises `key_name` (ingest.mapping), None if it has none."""
    predefined = PREDEFINED_CONTENT_TYPES.get(key_name)
    if predefined is not None:
        return predefined
    types = defined.key_content_types(key_name)
    return key_content_type_of(types) if types else None


def _renormalise(tx: Tx, domain_name: str, changed: Mapping[str, ContentType]) -> None:
    """Re-digest the stored values of each key whose ContentType changed (spec §1.4: a value
    is matched under the ContentType in force; profiles.key_reindex says why and how)."""
    if not changed:
        return
    from openprofiles.profiles.key_reindex import renormalise_key

    for key_name, content_type in changed.items():
        renormalise_key(tx, domain_name=domain_name, key_name=key_name, content_type=content_type)


def hold_key_content_types(tx: Tx, *, domain_name: str) -> None:
    """Hold the ContentTypes of the domain's keys until the transaction ends, shared (PostgreSQL;
    SQLite's one writer serialises already): AddProfileKey and DeleteProfileKey take it before
    they read a key's ContentType, PutProfileObjectType and DeleteProfileObjectType exclusively
    before they change one and re-digest its rows. A value added meanwhile would otherwise be
    written under the ContentType the change replaced, after the re-digest ran. The lock is
    the domain's object-types lock that PutProfileObjectType takes to check a definition against
    the others; each of these takes it before any other."""
    take_locks(tx, [("object_types", domain_name)], shared=True)


def _existing_keys(tx: Tx, domain_name: str, *, excluding: str) -> ExistingKeys:
    out: dict[str, tuple[tuple[ContentType, ...], str]] = {}
    for defined in _domain_types(tx, domain_name):
        if defined.name == excluding:
            continue
        for key_name in defined.keys:
            types = defined.key_content_types(key_name)
            if types:
                out.setdefault(key_name, (types, defined.name))
    return out


def max_available_profile_object_count(tx: Tx, *, domain_name: str, name: str) -> int:
    """[INF] spec §1.9: the per-profile quota minus the limits of the domain's other types.

    PutProfileObjectType accepts a MaxProfileObjectCount above this number, on purpose. AWS
    documents no such refusal (the API reference gives MaxProfileObjectCount only a minimum of
    1; the admin guide's data limits call the per-profile 1,000 a default, so an account's
    quota can be higher), and this number is our inference, so a refusal could break a
    definition AWS takes (a Terraform or CloudFormation apply) and would make the order of two
    puts matter. A limit above it is still coherent: eviction (spec §1.9) compares each type's
    count with its own limit, whatever the limits of all types add up to."""
    others = sum(
        t.max_profile_object_count or 0 for t in _domain_types(tx, domain_name) if t.name != name
    )
    return max(PROFILE_OBJECT_QUOTA - others, 0)


# ---------------------------------------------------------------------------- writing


def _definition_from(params: Mapping[str, Any]) -> dict[str, Any]:
    """The definition PutProfileObjectType's parameters describe, templates expanded."""
    given = {m: params[m] for m in DEFINITION_MEMBERS if params.get(m) is not None}
    template_id = given.get("TemplateId")
    if template_id is None:
        return given
    clashing = [m for m in TEMPLATE_EXCLUSIVE if m in given]
    if clashing:
        raise BadRequest(
            "You must either specify both Fields and Keys, or you can specify TemplateId; "
            f"with TemplateId {template_id}, {', '.join(clashing)} cannot be given (the "
            "template defines them)."
        )
    template = find_template(template_id)
    if template is None:
        raise BadRequest(f"TemplateId {template_id} is not a known template.")
    return {**template.definition, **given}


def put_object_type(
    tx: Tx, *, domain_name: str, name: str, params: Mapping[str, Any]
) -> ObjectType:
    """Create or replace the object type `name` (PutProfileObjectType is an upsert).

    The definition is checked against the domain's others (a key name has one ContentType
    across the domain) holding the domain's object-type lock: two puts at once check in turn,
    the second against the first's type. The row is written by one upsert, so a deletion of the
    type that commits meanwhile leaves it created again, as after the deletion."""
    get_domain(tx, domain_name=domain_name)
    validate_object_type_name(name)
    definition = _definition_from(params)
    # Compiling templates is slow (validation.MAX_TEMPLATE_TAGS): done before the domain's
    # lock, validate_definition below finds them compiled.
    compile_templates(definition)
    take_locks(tx, [("object_types", domain_name)])
    validate_definition(definition, existing_keys=_existing_keys(tx, domain_name, excluding=name))
    # A key whose ContentType this definition changes has its stored values re-digested
    # (profiles.key_reindex), except the digests of the type's own stored objects, which keep
    # no value to re-digest: such a change is refused (_refuse_stranded_objects).
    stored = list(_domain_types(tx, domain_name))
    previous = find_object_type(tx, domain_name=domain_name, name=name)
    replacement = ObjectType.from_definition(
        definition, domain_name=domain_name, name=name, created_at=tx.now, updated_at=tx.now
    )
    changed = _changed_key_types(
        _in_force(stored),
        _in_force(sorted([*(t for t in stored if t.name != name), replacement], key=_name)),
    )
    if previous is not None and (
        set(changed) & set(previous.keys) or _own_changes(previous, replacement)
    ):
        # Exclusive, so no ingestion of the type under its previous definition is storing
        # values of such a key under the old ContentType (after the re-digest, or as objects).
        lock_object_type(tx, domain_name=domain_name, name=name, shared=False)
        if _own_changes(previous, replacement):
            _refuse_stranded_objects(tx, domain_name, previous, replacement)
    values = {
        "template_id": definition.get("TemplateId"),
        "definition": definition,
        "updated_at": tx.now,
    }
    dialect_insert = sqlite_insert if tx.services.database.is_sqlite else pg_insert
    upsert = dialect_insert(object_type).values(
        domain_name=domain_name, name=name, created_at=tx.now, **values
    )
    tx.conn.execute(
        upsert.on_conflict_do_update(
            index_elements=[object_type.c.domain_name, object_type.c.name], set_=values
        )
    )
    for hook in on_object_type_put:
        hook(tx, domain_name, name)
    _renormalise(tx, domain_name, changed)
    found = find_object_type(tx, domain_name=domain_name, name=name)
    assert found is not None
    return found


def _name(defined: ObjectType) -> str:
    return defined.name


def _own_changes(previous: ObjectType, replacement: ObjectType) -> dict[str, ContentType]:
    """Key name -> its old ContentType, for the keys both definitions of the type have whose
    ContentType (as the type's ingestion normalises them) differs."""
    out: dict[str, ContentType] = {}
    for key_name in sorted(set(previous.keys) & set(replacement.keys)):
        old = _own_key_type(previous, key_name)
        if old is not None and old != _own_key_type(replacement, key_name):
            out[key_name] = old
    return out


def _refuse_stranded_objects(
    tx: Tx, domain_name: str, previous: ObjectType, replacement: ObjectType
) -> None:
    """Rule 8 (spec §1.5), extended to the type's own stored objects: a key's ContentType
    cannot change while the type has objects. Their key digests (ListProfileObjects'
    ObjectFilter, the UNIQUE key that a record re-ingested replaces its object by) were taken
    under the old ContentType and keep no value to take them again from; recomputing them
    would mean mapping every stored object again, and a changed UNIQUE digest would change its
    ProfileObjectUniqueKey. The profile keys the objects gave are re-digested either way."""
    has_objects = tx.conn.execute(
        select(
            exists().where(
                profile_object.c.domain_name == domain_name,
                profile_object.c.object_type_name == replacement.name,
            )
        )
    ).scalar()
    if not has_objects:
        return
    key_name, old = next(iter(_own_changes(previous, replacement).items()))
    new = _own_key_type(replacement, key_name)
    raise BadRequest(
        f"Key {key_name} of object type {replacement.name} has ContentType {old}, and the "
        f"type's stored objects were indexed under it; this definition gives it ContentType "
        f"{new}, under which they would no longer be found. Keep ContentType {old}, give the "
        "key a new name, or remove the type's objects first (DeleteProfileObjectType removes "
        "the type with its objects)."
    )


def note_implicit_type_used(tx: Tx, *, domain_name: str, name: str) -> None:
    """Record that the template-named type `name` was used, so it is listed (spec §2.1)."""
    if find_template(name) is None:
        return
    dialect_insert = sqlite_insert if tx.services.database.is_sqlite else pg_insert
    inserted = tx.conn.execute(
        dialect_insert(object_type)
        .values(
            domain_name=domain_name,
            name=name,
            template_id=name,
            definition=None,
            created_at=_implicit_since(tx, domain_name),
            updated_at=tx.now,
        )
        .on_conflict_do_nothing()
    ).rowcount
    if inserted:
        # Its first use: its keys count in the domain from now on (key_content_type), so a
        # key it is the first to define (`_ctrPhone` of the CTR template) changes ContentType.
        # The types are read only then, not at every batch of a used type (this runs at each):
        # before the insert, the domain's types were all but this one.
        after = list(_domain_types(tx, domain_name))
        before = [t for t in after if t.name != name]
        _renormalise(tx, domain_name, _changed_key_types(_in_force(before), _in_force(after)))


def lock_object_type(tx: Tx, *, domain_name: str, name: str, shared: bool) -> None:
    """Hold the object type `name` until the transaction ends (PostgreSQL; SQLite's one writer
    serialises already): `shared` by an ingestion of it, exclusively by its deletion, so the
    deletion waits for the ingestions in flight and removes what they stored, and an ingestion
    that waited reads the type after the deletion. Take it before reading the type, and before
    the ingestion's key locks and any profile lock (the one order every writer keeps).

    A transaction-scoped advisory lock rather than the `object_type` row's: an implicit type
    has no row until it is first used, and many concurrent ingestions sharing a row lock would
    each write to the row."""
    lock_object_types(tx, domain_name=domain_name, names=[name], shared=shared)


def lock_object_types(tx: Tx, *, domain_name: str, names: Iterable[str], shared: bool) -> None:
    """`lock_object_type` for several types at once, in one `take_locks` (its one order)."""
    take_locks(tx, [("object_type", domain_name, name) for name in names], shared=shared)


def delete_object_type(tx: Tx, *, domain_name: str, name: str) -> None:
    """Remove the definition (or forget an implicit type) and let the pipeline drop its data."""
    tx.erased()
    get_domain(tx, domain_name=domain_name)
    # The domain's object types first (the order put_object_type takes them in): removing the
    # last type that defines a key changes its ContentType (hold_key_content_types).
    take_locks(tx, [("object_types", domain_name)])
    lock_object_type(tx, domain_name=domain_name, name=name, shared=False)
    before = _in_force(_domain_types(tx, domain_name))
    result = tx.conn.execute(
        delete(object_type).where(
            object_type.c.domain_name == domain_name, object_type.c.name == name
        )
    )
    # An implicit type can be deleted to drop its data even when it was never listed.
    if result.rowcount == 0 and find_template(name) is None:
        raise NotFound(f"The object type {name} does not exist in domain {domain_name}.")
    delete_tags(tx, resource_arn=object_type_arn(tx, domain_name, name))
    for hook in on_object_type_deleted:
        hook(tx, domain_name, name)
    # After the hooks, which took the type's own key rows away: the others are re-digested.
    _renormalise(
        tx, domain_name, _changed_key_types(before, _in_force(_domain_types(tx, domain_name)))
    )
