"""web_user.must_change_password: a password someone else chose is changed at first sign-in

`serve --first-run-admin` writes the web user `admin`'s generated password to
DATA_DIR/admin-password, and nothing made the operator change it: the file stayed on disk,
opening an administrator's account. A user so marked now reaches only the password page after
signing in (ui.web.UI.page) until they choose their own password, which clears the mark (and
deletes the first-run file: first_run.retire_first_password). The first-run admin is made with
the mark; `users set-password --temporary` sets it too.

The users stored before this revision are unmarked (false), so nothing changes for them until
the next start with --first-run-admin finds `admin` still opened by the file's password
(first_run.ensure_first_admin marks it then). The downgrade drops the column: the code before
this revision asks no one to change a password, as it never did.

Revision ID: 0047
Revises: 0046
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0047"
down_revision = "0046"
branch_labels = None
depends_on = None

COLUMN = "must_change_password"


def upgrade() -> None:
    # ADD COLUMN with a constant default: in place on both databases (no table rebuild).
    op.add_column(
        "web_user",
        sa.Column(COLUMN, sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite's own DROP COLUMN, not a batch rebuild, as 0041 does.
        op.execute(f"ALTER TABLE web_user DROP COLUMN {COLUMN}")
    else:
        op.drop_column("web_user", COLUMN)
