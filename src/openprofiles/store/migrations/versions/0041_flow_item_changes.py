"""integration.flow_item_changes: a count of the changes of a flow's checkpoints

`flows watch` checks every Event flow every few seconds, and each check read every flow_item row
of the flow (about 32 ms at 17,000 items) to look its listed items up, even when nothing had
changed since the last check. The count is bumped in the transaction of every change of the
flow's flow_item rows (flows.service), and by every other update of the integration's row (its
column's `onupdate`: a rename deletes the checkpoints in that update's transaction), so a check
that finds it, on the same integration row, as it last read it reuses the checkpoints it read
then (flows.check_cache): one row read instead of all of them.

Rows before this revision start at 0: a process that cached checkpoints under the code before it
cached none under a count, so none is taken for current. The downgrade drops the column.

Revision ID: 0041
Revises: 0040
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0041"
down_revision = "0040"
branch_labels = None
depends_on = None

COLUMN = "flow_item_changes"


def upgrade() -> None:
    # ADD COLUMN with a constant default: in place on both databases (no table rebuild).
    op.add_column(
        "integration", sa.Column(COLUMN, sa.BigInteger(), nullable=False, server_default="0")
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite's own DROP COLUMN, not a batch rebuild, as 0030 does: a rebuild drops and
        # copies the table, which nothing here needs.
        op.execute(f"ALTER TABLE integration DROP COLUMN {COLUMN}")
    else:
        op.drop_column("integration", COLUMN)
