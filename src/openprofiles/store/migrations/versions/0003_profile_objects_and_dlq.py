"""profile objects and the dead-letter store

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "profile_object",
        sa.Column("domain_name", sa.String(length=64), nullable=False),
        sa.Column("object_type_name", sa.String(length=255), nullable=False),
        sa.Column("unique_digest", sa.LargeBinary(length=16), nullable=False),
        sa.Column("profile_id", sa.String(length=32), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source_last_updated", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["domain_name", "profile_id"],
            ["profile.domain_name", "profile.profile_id"],
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("domain_name", "object_type_name", "unique_digest"),
    )
    with op.batch_alter_table("profile_object", schema=None) as batch_op:
        batch_op.create_index(
            "ix_profile_object_profile",
            ["domain_name", "profile_id", "object_type_name", "updated_at"],
            unique=False,
        )
        batch_op.create_index("ix_profile_object_expires", ["expires_at"], unique=False)

    op.create_table(
        "profile_object_key",
        sa.Column("domain_name", sa.String(length=64), nullable=False),
        sa.Column("object_type_name", sa.String(length=255), nullable=False),
        sa.Column("unique_digest", sa.LargeBinary(length=16), nullable=False),
        sa.Column("key_name", sa.String(length=255), nullable=False),
        sa.Column("digest", sa.LargeBinary(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["domain_name", "object_type_name", "unique_digest"],
            [
                "profile_object.domain_name",
                "profile_object.object_type_name",
                "profile_object.unique_digest",
            ],
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "domain_name", "object_type_name", "unique_digest", "key_name", "digest"
        ),
    )
    with op.batch_alter_table("profile_object_key", schema=None) as batch_op:
        batch_op.create_index(
            "ix_profile_object_key_lookup",
            ["domain_name", "object_type_name", "key_name", "digest"],
            unique=False,
        )

    op.create_table(
        "dlq_message",
        sa.Column("domain_name", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=32), nullable=False),
        sa.Column("object_type_name", sa.String(length=255), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("reason_category", sa.String(length=32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("sink_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("domain_name", "message_id"),
    )
    with op.batch_alter_table("dlq_message", schema=None) as batch_op:
        batch_op.create_index("ix_dlq_message_created", ["domain_name", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("dlq_message", schema=None) as batch_op:
        batch_op.drop_index("ix_dlq_message_created")
    op.drop_table("dlq_message")
    with op.batch_alter_table("profile_object_key", schema=None) as batch_op:
        batch_op.drop_index("ix_profile_object_key_lookup")
    op.drop_table("profile_object_key")
    with op.batch_alter_table("profile_object", schema=None) as batch_op:
        batch_op.drop_index("ix_profile_object_expires")
        batch_op.drop_index("ix_profile_object_profile")
    op.drop_table("profile_object")
