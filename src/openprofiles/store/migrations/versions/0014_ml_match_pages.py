"""identity resolution: a job's match groups stored in pages, not a row per group and member

`ml_match_page` holds up to 256 consecutive groups (MatchId order) per row, keyed by the first
MatchId; `ml_match_member_page` up to 1,024 (profile id, MatchId) pairs per row in profile id
order, keyed by the first profile id (openprofiles.identity.ml_groups). The groups of
`ml_match` and `ml_match_profile` are moved into pages, and those tables dropped.

Dead letters stored without a sink error are marked `NOT_RECORDED` (`_mark_unrecorded_sends`):
whether they reached SQS is not known.

Why an old migration gained a data step: versions before commit 7f7fe6d (the one just before this
migration's) stored a dead letter with no sink error both when its send to SQS succeeded and when
its domain had no queue; since then a letter dead-lettered without a queue is marked `NO_QUEUE`
when it is stored, and no sink error means "sent". The letters stored before could not be told
apart, and after an upgrade they showed "Sent" — though those kept only here never went anywhere,
and an operator who believes SQS holds a copy may purge the only one. A database at 0013 or
earlier may hold such letters (this migration came 31 s after 7f7fe6d), while every letter
stored at 0014 or later was stored by code that marks `NO_QUEUE`: so the step belongs here, where
it runs on exactly the databases that may hold them; a later migration could not tell them from
letters really sent. (A database that crossed 0014 before this step was added keeps its unmarked
letters: nothing tells them apart any more.)

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

GROUPS_PER_PAGE = 256
MEMBERS_PER_PAGE = 1024

# As dlq.service marks a dead letter whose delivery to SQS was not recorded (a migration keeps its
# own copy: it must go on writing what today's code reads when the code moves on). 0020, which
# seals every sink error but the fixed marks, keeps this one as it is.
NOT_RECORDED = (
    "whether the record reached SQS was not recorded (it was dead-lettered by a version from "
    "before 2026-11-29 00:38 UTC)"
)
_dlq = sa.table("dlq_message", sa.column("sink_error"))


def upgrade() -> None:
    pages = op.create_table(
        "ml_match_page",
        sa.Column("domain_name", sa.String(64), primary_key=True),
        sa.Column("first_match_id", sa.String(32), primary_key=True),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("group_count", sa.Integer, nullable=False),
        sa.Column("groups", sa.JSON, nullable=False),
        sa.ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
    )
    member_pages = op.create_table(
        "ml_match_member_page",
        sa.Column("domain_name", sa.String(64), primary_key=True),
        sa.Column("first_profile_id", sa.String(32), primary_key=True),
        sa.Column("members", sa.JSON, nullable=False),
        sa.ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
    )
    _move_groups(pages, member_pages)
    op.drop_table("ml_match_profile")
    op.drop_table("ml_match")
    _mark_unrecorded_sends()


def _mark_unrecorded_sends() -> None:
    """Every dead letter without a sink error was sent to SQS or kept here only for want of a
    queue, which its version did not tell apart (the module docstring): `NOT_RECORDED`, shown so
    and never sent by dlq.resend (as before: it never was)."""
    op.get_bind().execute(
        sa.update(_dlq)
        .where(sa.or_(_dlq.c.sink_error.is_(None), _dlq.c.sink_error == ""))
        .values(sink_error=NOT_RECORDED)
    )


def _move_groups(pages: sa.Table, member_pages: sa.Table) -> None:
    conn = op.get_bind()
    meta = sa.MetaData()
    match = sa.Table("ml_match", meta, autoload_with=conn)
    member = sa.Table("ml_match_profile", meta, autoload_with=conn)
    members: dict[tuple[str, str], list[str]] = {}
    for domain_name, match_id, profile_id in conn.execute(
        sa.select(member.c.domain_name, member.c.match_id, member.c.profile_id).order_by(
            member.c.domain_name, member.c.match_id, member.c.profile_id
        )
    ):
        members.setdefault((domain_name, match_id), []).append(profile_id)
    groups: dict[str, list[list[Any]]] = {}
    jobs: dict[str, str] = {}
    for row in conn.execute(sa.select(match).order_by(match.c.domain_name, match.c.match_id)):
        ids = members.get((row.domain_name, row.match_id), [])
        groups.setdefault(row.domain_name, []).append(
            [row.match_id, row.confidence, ids, row.explanation]
        )
        jobs[row.domain_name] = row.job_id
    for domain_name, entries in groups.items():
        conn.execute(
            pages.insert(),
            [
                {
                    "domain_name": domain_name,
                    "first_match_id": entries[i][0],
                    "job_id": jobs[domain_name],
                    "group_count": len(entries[i : i + GROUPS_PER_PAGE]),
                    "groups": entries[i : i + GROUPS_PER_PAGE],
                }
                for i in range(0, len(entries), GROUPS_PER_PAGE)
            ],
        )
        pairs = sorted((pid, entry[0]) for entry in entries for pid in entry[2])
        if pairs:
            conn.execute(
                member_pages.insert(),
                [
                    {
                        "domain_name": domain_name,
                        "first_profile_id": pairs[i][0],
                        "members": [list(p) for p in pairs[i : i + MEMBERS_PER_PAGE]],
                    }
                    for i in range(0, len(pairs), MEMBERS_PER_PAGE)
                ],
            )


def downgrade() -> None:
    # As the versions before read it: no sink error (their resend would send any other).
    op.get_bind().execute(
        sa.update(_dlq).where(_dlq.c.sink_error == NOT_RECORDED).values(sink_error=None)
    )
    # The groups come back with the domain's next job.
    op.create_table(
        "ml_match",
        sa.Column("domain_name", sa.String(64), primary_key=True),
        sa.Column("match_id", sa.String(32), primary_key=True),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("explanation", sa.JSON, nullable=False),
        sa.ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
    )
    op.create_index("ix_ml_match_job", "ml_match", ["domain_name", "job_id"])
    op.create_table(
        "ml_match_profile",
        sa.Column("domain_name", sa.String(64), primary_key=True),
        sa.Column("match_id", sa.String(32), primary_key=True),
        sa.Column("profile_id", sa.String(32), primary_key=True),
        sa.ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
    )
    op.create_index(
        "ix_ml_match_profile_profile", "ml_match_profile", ["domain_name", "profile_id"]
    )
    op.drop_table("ml_match_member_page")
    op.drop_table("ml_match_page")
