"""identity resolution: a profile's rule-match digests in one row, not a second digest index

`rule_match_profile` holds each profile's (level, digest) pairs packed in one value
(openprofiles.identity.rule_store); the by-profile index of `rule_match_digest` goes. Every
digest row paid for that index at a random place, which was most of the write cost of a full
rule pass. The rows are filled from the existing digests.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_BATCH = 1000


def upgrade() -> None:
    packed = op.create_table(
        "rule_match_profile",
        sa.Column("domain_name", sa.String(64), primary_key=True),
        sa.Column("profile_id", sa.String(32), primary_key=True),
        sa.Column("digests", sa.LargeBinary, nullable=False),
        sa.ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
    )
    conn = op.get_bind()
    digest = sa.Table("rule_match_digest", sa.MetaData(), autoload_with=conn)
    rows: list[dict[str, object]] = []
    current: tuple[str, str] | None = None
    parts: list[bytes] = []

    def flush_profile() -> None:
        if current is not None:
            rows.append(
                {"domain_name": current[0], "profile_id": current[1], "digests": b"".join(parts)}
            )

    for domain_name, profile_id, level, value in conn.execute(
        sa.select(
            digest.c.domain_name, digest.c.profile_id, digest.c.level, digest.c.digest
        ).order_by(digest.c.domain_name, digest.c.profile_id, digest.c.level, digest.c.digest)
    ):
        if (domain_name, profile_id) != current:
            flush_profile()
            current, parts = (domain_name, profile_id), []
            if len(rows) >= _BATCH:
                conn.execute(packed.insert(), rows)
                rows.clear()
        # The packing of openprofiles.identity.rule_store: a level byte, then the digest.
        parts.append(bytes([level]) + bytes(value))
    flush_profile()
    if rows:
        conn.execute(packed.insert(), rows)
    op.drop_index("ix_rule_match_digest_profile", table_name="rule_match_digest")


def downgrade() -> None:
    op.create_index(
        "ix_rule_match_digest_profile",
        "rule_match_digest",
        ["domain_name", "profile_id", "level", "digest"],
    )
    op.drop_table("rule_match_profile")
