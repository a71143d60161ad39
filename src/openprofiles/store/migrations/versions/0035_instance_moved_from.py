"""instance_moved_from: the domains a contact-centre instance was moved away from

A move (`openprofiles instances associate --move`, PutIntegration) moves no profiles: what comes
next goes to the new domain. But an update of a contact applied in the old domain before the
move (the same ContactId, a later LastUpdateTimestamp) went to the new domain as a new contact,
leaving a stale copy on the old profile. A row here per domain the instance left lets the intake
send such an update where its contact is (contacts.service); the row goes when the instance
comes back, and with its domain.

Revision ID: 0035
Revises: 0034
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0035"
down_revision = "0034"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instance_moved_from",
        sa.Column("domain_name", sa.String(64), primary_key=True),
        sa.Column("instance_arn", sa.String(255), primary_key=True),
        sa.Column("moved_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
    )
    op.create_index("ix_instance_moved_from_instance", "instance_moved_from", ["instance_arn"])


def downgrade() -> None:
    op.drop_index("ix_instance_moved_from_instance", table_name="instance_moved_from")
    op.drop_table("instance_moved_from")
