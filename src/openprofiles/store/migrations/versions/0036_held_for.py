"""unrouted_contact_record.held_for: the domain a held contact record waits for

A stream holds a record while the domain it goes to cannot take it: its instance's domain,
whose key cannot be used, or a domain the instance was moved away from, whose KMS does not
answer (the record may update a contact there). The sweep sent held records on only when the
instance's own domain could take them, so one held for a left domain waited on the new
domain's key for nothing, and DeleteDomain left the records held for it, which then flowed into
the next domain the instance was associated with. Records held before this revision have no
domain here and are sent on as before.

Revision ID: 0036
Revises: 0035
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0036"
down_revision = "0035"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("unrouted_contact_record") as batch:
        batch.add_column(sa.Column("held_for", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("unrouted_contact_record") as batch:
        batch.drop_column("held_for")
