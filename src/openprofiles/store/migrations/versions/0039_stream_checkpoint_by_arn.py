"""stream_checkpoint: keyed by the stream's ARN, not its name

Kinesis checkpoints were keyed by (stream_name, shard_id). Streams of one name in two regions or
two accounts (the connector takes a stream's ARN, and reads it in the ARN's region) read into one
database shared their rows: each one's save replaced the other's checkpoint, and each one's
start dropped the other's as those of "a stream deleted and created again". They are keyed by
(stream_arn, shard_id) now; stream_arn and stream_created_at (0029) become required.

The rows that have an ARN keep it (and their place: the name was the ARN's last part, so no two
of them share an ARN and a shard). The rows saved before 0029 have none, and nothing in the
database says which stream they are of. They move to stream_checkpoint_by_name, keyed by name
as before, until a connector adopts them (connectors.kinesis.claim_checkpoints): the first time
it reads a stream of that name in the region a connector started with the name reads in
(OPENPROFILES_AWS_REGION, else OPENPROFILES_REGION), the region every connector read in before
0029 — so a connector of that stream reads on after them, as it did before this revision (those
saved before that stream was created are its namesake's before it, and are dropped, as
before), and a stream of that name elsewhere (another region, read by its ARN) is never given
another stream's sequence numbers: it is read from its start. Those no connector adopts (their
stream is gone, or read with other settings now) stay there, unused.

On SQLite the table is rebuilt by Alembic's batch mode (a primary key cannot be altered there);
on PostgreSQL the primary key constraint is replaced in place. The downgrade keys the rows by
name again: of the streams that share a name, the checkpoints of the one saved last are kept,
and the rows of stream_checkpoint_by_name go back where no stream of their name has one.

Revision ID: 0039
Revises: 0038
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0039"
down_revision = "0038"
branch_labels = None
depends_on = None

# 0005 named no constraint: PostgreSQL's name for it (SQLite's had none; it has from here on).
PRIMARY_KEY = "stream_checkpoint_pkey"
_BY_NAME_COLUMNS = "stream_name, shard_id, sequence_number, updated_at"
NAME_KEY = ["stream_name", "shard_id"]
ARN_KEY = ["stream_arn", "shard_id"]


def _table(key: list[str], *, identity_required: bool) -> sa.Table:
    """stream_checkpoint as it is before the change, keyed by `key`: what batch mode copies on
    SQLite, instead of reflecting it (SQLite reflects no name for the primary key, and it is
    dropped by its name)."""
    return sa.Table(
        "stream_checkpoint",
        sa.MetaData(),
        sa.Column("stream_name", sa.String(255), nullable=False),
        sa.Column("shard_id", sa.String(255), nullable=False),
        sa.Column("sequence_number", sa.String(128), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stream_arn", sa.String(2048), nullable=not identity_required),
        sa.Column("stream_created_at", sa.DateTime(timezone=True), nullable=not identity_required),
        sa.PrimaryKeyConstraint(*key, name=PRIMARY_KEY),
    )


def _set_key(old: list[str], new: list[str], *, identity_required: bool) -> None:
    copy = _table(old, identity_required=not identity_required)
    with op.batch_alter_table("stream_checkpoint", copy_from=copy) as batch:
        batch.drop_constraint(PRIMARY_KEY, type_="primary")
        for column in ("stream_arn", "stream_created_at"):
            batch.alter_column(
                column, existing_type=copy.c[column].type, nullable=not identity_required
            )
        batch.create_primary_key(PRIMARY_KEY, new)


def upgrade() -> None:
    op.create_table(
        "stream_checkpoint_by_name",
        sa.Column("stream_name", sa.String(255), nullable=False),
        sa.Column("shard_id", sa.String(255), nullable=False),
        sa.Column("sequence_number", sa.String(128), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("stream_name", "shard_id"),
    )
    # A row with an ARN always had its creation time too (both saved together): one missing
    # either knows its stream by name only.
    unknown = "stream_arn IS NULL OR stream_created_at IS NULL"
    op.execute(
        f"INSERT INTO stream_checkpoint_by_name ({_BY_NAME_COLUMNS}) "
        f"SELECT {_BY_NAME_COLUMNS} FROM stream_checkpoint WHERE {unknown}"
    )
    op.execute(f"DELETE FROM stream_checkpoint WHERE {unknown}")
    _set_key(NAME_KEY, ARN_KEY, identity_required=True)


def downgrade() -> None:
    # One row per (name, shard) again: that of the stream of the name saved last (the later
    # update, then the greater ARN: one row each time).
    op.execute(
        "DELETE FROM stream_checkpoint WHERE EXISTS (SELECT 1 FROM stream_checkpoint AS o "
        "WHERE o.stream_name = stream_checkpoint.stream_name "
        "AND o.shard_id = stream_checkpoint.shard_id "
        "AND (o.updated_at > stream_checkpoint.updated_at OR (o.updated_at = "
        "stream_checkpoint.updated_at AND o.stream_arn > stream_checkpoint.stream_arn)))"
    )
    _set_key(ARN_KEY, NAME_KEY, identity_required=False)
    op.execute(
        f"INSERT INTO stream_checkpoint ({_BY_NAME_COLUMNS}) "
        f"SELECT {_BY_NAME_COLUMNS} FROM stream_checkpoint_by_name AS b WHERE NOT EXISTS "
        "(SELECT 1 FROM stream_checkpoint AS c WHERE c.stream_name = b.stream_name "
        "AND c.shard_id = b.shard_id)"
    )
    op.drop_table("stream_checkpoint_by_name")
