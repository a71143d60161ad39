"""What an erased contact record takes with it: its `_ctrContactId` and its delivery.

A contact record's object names the contact by `_ctrContactId` (the templates' UNIQUE key),
indexed on its profile under the object's type, and `contact_record` remembers which version of
the contact was applied, so that a record delivered again (at least once, spec §3.1) is
answered as a repeat. Once the object is deleted (DeleteProfileObject, expiry, eviction) nothing
of the record is stored: the key would go on finding the customer by an erased contact, and the
row would answer a resend as a repeat while the record is gone. `forget_deleted_contacts`
(objects.service `register_objects_deleted`) takes both away, so the record delivered again is
applied as a first one. Other keys the object indexed stay, as any deleted object's do
(objects.service `forget_object_keys`).

An object of a type of one's own whose keys lack `_ctrContactId` (contacts.links: its own keys
say what finds it) carried nothing that named its contact, so its deletion kept the delivery:
the contact delivered again was answered as a repeat, changing nothing, with its record gone,
and the row stayed, a trace of the erased record, until its profile or type was deleted. Such
an object carries its contact's `_ctrContactId` among its object keys (`carry_contacts`: a
`profile_object_key` row, as a template type's object has, and no key on its profile), so its
deletion forgets its delivery too. (Objects stored before it carry none.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, delete, literal, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from openprofiles.contacts.links import CONTACT_KEY
from openprofiles.context import Tx
from openprofiles.objects.service import (
    DeletedObject,
    forget_object_keys,
    register_objects_deleted,
)
from openprofiles.store.in_lists import in_chunks
from openprofiles.store.schema import contact_record, profile_object, profile_object_key


def forget_deleted_contacts(tx: Tx, deleted: Sequence[DeletedObject]) -> None:
    """For each deleted object's `_ctrContactId`: the key's row of the object's type on its
    profile, and the contact's delivery applied as that type, unless another object of the type
    still carries the contact id (a type of one's own whose UNIQUE key is another).

    The delivery is matched by contact and type, not by profile: `contact_record.profile_id` is
    the profile the record was applied to, which a merge since may have merged away (the object
    moved to the survivor with its keys; the row still names the merged id)."""
    contacts: dict[tuple[str, str], set[tuple[str, str, bytes]]] = {}
    for obj in deleted:
        for name, digest in obj.keys:
            if name == CONTACT_KEY:
                contacts.setdefault((obj.domain_name, obj.object_type_name), set()).add(
                    (obj.profile_id, name, digest)
                )
    for (domain_name, type_name), keys in contacts.items():
        forget_object_keys(tx, domain_name=domain_name, object_type_name=type_name, keys=keys)
        for chunk in in_chunks(sorted({digest for _, _, digest in keys})):
            still = {
                bytes(d)
                for d in tx.conn.execute(
                    select(profile_object_key.c.digest).where(
                        profile_object_key.c.domain_name == domain_name,
                        profile_object_key.c.object_type_name == type_name,
                        profile_object_key.c.key_name == CONTACT_KEY,
                        profile_object_key.c.digest.in_(chunk),
                    )
                ).scalars()
            }
            gone = [d for d in chunk if d not in still]
            tx.erased_contacts.update((domain_name, type_name, d) for d in gone)
            if gone:
                tx.conn.execute(
                    delete(contact_record).where(
                        contact_record.c.domain_name == domain_name,
                        contact_record.c.contact_digest.in_(gone),
                        contact_record.c.object_type_name == type_name,
                    )
                )


register_objects_deleted(forget_deleted_contacts)


def _carry(statement: Any) -> Any:
    # From the object's own row: one a later record of the batch evicted (MaxProfileObjectCount)
    # carries nothing, and the foreign key is kept.
    stored = select(
        profile_object.c.domain_name,
        profile_object.c.object_type_name,
        profile_object.c.unique_digest,
        literal(CONTACT_KEY),
        bindparam("g"),
    ).where(
        profile_object.c.domain_name == bindparam("d"),
        profile_object.c.object_type_name == bindparam("t"),
        profile_object.c.unique_digest == bindparam("u"),
    )
    names = ["domain_name", "object_type_name", "unique_digest", "key_name", "digest"]
    return statement.from_select(names, stored).on_conflict_do_nothing()


# Built once (as contacts.service's statements on the hot path).
_CARRY = {
    "sqlite": _carry(sqlite_insert(profile_object_key)),
    "postgresql": _carry(pg_insert(profile_object_key)),
}


def carry_contacts(
    tx: Tx, domain_name: str, object_type_name: str, carried: Sequence[tuple[bytes, bytes]]
) -> None:
    """Have objects of a type whose keys lack `_ctrContactId` (unique digest, contact digest)
    carry their contact's digest among their object keys (see the module), after the pipeline
    wrote them: it rewrites an object's keys as it updates the object."""
    if carried:
        tx.conn.execute(
            _CARRY[tx.conn.dialect.name],
            [{"d": domain_name, "t": object_type_name, "u": u, "g": g} for u, g in carried],
        )
