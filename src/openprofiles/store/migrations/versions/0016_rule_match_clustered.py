"""identity resolution: the rule-match tables clustered by their keys on SQLite

`rule_match_digest` and `rule_match_profile` become WITHOUT ROWID tables on SQLite: a row is
stored once, in its primary key's order, instead of in a rowid table plus the key's index. A
full rule pass writes half as many pages, and a domain's digests take half the space.
PostgreSQL has no such option: nothing changes there.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-29
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def _digest_columns() -> list[Any]:
    return [
        sa.Column("domain_name", sa.String(64), primary_key=True),
        sa.Column("level", sa.Integer, primary_key=True),
        sa.Column("digest", sa.LargeBinary, primary_key=True),
        sa.Column("profile_id", sa.String(32), primary_key=True),
        sa.ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
    ]


def _profile_columns() -> list[Any]:
    return [
        sa.Column("domain_name", sa.String(64), primary_key=True),
        sa.Column("profile_id", sa.String(32), primary_key=True),
        sa.Column("digests", sa.LargeBinary, nullable=False),
        sa.ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
    ]


def _rebuild(with_rowid: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name, columns in (
        ("rule_match_digest", _digest_columns()),
        ("rule_match_profile", _profile_columns()),
    ):
        new = op.create_table(f"{name}_new", *columns, sqlite_with_rowid=with_rowid)
        names = ", ".join(c.name for c in new.columns)
        keys = ", ".join(c.name for c in new.primary_key.columns)
        # In key order: each row lands after the previous one.
        op.execute(f"INSERT INTO {name}_new ({names}) SELECT {names} FROM {name} ORDER BY {keys}")
        op.drop_table(name)
        op.rename_table(f"{name}_new", name)


def upgrade() -> None:
    _rebuild(with_rowid=False)


def downgrade() -> None:
    _rebuild(with_rowid=True)
