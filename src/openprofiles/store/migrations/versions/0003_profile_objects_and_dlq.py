"""profile objects and the dead-letter store

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Filled in by the change that adds these tables.
    pass


def downgrade() -> None:
    pass
