"""identity resolution: the merge log

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "merge_log",
        sa.Column("domain_name", sa.String(length=64), nullable=False),
        sa.Column("merge_id", sa.String(length=32), nullable=False),
        sa.Column("main_profile_id", sa.String(length=32), nullable=False),
        sa.Column("merged_profile_ids", sa.JSON(), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("undone_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("undo_sealed", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("domain_name", "merge_id"),
    )
    with op.batch_alter_table("merge_log", schema=None) as batch_op:
        batch_op.create_index("ix_merge_log_created", ["domain_name", "created_at"], unique=False)
        batch_op.create_index("ix_merge_log_main", ["domain_name", "main_profile_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("merge_log", schema=None) as batch_op:
        batch_op.drop_index("ix_merge_log_main")
        batch_op.drop_index("ix_merge_log_created")
    op.drop_table("merge_log")
