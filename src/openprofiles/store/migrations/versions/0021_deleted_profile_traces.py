"""DeleteProfile: contact records found by profile, and undone merges kept apart after erasure

* `ix_contact_record_profile`: DeleteProfile deletes the deleted profiles' `contact_record` rows
  (contacts.service), found through this index rather than by a scan of the domain's records.
  Rows left by earlier deletions, naming a profile that no longer exists, are deleted now.
* `kept_apart`: the ids of an undone merge's other profiles once DeleteProfile erased its log
  (identity.service.forget_deleted_profiles), which keep them apart from each other
  (identity.matching._separated). Logs erased before this revision are gone: nothing to fill.

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

_contact_record = sa.table("contact_record", sa.column("domain_name"), sa.column("profile_id"))
_profile = sa.table("profile", sa.column("domain_name"), sa.column("profile_id"))


def upgrade() -> None:
    op.create_index("ix_contact_record_profile", "contact_record", ["domain_name", "profile_id"])
    op.execute(
        _contact_record.delete().where(
            _contact_record.c.profile_id.is_not(None),
            ~sa.exists().where(
                _profile.c.domain_name == _contact_record.c.domain_name,
                _profile.c.profile_id == _contact_record.c.profile_id,
            ),
        )
    )
    op.create_table(
        "kept_apart",
        sa.Column("domain_name", sa.String(64), primary_key=True),
        sa.Column("merge_id", sa.String(32), primary_key=True),
        sa.Column("profile_ids", sa.JSON, nullable=False),
        sa.ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
    )


def downgrade() -> None:
    op.drop_table("kept_apart")
    op.drop_index("ix_contact_record_profile", table_name="contact_record")
