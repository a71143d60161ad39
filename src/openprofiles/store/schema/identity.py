"""Identity-resolution tables: the merge log (every MergeProfiles, sealed, so it can be undone).

A merge-log row names the main profile and the merged ids in clear (random ids, no personal data)
so merges can be listed without opening anything; what came from where — the before-images of
every profile involved, the keys and objects that moved — is sealed in `sealed`, bound to the
merge id. The table is registered for DeleteDomain by openprofiles.identity.service, not here:
importing domains.service from a schema module would make an import cycle.
"""

from __future__ import annotations

from sqlalchemy import JSON, Column, ForeignKeyConstraint, Index, LargeBinary, String, Table

from openprofiles.store.schema.core import metadata
from openprofiles.store.types import UtcDateTime

merge_log = Table(
    "merge_log",
    metadata,
    Column("domain_name", String(64), primary_key=True),
    Column("merge_id", String(32), primary_key=True),
    Column("main_profile_id", String(32), nullable=False),
    Column("merged_profile_ids", JSON, nullable=False),
    # {"profiles": before-images, "main_after": ..., "keys": moved keys, "objects": ...}.
    Column("sealed", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("undone_at", UtcDateTime, nullable=True),
    # What an undo did (what stayed on the main profile because it arrived after the merge).
    Column("undo_sealed", LargeBinary, nullable=True),
    ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
    Index("ix_merge_log_created", "domain_name", "created_at"),
    Index("ix_merge_log_main", "domain_name", "main_profile_id"),
)
