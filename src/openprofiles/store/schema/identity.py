"""Identity-resolution tables: the merge log (every MergeProfiles, sealed, so it can be undone)
and the rule-match digests (rule-based matching, spec §5.1).

A merge-log row names the main profile and the merged ids in clear (random ids, no personal data)
so merges can be listed without opening anything; what came from where — the before-images of
every profile involved, the keys and objects that moved — is sealed in `sealed`, bound to the
merge id. `kept_apart` keeps, by id only, the profiles of an undone merge whose log was erased
with a deleted profile. `rule_match_digest` holds, per profile and rule level, keyed HMAC
digests of the level's normalised attribute values (never the values): profiles sharing a
digest match at that level; `rule_match_profile` the same digests per profile. The tables are
registered for DeleteDomain by openprofiles.identity, not here: importing domains.service from
a schema module would make an import cycle.
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
    # The few undone merges of a domain, which keep their profiles apart (identity.matching).
    Index("ix_merge_log_undone", "domain_name", "undone_at"),
)

# What stays of an undone merge once DeleteProfile erased its log (the log holds the erased
# customer's before-image): the ids of its other profiles, which no automatic merge may put
# together again (identity.matching._separated), as the log kept them apart while it existed.
# Ids only (random, no personal data), at least two; DeleteProfile takes its own ids out again.
kept_apart = Table(
    "kept_apart",
    metadata,
    Column("domain_name", String(64), primary_key=True),
    # The undone merge's id.
    Column("merge_id", String(32), primary_key=True),
    Column("profile_ids", JSON, nullable=False),
    ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
)

rule_match_digest = Table(
    "rule_match_digest",
    metadata,
    Column("domain_name", String(64), primary_key=True),
    Column("level", Integer, primary_key=True),
    Column("digest", LargeBinary, primary_key=True),
    Column("profile_id", String(32), primary_key=True),
    ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
    # Clustered by its key on SQLite: each row stored once, in key order (a full rule pass
    # writes a domain's rows in that order).
    sqlite_with_rowid=False,
)

# A profile's own digests, packed in one value (openprofiles.identity.rule_store): how a write
# finds the digest rows to replace, and a match group its members' other digests. One row per
# profile instead of a second index on rule_match_digest, which every digest row paid for at a
# random place: the full pass of a domain of a million profiles spent most of its writes there.
rule_match_profile = Table(
    "rule_match_profile",
    metadata,
    Column("domain_name", String(64), primary_key=True),
    Column("profile_id", String(32), primary_key=True),
    Column("digests", LargeBinary, nullable=False),
    ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
    sqlite_with_rowid=False,
)

# Probabilistic matching (spec §5.2). A job row holds its status and counts, and the attribute
# lists its groups' explanations name. Registered for DeleteDomain by openprofiles.identity
# (ml_jobs, ml_groups, ml_features).
identity_job = Table(
    "identity_job",
    metadata,
    Column("domain_name", String(64), primary_key=True),
    Column("job_id", String(36), primary_key=True),
    Column("status", String(16), nullable=False),
    # Kept in clear: only identity.ml_jobs writes it, from fixed texts that carry no record
    # value — the failing step and the exception's type name (never its text, which could quote
    # data), the time of the last heartbeat, or that fixed priors were used.
    Column("message", String(1000), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("started_at", UtcDateTime, nullable=True),
    Column("ended_at", UtcDateTime, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("profiles_reviewed", Integer, nullable=False, default=0),
    Column("matches_found", Integer, nullable=False, default=0),
    Column("merges_done", Integer, nullable=False, default=0),
    # The domain's Matching.AutoMerging when the job ran (configuration, no personal data).
    Column("auto_merging", JSON, nullable=True),
    # The JobSchedule slot a scheduled job runs for (None for a job run on demand).
    Column("scheduled_for", UtcDateTime, nullable=True),
    # Written by the process running the job at each step and, while Splink runs, by a thread;
    # older than Settings.matching_job_lease_seconds, the job is taken for dead (ml_jobs).
    Column("heartbeat_at", UtcDateTime, nullable=False),
    # When a scheduler's check found the heartbeat too old and marked the job FAILED.
    Column("lease_expired_at", UtcDateTime, nullable=True),
    # The attribute lists of a completed job's explanations, one per combination of comparison
    # levels its linking pairs have (labels and weights, no values); a group's stored pairs
    # name them by position (identity.ml_jobs). None for jobs stored before that form.
    Column("explanation_levels", JSON, nullable=True),
    ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
    Index("ix_identity_job_created", "domain_name", "created_at"),
    # The check for dead jobs reads the few unfinished ones by status.
    Index("ix_identity_job_status", "status", "heartbeat_at"),
)

# A slot is held by one job per domain: inserting the row is how one server process claims it
# (identity.schedule). A job whose process stopped (lease expired) lets go of its slot, which
# another job may then claim the same way; the dead job's row keeps the slot it was for.
Index(
    "ux_identity_job_slot",
    identity_job.c.domain_name,
    identity_job.c.scheduled_for,
    unique=True,
    sqlite_where=identity_job.c.lease_expired_at.is_(None),
    postgresql_where=identity_job.c.lease_expired_at.is_(None),
)

# A job's match groups, in pages (identity.ml_groups): up to 256 consecutive groups in MatchId
# order per row, keyed by the first MatchId ([MatchId, confidence, profile ids, linking pairs]
# each; the pairs name the job's level combinations, `identity_job.explanation_levels`), and
# up to 1,024 (profile id, MatchId) pairs in profile id order per row, keyed by the first
# profile id, so GetSimilarProfiles finds a profile's group. Random ids, labels and numbers
# only, never values.
ml_match_page = Table(
    "ml_match_page",
    metadata,
    Column("domain_name", String(64), primary_key=True),
    Column("first_match_id", String(32), primary_key=True),
    Column("job_id", String(36), nullable=False),
    Column("group_count", Integer, nullable=False),
    Column("groups", JSON, nullable=False),
    ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
)

ml_match_member_page = Table(
    "ml_match_member_page",
    metadata,
    Column("domain_name", String(64), primary_key=True),
    Column("first_profile_id", String(32), primary_key=True),
    Column("members", JSON, nullable=False),
    ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
)

# The match features of a live profile in a domain with Matching enabled (identity.ml_features):
# the normalised values a job compares, sealed (bound to domain, table and profile id) with the
# profile version and the basis they were computed for. Deleted with their profile.
ml_feature = Table(
    "ml_feature",
    metadata,
    Column("domain_name", String(64), primary_key=True),
    Column("profile_id", String(32), primary_key=True),
    Column("sealed", LargeBinary, nullable=False),
    ForeignKeyConstraint(
        ["domain_name", "profile_id"],
        ["profile.domain_name", "profile.profile_id"],
        ondelete="CASCADE",
    ),
    # Clustered by its key on SQLite: a job reads a domain's rows in one range scan.
    sqlite_with_rowid=False,
)
