"""stream_checkpoint.stream_arn / stream_created_at: a checkpoint knows which stream it is of

Checkpoints were keyed by the stream's name only: a stream deleted and created again under the
same name was read after a sequence number of the old one (records skipped, or GetShardIterator
refused). A checkpoint now carries the stream's ARN and creation time (DescribeStreamSummary),
and one of another stream is dropped. Checkpoints saved before stay NULL; the connector fills
them in on first use (connectors.kinesis).

Revision ID: 0029
Revises: 0028
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("stream_checkpoint") as batch:
        batch.add_column(sa.Column("stream_arn", sa.String(2048), nullable=True))
        batch.add_column(sa.Column("stream_created_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("stream_checkpoint") as batch:
        batch.drop_column("stream_created_at")
        batch.drop_column("stream_arn")
