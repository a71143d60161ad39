"""initial schema: credentials, domains, tags, profiles, profile keys

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "credential",
        sa.Column("access_key_id", sa.String(length=32), nullable=False),
        sa.Column("secret_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("access_key_id"),
    )
    op.create_table(
        "domain",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=2048), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "resource_tag",
        sa.Column("resource_arn", sa.String(length=1024), nullable=False),
        sa.Column("domain_name", sa.String(length=64), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("resource_arn"),
    )
    with op.batch_alter_table("resource_tag", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_resource_tag_domain_name"), ["domain_name"], unique=False
        )

    op.create_table(
        "profile",
        sa.Column("domain_name", sa.String(length=64), nullable=False),
        sa.Column("profile_id", sa.String(length=32), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("merged_into", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("domain_name", "profile_id"),
    )
    op.create_table(
        "profile_key",
        sa.Column("domain_name", sa.String(length=64), nullable=False),
        sa.Column("key_name", sa.String(length=255), nullable=False),
        sa.Column("digest", sa.LargeBinary(length=16), nullable=False),
        sa.Column("profile_id", sa.String(length=32), nullable=False),
        sa.Column("origin", sa.String(length=255), nullable=False),
        sa.Column("value_sealed", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["domain_name", "profile_id"],
            ["profile.domain_name", "profile.profile_id"],
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("domain_name", "key_name", "digest", "profile_id"),
    )
    with op.batch_alter_table("profile_key", schema=None) as batch_op:
        batch_op.create_index("ix_profile_key_profile", ["domain_name", "profile_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("profile_key", schema=None) as batch_op:
        batch_op.drop_index("ix_profile_key_profile")

    op.drop_table("profile_key")
    op.drop_table("profile")
    with op.batch_alter_table("resource_tag", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_resource_tag_domain_name"))

    op.drop_table("resource_tag")
    op.drop_table("domain")
    op.drop_table("credential")
