"""domain.aliased_key_arn, domain.aliased_key_digest: the KMS key a domain's alias named

`openprofiles domains drop-unreadable` dropped a domain whose KMS alias was gone on a key ARN
the operator gave (--key-lost), once DescribeKey answered NotFound for it: it does so for a key
that never existed exactly as for a deleted one, so a made-up ARN dropped a domain whose key
was alive (only the alias deleted, the operator's credentials denied). The server now records
the key the alias named (KMS's KeyId) when it wraps or unwraps the domain's data key, with the
SHA-256 of that wrapped data key (a record made for another data key, before a change of the
domain's key, names nothing), and the drop takes only that key (domains.unreadable). Domains
are not read here: the keys are not called in a migration that needs none, and a server of
this release records them as the keys are used.

Revision ID: 0032
Revises: 0031
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None

COLUMNS = ("aliased_key_arn", "aliased_key_digest")


def upgrade() -> None:
    # Plain ADD COLUMN, not a batch rebuild, on SQLite too: a rebuild drops the domain table,
    # and with foreign keys on that would delete the rows that reference it.
    op.add_column("domain", sa.Column("aliased_key_arn", sa.String(2048), nullable=True))
    op.add_column("domain", sa.Column("aliased_key_digest", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    for column in COLUMNS:
        if op.get_bind().dialect.name == "sqlite":
            # SQLite's own DROP COLUMN, not a batch rebuild (as in upgrade).
            op.execute(f"ALTER TABLE domain DROP COLUMN {column}")
        else:
            op.drop_column("domain", column)
