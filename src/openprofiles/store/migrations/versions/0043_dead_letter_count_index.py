"""dlq_message: an index the dead-letter counts of GET /metrics read alone

dlq.service.count_letters counts every domain's dead letters by (domain, reason category), and
those whose SQS send failed (their sink_error mark), on each scrape's read of the database's
state. The table holds each letter's sealed record, so without an index of those columns every
read went through the whole table: on PostgreSQL a sequential scan of it, on SQLite a walk of
ux_dlq_message_repeat looking each letter up in the table. With ix_dlq_message_category
(domain_name, reason_category, sink_error) it reads the index alone, in its order (no sort for
the GROUP BY): an Index Only Scan on PostgreSQL, a covering index on SQLite. At a million
letters (benchmarks/dlq_counts.py) 411 ms became 77 ms on PostgreSQL 15, 13.5 s became 0.46 s
on SQLite. On PostgreSQL the index takes 8 MB (B-tree deduplication: few distinct entries),
beside the primary key's 99 MB.

No index becomes redundant: ix_dlq_message_created (domain_name, created_at) orders a domain's
letters for listing and retry, ux_dlq_message_repeat (domain_name, repeat_digest) is unique, and
neither is a prefix of this one. A domain's counts (dlq.service.count, count_undelivered) read
this index alone too. sink_error holds only dlq.service's fixed marks (migration 0020), at most
a few hundred bytes, well within an index entry. Its cost: a change of a letter's sink_error
(the SQS send's claim and outcome) now updates the index, and on PostgreSQL is no longer a
heap-only (HOT) update, so it writes an entry in each of the table's indexes.

The index is built in the migration's transaction (not CONCURRENTLY): writes to dlq_message wait
while it is built, 3 s at a million letters on PostgreSQL.

Revision ID: 0043
Revises: 0042
Create Date: 2026-12-01
"""

from alembic import op

revision = "0043"
down_revision = "0042"
branch_labels = None
depends_on = None

INDEX = "ix_dlq_message_category"


def upgrade() -> None:
    op.create_index(INDEX, "dlq_message", ["domain_name", "reason_category", "sink_error"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="dlq_message")
