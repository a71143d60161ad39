"""integrations, contact records, flows and stream checkpoints

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "integration",
        sa.Column("domain_name", sa.String(length=64), nullable=False),
        sa.Column("uri", sa.String(length=255), nullable=False),
        sa.Column("object_type_name", sa.String(length=255), nullable=True),
        sa.Column("object_type_names", sa.JSON(), nullable=True),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("instance_arn", sa.String(length=255), nullable=True),
        sa.Column("flow_name", sa.String(length=256), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("domain_name", "uri"),
        sa.UniqueConstraint("instance_arn", name="uq_integration_instance_arn"),
    )
    with op.batch_alter_table("integration", schema=None) as batch_op:
        batch_op.create_index("ix_integration_uri", ["uri"], unique=False)

    op.create_table(
        "contact_record",
        sa.Column("domain_name", sa.String(length=64), nullable=False),
        sa.Column("contact_digest", sa.LargeBinary(length=16), nullable=False),
        sa.Column("last_update", sa.DateTime(timezone=True), nullable=True),
        sa.Column("partial", sa.Boolean(), nullable=False),
        sa.Column("object_type_name", sa.String(length=255), nullable=False),
        sa.Column("profile_id", sa.String(length=32), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("domain_name", "contact_digest"),
    )

    op.create_table(
        "unrouted_contact_record",
        sa.Column("message_id", sa.String(length=32), nullable=False),
        sa.Column("instance_arn", sa.String(length=255), nullable=True),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("message_id"),
    )
    with op.batch_alter_table("unrouted_contact_record", schema=None) as batch_op:
        batch_op.create_index(
            "ix_unrouted_contact_record_instance", ["instance_arn", "created_at"], unique=False
        )

    op.create_table(
        "flow_run",
        sa.Column("domain_name", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("flow_name", sa.String(length=256), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("items_read", sa.Integer(), nullable=False),
        sa.Column("records_read", sa.Integer(), nullable=False),
        sa.Column("records_ingested", sa.Integer(), nullable=False),
        sa.Column("records_filtered", sa.Integer(), nullable=False),
        sa.Column("records_dead_lettered", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("domain_name", "run_id"),
    )
    with op.batch_alter_table("flow_run", schema=None) as batch_op:
        batch_op.create_index(
            "ix_flow_run_flow", ["domain_name", "flow_name", "started_at"], unique=False
        )

    op.create_table(
        "flow_item",
        sa.Column("domain_name", sa.String(length=64), nullable=False),
        sa.Column("flow_name", sa.String(length=256), nullable=False),
        sa.Column("item_key", sa.String(length=1024), nullable=False),
        sa.Column("version", sa.String(length=255), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("domain_name", "flow_name", "item_key"),
    )

    op.create_table(
        "stream_checkpoint",
        sa.Column("stream_name", sa.String(length=255), nullable=False),
        sa.Column("shard_id", sa.String(length=255), nullable=False),
        sa.Column("sequence_number", sa.String(length=128), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("stream_name", "shard_id"),
    )


def downgrade() -> None:
    op.drop_table("stream_checkpoint")
    op.drop_table("flow_item")
    with op.batch_alter_table("flow_run", schema=None) as batch_op:
        batch_op.drop_index("ix_flow_run_flow")
    op.drop_table("flow_run")
    with op.batch_alter_table("unrouted_contact_record", schema=None) as batch_op:
        batch_op.drop_index("ix_unrouted_contact_record_instance")
    op.drop_table("unrouted_contact_record")
    op.drop_table("contact_record")
    with op.batch_alter_table("integration", schema=None) as batch_op:
        batch_op.drop_index("ix_integration_uri")
    op.drop_table("integration")
