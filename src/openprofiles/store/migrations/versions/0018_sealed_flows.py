"""flows: run errors and flow definitions sealed, items known by a digest of their key

Three columns held personal data in clear:

* `flow_item.item_key`, the S3 object key or file name a flow read (an export per customer
  is often named after them), becomes `item_digest`: the blind-index digest of the key under
  the domain's index key (key name `@flowItem`). A run only asks whether a listed key was
  read, which the digest answers.
* `flow_run.error` becomes `error_sealed`: `{"error": message}` sealed with the domain's key,
  bound to (domain, "flow_run", run id). A message can quote an object key or a record value.
* The FlowDefinition leaves `integration.settings` for `integration.flow_sealed`: the
  definition sealed with the domain's key, bound to (domain, "integration", Uri). A Filter task
  can compare a field with a customer's email.

Sealing needs the domains' data keys: `store.migrate` hands the key manager over in the Alembic
config's attributes (`keys`). Only domains with rows to convert are unwrapped; a key that cannot
be used (disabled, KMS unreachable) stops the upgrade, and nothing changes until it can be or
the domain is dropped: the message (domains.unreadable.refusal) names every domain whose key
cannot be used and the command that drops one. On SQLite, `secure_delete` is on while the rows
are rewritten, so the clear values do not linger in the database file's free pages.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

# As flows.service and integrations.service seal and digest them (a migration keeps its own copy:
# it must go on reading what it wrote when the code moves on).
ITEM_KEY_NAME = "@flowItem"
RUN_TABLE = "flow_run"
INTEGRATION_TABLE = "integration"

_domain = sa.table("domain", sa.column("name"), sa.column("key_id"), sa.column("wrapped_key"))
# Columns without a type: values are copied as the database stores them.
_item_columns = ("domain_name", "flow_name", "version", "processed_at")
_run = sa.table(
    "flow_run",
    sa.column("domain_name"),
    sa.column("run_id"),
    sa.column("error"),
    sa.column("error_sealed"),
)
_integration = sa.table(
    "integration",
    sa.column("domain_name"),
    sa.column("uri"),
    sa.column("settings", sa.JSON),
    sa.column("flow_sealed"),
)


def _ciphers(conn: sa.Connection) -> Callable[[str], Any]:
    """The cipher of a domain, its data key unwrapped on first use."""
    keys = context.config.attributes.get("keys")
    cache: dict[str, Any] = {}

    def cipher(domain_name: str) -> Any:
        if domain_name not in cache:
            if keys is None:
                raise RuntimeError(
                    "Migration 0018 seals flow data with the domains' keys: run it through "
                    "openprofiles.store.migrate with the key manager (keys=...)."
                )
            from openprofiles.crypto.errors import KeyUnusable
            from openprofiles.domains.unreadable import refusal

            row = conn.execute(
                sa.select(_domain.c.key_id, _domain.c.wrapped_key).where(
                    _domain.c.name == domain_name
                )
            ).one()
            try:
                cache[domain_name] = keys.cipher_for(
                    domain_name, row.key_id, bytes(row.wrapped_key)
                )
            except KeyUnusable as exc:
                raise refusal(
                    conn,
                    keys,
                    needs=f"seals the flow data of domain {domain_name} with its key",
                    domain_name=domain_name,
                    error=exc,
                ) from exc
        return cache[domain_name]

    return cipher


def _item_table(key_column: sa.Column[Any]) -> None:
    op.create_table(
        "flow_item",
        sa.Column("domain_name", sa.String(length=64), nullable=False),
        sa.Column("flow_name", sa.String(length=256), nullable=False),
        key_column,
        sa.Column("version", sa.String(length=255), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("domain_name", "flow_name", key_column.name),
    )


def _rebuild_items(
    old_key: str, new_key: sa.Column[Any], convert: Callable[[str, Any], Any] | None
) -> None:
    """flow_item again with `new_key` in place of `old_key`, each row's key converted (the
    rows dropped when `convert` is None)."""
    conn = op.get_bind()
    old = sa.table("flow_item", *(sa.column(c) for c in (*_item_columns, old_key)))
    rows = conn.execute(sa.select(old)).all() if convert is not None else []
    op.drop_table("flow_item")
    _item_table(new_key)
    if rows and convert is not None:
        new = sa.table("flow_item", *(sa.column(c) for c in (*_item_columns, new_key.name)))
        conn.execute(
            sa.insert(new),
            [
                {
                    **{c: getattr(r, c) for c in _item_columns},
                    new_key.name: convert(r.domain_name, getattr(r, old_key)),
                }
                for r in rows
            ],
        )


def upgrade() -> None:
    conn = op.get_bind()
    cipher = _ciphers(conn)
    secure_delete = None
    if conn.dialect.name == "sqlite":
        secure_delete = conn.exec_driver_sql("PRAGMA secure_delete").scalar_one()
        conn.exec_driver_sql("PRAGMA secure_delete=ON")

    _rebuild_items(
        "item_key",
        sa.Column("item_digest", sa.LargeBinary(length=16), nullable=False),
        lambda domain_name, key: cipher(domain_name).digest(ITEM_KEY_NAME, key),
    )

    with op.batch_alter_table("flow_run") as batch:
        batch.add_column(sa.Column("error_sealed", sa.LargeBinary(), nullable=True))
    for row in conn.execute(sa.select(_run).where(_run.c.error.is_not(None))).all():
        sealed = cipher(row.domain_name).seal_record(RUN_TABLE, row.run_id, {"error": row.error})
        conn.execute(
            sa.update(_run)
            .where(_run.c.domain_name == row.domain_name, _run.c.run_id == row.run_id)
            .values(error_sealed=sealed, error=None)
        )
    with op.batch_alter_table("flow_run") as batch:
        batch.drop_column("error")

    with op.batch_alter_table("integration") as batch:
        batch.add_column(sa.Column("flow_sealed", sa.LargeBinary(), nullable=True))
    for row in conn.execute(sa.select(_integration)).all():
        settings = dict(row.settings or {})
        definition = settings.pop("FlowDefinition", None)
        if definition is None:
            continue
        sealed = cipher(row.domain_name).seal_record(INTEGRATION_TABLE, row.uri, definition)
        conn.execute(
            sa.update(_integration)
            .where(_integration.c.domain_name == row.domain_name, _integration.c.uri == row.uri)
            .values(settings=settings, flow_sealed=sealed)
        )
    if secure_delete is not None:
        # The connection goes back to the pool: as it was.
        conn.exec_driver_sql(f"PRAGMA secure_delete={int(secure_delete)}")


def downgrade() -> None:
    conn = op.get_bind()
    cipher = _ciphers(conn)

    for row in conn.execute(
        sa.select(_integration).where(_integration.c.flow_sealed.is_not(None))
    ).all():
        definition = cipher(row.domain_name).open_record(
            INTEGRATION_TABLE, row.uri, bytes(row.flow_sealed)
        )
        conn.execute(
            sa.update(_integration)
            .where(_integration.c.domain_name == row.domain_name, _integration.c.uri == row.uri)
            .values(settings={**(row.settings or {}), "FlowDefinition": definition})
        )
    with op.batch_alter_table("integration") as batch:
        batch.drop_column("flow_sealed")

    with op.batch_alter_table("flow_run") as batch:
        batch.add_column(sa.Column("error", sa.Text(), nullable=True))
    for row in conn.execute(sa.select(_run).where(_run.c.error_sealed.is_not(None))).all():
        opened = cipher(row.domain_name).open_record(RUN_TABLE, row.run_id, bytes(row.error_sealed))
        conn.execute(
            sa.update(_run)
            .where(_run.c.domain_name == row.domain_name, _run.c.run_id == row.run_id)
            .values(error=opened["error"])
        )
    with op.batch_alter_table("flow_run") as batch:
        batch.drop_column("error_sealed")

    # A digest cannot be turned back into its key: the checkpoints are dropped, and the flows'
    # next runs read their items again (applying a record twice changes nothing).
    _rebuild_items(
        "item_digest",
        sa.Column("item_key", sa.String(length=1024), nullable=False),
        None,
    )
