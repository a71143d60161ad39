"""dead letters and kept contact records: a record read again is kept once

Re-running `openprofiles ingest FILE` (safe for the records, whose UNIQUE keys replace
themselves), or a flow reading a file again after it grew, wrote a second dead letter for every
rejected line, and a second kept copy of every contact record no domain could take.

* `dlq_message.repeat_digest`: for a record with an origin (a file's or a flow's), a keyed digest
  of (object type, origin, record) under the domain's key; unique per domain.
* `unrouted_contact_record.content_digest`: a keyed digest of the record under the system key;
  unique.

Rows stored before stay NULL (both indexes allow any number of NULLs): they are not matched.

Revision ID: 0025
Revises: 0024
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dlq_message") as batch:
        batch.add_column(sa.Column("repeat_digest", sa.LargeBinary(length=16), nullable=True))
    op.create_index(
        "ux_dlq_message_repeat", "dlq_message", ["domain_name", "repeat_digest"], unique=True
    )
    with op.batch_alter_table("unrouted_contact_record") as batch:
        batch.add_column(sa.Column("content_digest", sa.LargeBinary(length=16), nullable=True))
    op.create_index(
        "ux_unrouted_contact_record_content",
        "unrouted_contact_record",
        ["content_digest"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("ux_unrouted_contact_record_content", table_name="unrouted_contact_record")
    with op.batch_alter_table("unrouted_contact_record") as batch:
        batch.drop_column("content_digest")
    op.drop_index("ux_dlq_message_repeat", table_name="dlq_message")
    with op.batch_alter_table("dlq_message") as batch:
        batch.drop_column("repeat_digest")
