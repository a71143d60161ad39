"""profile_object: one index of a profile's objects instead of two

ix_profile_object_profile (domain_name, profile_id, object_type_name, updated_at) and
ix_profile_object_usage (domain_name, profile_id, expires_at, size; migration 0030) both start
with (domain, profile), and each is one more B-tree that every ingested object changes at a
random place: dropping any one secondary index gave raw inserts 10-25 % (docs/performance.md,
ninth session). One index (domain_name, profile_id, object_type_name, updated_at, write_order,
expires_at, size) serves every query either served, with the same plans: a profile's objects
of a type newest first and the oldest to evict in write order (updated_at, write_order), the
per-profile and per-type counts for the quota, and GetDomain's pass that counts and sizes a
domain's live objects per profile (MeteringProfileCount), the counts from the index alone (the
per-type count read each object's row for its expires_at before). Its entries are wider than
ix_profile_object_usage's, so GetDomain's pass reads about 1.4 times the pages; raw inserts of
the ingestion benchmark write 11 % fewer bytes. It keeps the name of the listing's index.

Revision ID: 0034
Revises: 0033
Create Date: 2026-11-30
"""

from alembic import op

revision = "0034"
down_revision = "0033"
branch_labels = None
depends_on = None

PROFILE_INDEX = "ix_profile_object_profile"
USAGE_INDEX = "ix_profile_object_usage"


def upgrade() -> None:
    op.drop_index(USAGE_INDEX, table_name="profile_object")
    op.drop_index(PROFILE_INDEX, table_name="profile_object")
    op.create_index(
        PROFILE_INDEX,
        "profile_object",
        [
            "domain_name",
            "profile_id",
            "object_type_name",
            "updated_at",
            "write_order",
            "expires_at",
            "size",
        ],
    )


def downgrade() -> None:
    op.drop_index(PROFILE_INDEX, table_name="profile_object")
    op.create_index(
        PROFILE_INDEX,
        "profile_object",
        ["domain_name", "profile_id", "object_type_name", "updated_at"],
    )
    op.create_index(
        USAGE_INDEX, "profile_object", ["domain_name", "profile_id", "expires_at", "size"]
    )
