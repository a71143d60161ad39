"""profile_object: no index of contact records by their start

0022 indexed a profile's contact records by when each contact started, so a page of contact
history was one range of an index. Measured, that index cost every ingested record with a
start about 14 % of the in-process pipeline's rate (benchmarks/ingest.py (a), alternated;
docs/performance.md, twelfth session), while a page without it sorts at most one profile's
records of the type, bounded by MaxProfileObjectCount and found by ix_profile_object_profile.
Ingestion is the rate this service is short of; a history page is not.

Revision ID: 0024
Revises: 0023
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

CONTACT_INDEX = "ix_profile_object_contact"


def upgrade() -> None:
    op.drop_index(CONTACT_INDEX, table_name="profile_object")


def downgrade() -> None:
    op.create_index(
        CONTACT_INDEX,
        "profile_object",
        ["domain_name", "profile_id", "object_type_name", "contact_start", "unique_digest"],
        sqlite_where=sa.text("contact_start IS NOT NULL"),
        postgresql_where=sa.text("contact_start IS NOT NULL"),
    )
