"""web_session.last_seen_at: a session unused for an hour ends

A web session lasted twelve hours whatever happened: an agent's desk left unattended kept
customers' data open until the end of the shift. `last_seen_at` records when its browser was
last seen (to the minute); users.service ends a session idle for SESSION_IDLE. Sessions made
before stay NULL, their start (expires_at minus the 12-hour lifetime) counting as last seen.

Revision ID: 0026
Revises: 0025
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("web_session") as batch:
        batch.add_column(sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("web_session") as batch:
        batch.drop_column("last_seen_at")
