"""identity resolution: the by-profile index of rule-match digests covers level and digest

Without statistics SQLite prefers a covering index to one that is not, and the primary key
(domain, level, digest, profile) covers every query on the table: reading a profile's digests
scanned every digest of its domain. With level and digest in the by-profile index, it is the
one chosen.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rule_match_digest") as batch:
        batch.drop_index("ix_rule_match_digest_profile")
        batch.create_index(
            "ix_rule_match_digest_profile", ["domain_name", "profile_id", "level", "digest"]
        )


def downgrade() -> None:
    with op.batch_alter_table("rule_match_digest") as batch:
        batch.drop_index("ix_rule_match_digest_profile")
        batch.create_index("ix_rule_match_digest_profile", ["domain_name", "profile_id"])
