"""profile_object.write_order, and ix_profile_object_usage by profile

write_order: the objects written in one transaction share their updated_at (the transaction's
clock reading), and ties were broken by the UNIQUE digest, which is random: a batch of 101
objects on a full profile evicted whichever of them had the smallest digest, not the first
written (spec §1.9). Each write now numbers its rows in the order they were written within the
transaction, and eviction and ListProfileObjects order by (updated_at, write_order). Rows
written before keep 0: their ties stay broken by digest, as before.

ix_profile_object_usage becomes (domain_name, profile_id, expires_at, size): GetDomain's
MeteringProfileCount counts each profile's live objects (a profile with more than 100 counts
as two, ...), which the old (domain_name, expires_at, size) index could not group by profile.
The new one serves ObjectCount, TotalSize and the metering in one pass over the index, without
reading a table row, and costs each write no more than the index it replaces.

Revision ID: 0030
Revises: 0029
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None

USAGE_INDEX = "ix_profile_object_usage"


def upgrade() -> None:
    with op.batch_alter_table("profile_object") as batch:
        batch.add_column(sa.Column("write_order", sa.Integer(), nullable=False, server_default="0"))
    op.drop_index(USAGE_INDEX, table_name="profile_object")
    op.create_index(
        USAGE_INDEX, "profile_object", ["domain_name", "profile_id", "expires_at", "size"]
    )


def downgrade() -> None:
    op.drop_index(USAGE_INDEX, table_name="profile_object")
    op.create_index(USAGE_INDEX, "profile_object", ["domain_name", "expires_at", "size"])
    if op.get_bind().dialect.name == "sqlite":
        # SQLite's own DROP COLUMN, not a batch rebuild: the rebuild drops the old table, and
        # with foreign keys on that deletes every profile_object_key row (ON DELETE CASCADE),
        # as migration 0022 explains.
        op.execute("ALTER TABLE profile_object DROP COLUMN write_order")
    else:
        op.drop_column("profile_object", "write_order")
