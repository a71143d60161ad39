"""signin_throttle: failed sign-ins counted where every server process sees them

The web pages' sign-in refuses further attempts for a while after too many failures for one
username, or from one client address (users.throttle). The counts live in the database, not in a
process, so several server processes on one PostgreSQL database share them. A row is keyed by
the kind of subject ("user", "pair" of a username and an address, or "address") and the
subject's blind-index digest under the system cipher, with the username's digest for a
username's rows: neither the username nor the address is stored in clear.

Revision ID: 0023
Revises: 0022
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signin_throttle",
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("subject_digest", sa.LargeBinary(length=16), nullable=False),
        sa.Column("user_digest", sa.LargeBinary(length=16), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lockouts", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kind", "subject_digest"),
    )
    op.create_index("ix_signin_throttle_updated_at", "signin_throttle", ["updated_at"])
    op.create_index("ix_signin_throttle_user", "signin_throttle", ["user_digest"])


def downgrade() -> None:
    op.drop_index("ix_signin_throttle_user", table_name="signin_throttle")
    op.drop_index("ix_signin_throttle_updated_at", table_name="signin_throttle")
    op.drop_table("signin_throttle")
