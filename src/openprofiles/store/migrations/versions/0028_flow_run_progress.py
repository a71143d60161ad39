"""flow_run.progress_at: a run's progress after every batch, and a stopped run told apart

A run killed with its process stayed RUNNING for ever, and a run over one large item showed no
progress until the item ended (counts were stored per item). Counts are now stored with every
batch, with when (`progress_at`); a RUNNING run with no progress for 15 minutes is shown FAILED,
saying it stopped. Runs started before stay NULL: their start counts.

Revision ID: 0028
Revises: 0027
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("flow_run") as batch:
        batch.add_column(sa.Column("progress_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("flow_run") as batch:
        batch.drop_column("progress_at")
