"""flow_run: an index of the RUNNING runs of a flow

A run claims its flow (flows.service._claim) after looking for the flow's RUNNING run; runs
are never pruned, so without an index that lookup read every run of every flow (tens of
milliseconds at a few hundred thousand runs, under the lock of the flow's integration row).
Partial: only the few RUNNING runs are indexed.

Revision ID: 0037
Revises: 0036
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0037"
down_revision = "0036"
branch_labels = None
depends_on = None

RUNNING = sa.text("status = 'RUNNING'")


def upgrade() -> None:
    op.create_index(
        "ix_flow_run_running",
        "flow_run",
        ["domain_name", "flow_name"],
        sqlite_where=RUNNING,
        postgresql_where=RUNNING,
    )


def downgrade() -> None:
    op.drop_index("ix_flow_run_running", table_name="flow_run")
