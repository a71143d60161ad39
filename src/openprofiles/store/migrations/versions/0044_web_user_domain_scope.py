"""web_user.domain_scope: the domains a web user (an agent) may see on the agent pages

Every agent saw every domain's customers. `openprofiles users create --domain NAME` (and
`users scope`) limits an agent to some domains (users.service, ui.agent_pages): the names are
kept in this column, a JSON array, as credential.domain_scope keeps an API key's (0042); NULL is
every domain. The users stored before this revision keep NULL, so they see every domain as
they did.

The downgrade drops the column and, first, the users that have a scope, with their sessions:
the code before this revision would read them as unscoped, so an agent limited to one domain
would see every domain's customers. Deleted instead, a scoped agent must be created again,
unscoped, by an administrator who means it.

Revision ID: 0044
Revises: 0043
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0044"
down_revision = "0043"
branch_labels = None
depends_on = None

COLUMN = "domain_scope"


def upgrade() -> None:
    # ADD COLUMN, nullable with no default: in place on both databases (no table rebuild).
    op.add_column("web_user", sa.Column(COLUMN, sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    web_user = sa.table("web_user", sa.column("username_digest"), sa.column(COLUMN))
    web_session = sa.table("web_session", sa.column("username_digest"))
    scoped = sa.select(web_user.c.username_digest).where(web_user.c.domain_scope.is_not(None))
    bind = op.get_bind()
    # The sessions first: SQLite enforces no foreign key unless asked, so the cascade of
    # web_session's key is not relied on.
    bind.execute(sa.delete(web_session).where(web_session.c.username_digest.in_(scoped)))
    bind.execute(sa.delete(web_user).where(web_user.c.domain_scope.is_not(None)))
    if bind.dialect.name == "sqlite":
        # SQLite's own DROP COLUMN, not a batch rebuild, as 0042 does.
        op.execute(f"ALTER TABLE web_user DROP COLUMN {COLUMN}")
    else:
        op.drop_column("web_user", COLUMN)
