"""flow_item.version: text of any length, not 255 characters

A failed item's checkpoint names the records of it not applied (flows.checkpoints: FAILED_MARK,
the positions of the records set aside one by one). Within 255 characters it could not name
them all when many were set aside, and the records from the first one left unnamed were applied
again when the item was read again, over what later items had brought since. The column is
text now, so the checkpoint names every one.

On PostgreSQL the column's type changes in place (varchar to text rewrites nothing); on SQLite
Alembic's batch mode rebuilds the table (no table refers to flow_item). The downgrade shortens
the checkpoints longer than 255 characters as the code before this revision did: a failed one
names the records set aside that fit and says that every record from the first one left
unnamed is to be applied (or, when even that does not fit, the whole item); any other is
deleted, and its item read again from its start, as one never read.

Revision ID: 0040
Revises: 0039
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0040"
down_revision = "0039"
branch_labels = None
depends_on = None

OLD_LENGTH = 255
FAILED_MARK = "failed:"


def upgrade() -> None:
    with op.batch_alter_table("flow_item") as batch:
        batch.alter_column(
            "version", existing_type=sa.String(OLD_LENGTH), type_=sa.Text(), nullable=False
        )


def downgrade() -> None:
    conn = op.get_bind()
    flow_item = sa.table(
        "flow_item",
        sa.column("domain_name"),
        sa.column("flow_name"),
        sa.column("item_digest"),
        sa.column("version"),
    )
    key = (flow_item.c.domain_name, flow_item.c.flow_name, flow_item.c.item_digest)
    rows = conn.execute(
        sa.select(*key, flow_item.c.version).where(sa.func.length(flow_item.c.version) > OLD_LENGTH)
    ).all()
    for row in rows:
        where = sa.and_(*(column == value for column, value in zip(key, row[:3], strict=True)))
        shortened = _shortened(row.version)
        if shortened is None:
            conn.execute(sa.delete(flow_item).where(where))
        else:
            conn.execute(sa.update(flow_item).where(where).values(version=shortened))
    with op.batch_alter_table("flow_item") as batch:
        batch.alter_column(
            "version", existing_type=sa.Text(), type_=sa.String(OLD_LENGTH), nullable=False
        )


def _shortened(checkpoint: str) -> str | None:
    """A failed checkpoint ("failed:<at>:<ranges>:<version>") within OLD_LENGTH, applying again
    rather than never (the revision's docstring); None for any other."""
    if not checkpoint.startswith(FAILED_MARK):
        return None
    at_text, _, rest = checkpoint[len(FAILED_MARK) :].partition(":")
    named, _, version = rest.partition(":")
    if not at_text.isdigit():
        return None
    at = int(at_text)
    ranges = [part.split("-") for part in named.split(",") if part]
    while at or ranges:
        named = ",".join("-".join(bounds) for bounds in ranges)
        shortened = f"{FAILED_MARK}{at}:{named}:{version}"
        if len(shortened) <= OLD_LENGTH:
            return shortened
        # Every record from the last range named on is to be applied.
        at = min(at, int(ranges.pop()[0]) - 1) if ranges else 0
    shortened = FAILED_MARK + version
    return shortened if len(shortened) <= OLD_LENGTH else None
