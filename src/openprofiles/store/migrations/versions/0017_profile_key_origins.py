"""profile keys: one row per source that backs a key value, and markers no type name can take

`origin` joins `profile_key`'s primary key. Before, a key value had one row, owned by whichever
source wrote it first; the others were ignored (ON CONFLICT DO NOTHING). Deleting that source
then removed the value although another source still backed it: deleting object type A took a
key that type B's objects (or the profile's own fields) also gave, the value stopped finding
the profile, and B's next object created a second one. Now each source keeps its own row.

The markers "profile", "explicit" and "merge" become "@profile", "@explicit" and "@merge": an
object type may be named "profile", and deleting it deleted every derived key of the domain.
Rows written by a type that was really named "profile", "explicit" or "merge" cannot be told
from the markers' rows; they become the markers' too (they were treated as such already).

On SQLite the table is rebuilt (a primary key cannot be altered there); on PostgreSQL the
primary key constraint is replaced in place.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

_MARKERS = {"profile": "@profile", "explicit": "@explicit", "merge": "@merge"}
_COLUMNS = "domain_name, key_name, digest, profile_id, origin, value_sealed"


def _rename_markers(mapping: dict[str, str]) -> None:
    for old, new in mapping.items():
        op.execute(
            sa.text("UPDATE profile_key SET origin = :new WHERE origin = :old").bindparams(
                old=old, new=new
            )
        )


def _sqlite_rebuild(key: list[str], select_rows: str) -> None:
    op.create_table(
        "profile_key_new",
        sa.Column("domain_name", sa.String(length=64), nullable=False),
        sa.Column("key_name", sa.String(length=255), nullable=False),
        sa.Column("digest", sa.LargeBinary(length=16), nullable=False),
        sa.Column("profile_id", sa.String(length=32), nullable=False),
        sa.Column("origin", sa.String(length=255), nullable=False),
        sa.Column("value_sealed", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["domain_name", "profile_id"],
            ["profile.domain_name", "profile.profile_id"],
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(*key),
    )
    # In key order: each row lands after the previous one.
    op.execute(f"INSERT INTO profile_key_new ({_COLUMNS}) {select_rows} ORDER BY {', '.join(key)}")
    op.drop_index("ix_profile_key_profile", table_name="profile_key")
    op.drop_table("profile_key")
    op.rename_table("profile_key_new", "profile_key")
    op.create_index("ix_profile_key_profile", "profile_key", ["domain_name", "profile_id"])


_OLD_KEY = ["domain_name", "key_name", "digest", "profile_id"]
_NEW_KEY = [*_OLD_KEY, "origin"]


def upgrade() -> None:
    _rename_markers(_MARKERS)
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_rebuild(_NEW_KEY, f"SELECT {_COLUMNS} FROM profile_key")
    else:
        op.drop_constraint("profile_key_pkey", "profile_key", type_="primary")
        op.create_primary_key("profile_key_pkey", "profile_key", _NEW_KEY)


def downgrade() -> None:
    # One row per value again: keep the row of the smallest origin (markers sort first).
    keep = (
        f"SELECT {_COLUMNS} FROM profile_key AS k WHERE origin = (SELECT MIN(origin) FROM "
        "profile_key AS o WHERE o.domain_name = k.domain_name AND o.key_name = k.key_name "
        "AND o.digest = k.digest AND o.profile_id = k.profile_id)"
    )
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_rebuild(_OLD_KEY, keep)
    else:
        op.execute(
            "DELETE FROM profile_key AS k WHERE origin <> (SELECT MIN(origin) FROM profile_key "
            "AS o WHERE o.domain_name = k.domain_name AND o.key_name = k.key_name "
            "AND o.digest = k.digest AND o.profile_id = k.profile_id)"
        )
        op.drop_constraint("profile_key_pkey", "profile_key", type_="primary")
        op.create_primary_key("profile_key_pkey", "profile_key", _OLD_KEY)
    _rename_markers({new: old for old, new in _MARKERS.items()})
