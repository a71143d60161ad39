"""web_credential_form: the API credential form creates one key, however often it is sent

The admin page's "Create credential" was answered directly (so the secret is shown once and
never stored), and Reload with "resend" created a second live key without a word. The form now
carries a one-time token; this table keeps its digest with the access key id it created, for a
day (ui.submissions).

Revision ID: 0045
Revises: 0044
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0045"
down_revision = "0044"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_credential_form",
        sa.Column("submission_digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("access_key_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("submission_digest"),
    )
    op.create_index("ix_web_credential_form_created", "web_credential_form", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_web_credential_form_created", table_name="web_credential_form")
    op.drop_table("web_credential_form")
