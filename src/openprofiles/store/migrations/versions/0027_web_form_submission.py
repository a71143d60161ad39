"""web_form_submission: a profile-creation form creates one profile, however often it is sent

The agent pages' create form sent twice (a double click, Back and resend) created two profiles
of one customer. The form now carries a one-time token; this table keeps its digest with the
profile it created, for a day.

Revision ID: 0027
Revises: 0026
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_form_submission",
        sa.Column("domain_name", sa.String(length=64), nullable=False),
        sa.Column("submission_digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("profile_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("domain_name", "submission_digest"),
    )
    op.create_index("ix_web_form_submission_created", "web_form_submission", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_web_form_submission_created", table_name="web_form_submission")
    op.drop_table("web_form_submission")
