"""Identity-resolution tables: the merge log (every MergeProfiles, sealed, so it can be undone)
and the rule-match digests (rule-based matching, spec §5.1).

A merge-log row names the main profile and the merged ids in clear (random ids, no personal data)
so merges can be listed without opening anything; what came from where — the before-images of
every profile involved, the keys and objects that moved — is sealed in `sealed`, bound to the
merge id. `rule_match_digest` holds, per profile and rule level, keyed HMAC digests of the
level's normalised attribute values (never the values): profiles sharing a digest match at that
level. The tables are registered for DeleteDomain by openprofiles.identity.service, not here:
importing domains.service from a schema module would make an import cycle.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
)

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

rule_match_digest = Table(
    "rule_match_digest",
    metadata,
    Column("domain_name", String(64), primary_key=True),
    Column("level", Integer, primary_key=True),
    Column("digest", LargeBinary, primary_key=True),
    Column("profile_id", String(32), primary_key=True),
    ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
    Index("ix_rule_match_digest_profile", "domain_name", "profile_id"),
)
