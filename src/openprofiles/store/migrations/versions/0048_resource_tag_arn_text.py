"""resource_tag.resource_arn: text of any length, not 1,024 characters

An integration's tags are stored by its ARN, which holds its Uri percent-encoded whole
(integrations.service.integration_arn): a character outside ASCII takes 6 to 12 characters
there, so a Uri of 255 such characters (which the model allows) made an ARN of up to about
3,200. On PostgreSQL, PutIntegration of such a Uri with Tags failed (500); SQLite, which does
not hold a varchar to its length, stored it. The column is text now, on both.

On PostgreSQL the column's type changes in place (varchar to text rewrites nothing); on SQLite
Alembic's batch mode rebuilds the table (no table refers to resource_tag). The downgrade deletes
the tags of the resources whose ARN is longer than 1,024 characters, which the code before this
revision could not store (their resources stay, untagged), then shortens the column.

Revision ID: 0048
Revises: 0047
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0048"
down_revision = "0047"
branch_labels = None
depends_on = None

OLD_LENGTH = 1024


def upgrade() -> None:
    with op.batch_alter_table("resource_tag") as batch:
        batch.alter_column(
            "resource_arn", existing_type=sa.String(OLD_LENGTH), type_=sa.Text(), nullable=False
        )


def downgrade() -> None:
    resource_tag = sa.table("resource_tag", sa.column("resource_arn"))
    op.get_bind().execute(
        sa.delete(resource_tag).where(sa.func.length(resource_tag.c.resource_arn) > OLD_LENGTH)
    )
    with op.batch_alter_table("resource_tag") as batch:
        batch.alter_column(
            "resource_arn", existing_type=sa.Text(), type_=sa.String(OLD_LENGTH), nullable=False
        )
