"""credential.domain_scope: the domains an API credential may act on

A credential could act on every domain. `openprofiles credentials create --domain NAME` (and
`credentials scope`) limits one to some domains (auth.scope): the names are kept in this column,
a JSON array; NULL is every domain. The credentials stored before this revision keep NULL, so
they act on every domain as they did.

The downgrade drops the column and, first, the credentials that have a scope: the code before
this revision would read them as unscoped, so a key made to reach one domain would reach every
domain. Revoked instead, a scoped key must be issued again, unscoped, by an administrator who
means it.

Revision ID: 0042
Revises: 0041
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0042"
down_revision = "0041"
branch_labels = None
depends_on = None

COLUMN = "domain_scope"


def upgrade() -> None:
    # ADD COLUMN, nullable with no default: in place on both databases (no table rebuild).
    op.add_column("credential", sa.Column(COLUMN, sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    credential = sa.table("credential", sa.column(COLUMN))
    op.get_bind().execute(sa.delete(credential).where(credential.c.domain_scope.is_not(None)))
    if op.get_bind().dialect.name == "sqlite":
        # SQLite's own DROP COLUMN, not a batch rebuild, as 0041 does.
        op.execute(f"ALTER TABLE credential DROP COLUMN {COLUMN}")
    else:
        op.drop_column("credential", COLUMN)
