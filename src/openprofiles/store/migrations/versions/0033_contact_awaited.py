"""contact_awaited: kept contact records waiting for a contact they continue

Contact records come in no order: a transfer leg or a task without a customer endpoint could
come before the contact it continues (another request, another Kinesis shard) and was
dead-lettered as placed on no profile, a reason false a moment later, with nothing to retry it.
Such a record is now kept in `unrouted_contact_record`, with a row here per contact that would
place it (its blind-index digest in the domain it was routed to); the kept-records sweep sends
it on once one of them is applied or linked, or after a while (contacts.links).

Revision ID: 0033
Revises: 0032
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0033"
down_revision = "0032"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "contact_awaited",
        sa.Column("domain_name", sa.String(64), primary_key=True),
        sa.Column("contact_digest", sa.LargeBinary(16), primary_key=True),
        sa.Column("message_id", sa.String(32), primary_key=True),
        sa.ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["message_id"], ["unrouted_contact_record.message_id"], ondelete="CASCADE"
        ),
    )
    op.create_index("ix_contact_awaited_message", "contact_awaited", ["message_id"])


def downgrade() -> None:
    op.drop_index("ix_contact_awaited_message", table_name="contact_awaited")
    op.drop_table("contact_awaited")
