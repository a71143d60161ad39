"""identity resolution: the JobSchedule slot of a scheduled job, unique per domain

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("identity_job") as batch:
        batch.add_column(sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ux_identity_job_slot", "identity_job", ["domain_name", "scheduled_for"], unique=True
    )


def downgrade() -> None:
    op.drop_index("ux_identity_job_slot", table_name="identity_job")
    with op.batch_alter_table("identity_job") as batch:
        batch.drop_column("scheduled_for")
