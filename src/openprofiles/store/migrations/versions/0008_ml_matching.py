"""identity resolution: probabilistic matching jobs and their match groups

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identity_job",
        sa.Column("domain_name", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("message", sa.String(length=1000), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("profiles_reviewed", sa.Integer(), nullable=False),
        sa.Column("matches_found", sa.Integer(), nullable=False),
        sa.Column("merges_done", sa.Integer(), nullable=False),
        sa.Column("auto_merging", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("domain_name", "job_id"),
    )
    op.create_index(
        "ix_identity_job_created", "identity_job", ["domain_name", "created_at"], unique=False
    )
    op.create_table(
        "ml_match",
        sa.Column("domain_name", sa.String(length=64), nullable=False),
        sa.Column("match_id", sa.String(length=32), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("explanation", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("domain_name", "match_id"),
    )
    op.create_index("ix_ml_match_job", "ml_match", ["domain_name", "job_id"], unique=False)
    op.create_table(
        "ml_match_profile",
        sa.Column("domain_name", sa.String(length=64), nullable=False),
        sa.Column("match_id", sa.String(length=32), nullable=False),
        sa.Column("profile_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("domain_name", "match_id", "profile_id"),
    )
    op.create_index(
        "ix_ml_match_profile_profile",
        "ml_match_profile",
        ["domain_name", "profile_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_ml_match_profile_profile", table_name="ml_match_profile")
    op.drop_table("ml_match_profile")
    op.drop_index("ix_ml_match_job", table_name="ml_match")
    op.drop_table("ml_match")
    op.drop_index("ix_identity_job_created", table_name="identity_job")
    op.drop_table("identity_job")
