"""identity resolution: match features stored at write time, explanations in a compact form

`ml_feature` holds, per live profile of a domain with Matching enabled, the normalised values a
probabilistic matching job compares, sealed; a foreign key deletes a row with its profile. No
row is written here: the first job after the upgrade computes and stores the missing ones.
`identity_job.explanation_levels` holds a job's comparison-level combinations, which its
groups' explanations name by position; groups stored before keep their full explanations.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ml_feature",
        sa.Column("domain_name", sa.String(64), primary_key=True),
        sa.Column("profile_id", sa.String(32), primary_key=True),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.ForeignKeyConstraint(
            ["domain_name", "profile_id"],
            ["profile.domain_name", "profile.profile_id"],
            ondelete="CASCADE",
        ),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("identity_job") as batch:
        batch.add_column(sa.Column("explanation_levels", sa.JSON, nullable=True))


def downgrade() -> None:
    # Groups stored in the compact form cannot be explained without the job's levels.
    op.execute("DELETE FROM ml_match_profile")
    op.execute("DELETE FROM ml_match")
    with op.batch_alter_table("identity_job") as batch:
        batch.drop_column("explanation_levels")
    op.drop_table("ml_feature")
