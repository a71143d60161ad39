"""indexes that let GetDomain count a domain's live profiles and objects without a table scan

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_profile_live", "profile", ["domain_name", "merged_into"])
    op.create_index(
        "ix_profile_object_usage", "profile_object", ["domain_name", "expires_at", "size"]
    )


def downgrade() -> None:
    op.drop_index("ix_profile_object_usage", table_name="profile_object")
    op.drop_index("ix_profile_live", table_name="profile")
