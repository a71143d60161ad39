"""profile_object.contact_start: contact records listed newest contact first, by an index

A contact record's history is ordered by when the contact started (its InitiationTimestamp), not
when its record was stored (records arrive late and are replaced by updates). The start was only
in the sealed object, so every listing opened every contact record of the profile to sort them.
It is now kept in clear beside the other times of the row (created_at, updated_at, expires_at),
and `ix_profile_object_contact` (partial: rows with a start only) lists a profile's contacts of
a type newest first, a page at a time, without opening any.

The column is filled for the stored objects of the domains' contact-record types (CTR and the
object types of instance integrations, as contacts.history.contact_object_types says) that carry
an InitiationTimestamp: reading it needs the domains' data keys, handed over by store.migrate
(`keys`), as for 0018. A key that cannot be used stops the upgrade, and nothing changes until it
can be, or the domain is dropped (`openprofiles domains drop-unreadable`: the message,
domains.unreadable.refusal, names every domain whose key cannot be used).

Revision ID: 0022
Revises: 0021
Create Date: 2026-11-29
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

# As objects.service seals objects and contacts.history names the default contact type (a
# migration keeps its own copy: it must go on reading what it wrote when the code moves on).
OBJECT_TABLE = "profile_object"
DEFAULT_CONTACT_TYPE = "CTR"
CONTACT_INDEX = "ix_profile_object_contact"
CONTACT_INDEX_COLUMNS = [
    "domain_name",
    "profile_id",
    "object_type_name",
    "contact_start",
    "unique_digest",
]
BATCH = 500

_domain = sa.table("domain", sa.column("name"), sa.column("key_id"), sa.column("wrapped_key"))
_integration = sa.table(
    "integration",
    sa.column("domain_name"),
    sa.column("object_type_name"),
    sa.column("instance_arn"),
)
_object = sa.table(
    "profile_object",
    sa.column("domain_name"),
    sa.column("object_type_name"),
    sa.column("unique_digest", sa.LargeBinary),
    sa.column("sealed"),
    sa.column("contact_start", sa.DateTime(timezone=True)),
)


def _ciphers(conn: sa.Connection) -> Callable[[str], Any]:
    """The cipher of a domain, its data key unwrapped on first use."""
    keys = context.config.attributes.get("keys")
    cache: dict[str, Any] = {}

    def cipher(domain_name: str) -> Any:
        if domain_name not in cache:
            if keys is None:
                raise RuntimeError(
                    "Migration 0022 reads the start of stored contact records with the domains' "
                    "keys: run it through openprofiles.store.migrate with the key manager "
                    "(keys=...)."
                )
            from openprofiles.crypto.errors import KeyUnusable
            from openprofiles.domains.unreadable import refusal

            row = conn.execute(
                sa.select(_domain.c.key_id, _domain.c.wrapped_key).where(
                    _domain.c.name == domain_name
                )
            ).one()
            try:
                cache[domain_name] = keys.cipher_for(
                    domain_name, row.key_id, bytes(row.wrapped_key)
                )
            except KeyUnusable as exc:
                raise refusal(
                    conn,
                    keys,
                    needs=(
                        "reads the start of the contact records of domain "
                        f"{domain_name} with its key"
                    ),
                    domain_name=domain_name,
                    error=exc,
                ) from exc
        return cache[domain_name]

    return cipher


def _start(object_json: str) -> datetime | None:
    """The record's InitiationTimestamp in UTC, as contacts.records.contact_start reads it."""
    try:
        value = json.loads(object_json).get("InitiationTimestamp")
        parsed = datetime.fromisoformat(value.strip())
    except (AttributeError, TypeError, ValueError, OverflowError):
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _contact_types(conn: sa.Connection) -> set[tuple[str, str]]:
    """(domain, object type) of every domain's contact-record types."""
    types = {
        (r.domain_name, r.object_type_name)
        for r in conn.execute(
            sa.select(_integration.c.domain_name, _integration.c.object_type_name).where(
                _integration.c.instance_arn.is_not(None),
                _integration.c.object_type_name.is_not(None),
            )
        )
    }
    types.update(
        (name, DEFAULT_CONTACT_TYPE) for name in conn.execute(sa.select(_domain.c.name)).scalars()
    )
    return types


def upgrade() -> None:
    with op.batch_alter_table("profile_object") as batch:
        batch.add_column(sa.Column("contact_start", sa.DateTime(timezone=True), nullable=True))
    conn = op.get_bind()
    cipher = _ciphers(conn)
    for domain_name, type_name in sorted(_contact_types(conn)):
        after = b""
        while True:
            # A batch at a time: the sealed objects of a domain need not fit in memory at once.
            rows = conn.execute(
                sa.select(_object.c.unique_digest, _object.c.sealed)
                .where(
                    _object.c.domain_name == domain_name,
                    _object.c.object_type_name == type_name,
                    _object.c.unique_digest > after,
                )
                .order_by(_object.c.unique_digest)
                .limit(BATCH)
            ).all()
            if not rows:
                break
            after = bytes(rows[-1].unique_digest)
            starts = []
            for row in rows:
                digest = bytes(row.unique_digest)
                opened = cipher(domain_name).open_record(
                    OBJECT_TABLE, f"{type_name}/{digest.hex()}", bytes(row.sealed)
                )
                start = _start(str(opened["object"]))
                if start is not None:
                    starts.append({"d": domain_name, "t": type_name, "u": digest, "s": start})
            if starts:
                conn.execute(
                    sa.update(_object)
                    .where(
                        _object.c.domain_name == sa.bindparam("d"),
                        _object.c.object_type_name == sa.bindparam("t"),
                        _object.c.unique_digest == sa.bindparam("u"),
                    )
                    .values(contact_start=sa.bindparam("s")),
                    starts,
                )
    op.create_index(
        CONTACT_INDEX,
        "profile_object",
        CONTACT_INDEX_COLUMNS,
        sqlite_where=sa.text("contact_start IS NOT NULL"),
        postgresql_where=sa.text("contact_start IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(CONTACT_INDEX, table_name="profile_object")
    if op.get_bind().dialect.name == "sqlite":
        # SQLite's own DROP COLUMN (3.35 and later), not a batch rebuild: the rebuild drops the
        # old table, and with foreign keys on that deletes every profile_object_key row (ON
        # DELETE CASCADE), leaving objects no key finds.
        op.execute("ALTER TABLE profile_object DROP COLUMN contact_start")
    else:
        op.drop_column("profile_object", "contact_start")
