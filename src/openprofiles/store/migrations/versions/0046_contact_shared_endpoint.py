"""contact_shared_endpoint: the screen pop of a caller several profiles share

A contact-start event whose phone number (voice) or email address (chat) several profiles share
is rejected by CTR-NoInferred and CTR-AutoAssociateOnly, and nothing of it was kept: the agent's
screen pop said the contact was unknown. Its endpoint is now kept, sealed under the domain's
key, for the contact's live period (contacts.shared_endpoint), so the screen pop shows the
profiles that share it.

Revision ID: 0046
Revises: 0045
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0046"
down_revision = "0045"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "contact_shared_endpoint",
        sa.Column("domain_name", sa.String(length=64), nullable=False),
        sa.Column("contact_digest", sa.LargeBinary(length=16), nullable=False),
        sa.Column("key_name", sa.String(length=255), nullable=False),
        sa.Column("endpoint_digest", sa.LargeBinary(length=16), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("kept_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("domain_name", "contact_digest"),
    )
    op.create_index("ix_contact_shared_endpoint_kept", "contact_shared_endpoint", ["kept_at"])


def downgrade() -> None:
    op.drop_index("ix_contact_shared_endpoint_kept", table_name="contact_shared_endpoint")
    op.drop_table("contact_shared_endpoint")
