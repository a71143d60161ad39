"""identity resolution: a job's heartbeat, and the slot of a job whose process stopped is free

A running job writes `heartbeat_at`; a scheduler's check marks a job whose heartbeat is older
than the lease FAILED and sets `lease_expired_at`. The unique (domain, slot) index leaves such
a job out, so its JobSchedule slot can be claimed again. Existing jobs take their last update
as their heartbeat: one left unfinished by a stopped process is found dead at the next check.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

LIVE_SLOT = sa.text("lease_expired_at IS NULL")


def upgrade() -> None:
    op.drop_index("ux_identity_job_slot", table_name="identity_job")
    with op.batch_alter_table("identity_job") as batch:
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("lease_expired_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE identity_job SET heartbeat_at = updated_at")
    with op.batch_alter_table("identity_job") as batch:
        batch.alter_column("heartbeat_at", existing_type=sa.DateTime(timezone=True), nullable=False)
    op.create_index("ix_identity_job_status", "identity_job", ["status", "heartbeat_at"])
    op.create_index(
        "ux_identity_job_slot",
        "identity_job",
        ["domain_name", "scheduled_for"],
        unique=True,
        sqlite_where=LIVE_SLOT,
        postgresql_where=LIVE_SLOT,
    )


def downgrade() -> None:
    op.drop_index("ux_identity_job_slot", table_name="identity_job")
    op.drop_index("ix_identity_job_status", table_name="identity_job")
    # A slot run again after its job's lease expired has two rows; the dead one lets go of it.
    op.execute("UPDATE identity_job SET scheduled_for = NULL WHERE lease_expired_at IS NOT NULL")
    with op.batch_alter_table("identity_job") as batch:
        batch.drop_column("lease_expired_at")
        batch.drop_column("heartbeat_at")
    op.create_index(
        "ux_identity_job_slot", "identity_job", ["domain_name", "scheduled_for"], unique=True
    )
