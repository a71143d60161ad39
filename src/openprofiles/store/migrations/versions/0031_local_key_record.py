"""local_key_record: the local keys `openprofiles keys create` made, with the versions `keys
rotate` gave them

`openprofiles domains drop-unreadable` dropped a domain whose local key was missing from a
keyring that opened the database's sealed rows: a copy of keyring.json older than the key (a
second server's not copied again after `keys create`, a staging clone, a restored backup) does,
and lacks every key made after it, so it dropped a healthy domain whose key the server's own
keyring held. The database now records each key (its id and version count, no key material):
a keyring lacking one is shown to be older than the database, and the drop says to copy the
current keyring.json (domains.unreadable). Keys made before this revision are not recorded:
nothing reads the keyring here, so a database upgraded with a stale copy does not record the
stale copy's keys as the whole of them.

Revision ID: 0031
Revises: 0030
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "local_key_record",
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("versions", sa.Integer(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("local_key_record")
