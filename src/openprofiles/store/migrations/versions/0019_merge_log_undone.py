"""merge logs: an index of the undone ones

An auto-merge must not put together again profiles that an undone merge separated, whichever
profile of that merge it meets (identity.matching._separated). Undone merges were found through
their main profile, the only profile index merge_log had, so a merge whose main profile no
longer matched its former members protected nothing. They are now read per domain through this
index: few merges are ever undone, and the index holds them apart from the many that are not.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-29
"""

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_merge_log_undone", "merge_log", ["domain_name", "undone_at"])


def downgrade() -> None:
    op.drop_index("ix_merge_log_undone", table_name="merge_log")
