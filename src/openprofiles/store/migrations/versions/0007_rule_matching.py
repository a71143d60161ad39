"""identity resolution: rule-match digests

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rule_match_digest",
        sa.Column("domain_name", sa.String(length=64), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("digest", sa.LargeBinary(), nullable=False),
        sa.Column("profile_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("domain_name", "level", "digest", "profile_id"),
    )
    with op.batch_alter_table("rule_match_digest", schema=None) as batch_op:
        batch_op.create_index(
            "ix_rule_match_digest_profile", ["domain_name", "profile_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("rule_match_digest", schema=None) as batch_op:
        batch_op.drop_index("ix_rule_match_digest_profile")
    op.drop_table("rule_match_digest")
