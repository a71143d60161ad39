"""web usernames and dead letters' sink errors sealed

A username is personal data of a member of staff (often an e-mail address), and `web_user`
held it in clear as its primary key, `web_session` as its reference to the user. Now:

* `web_user.username` becomes `username_digest`, the blind-index digest of the name under the
  system cipher (key name `@webUser`), which sign-in computes from the name typed, and
  `username_sealed`: `{"username": name}` sealed by the system cipher, bound to
  ("web_user", the digest in hex), opened to show the name.
* `web_session.username` becomes `username_digest`, referring to the user's row; signed-in
  sessions stay signed in.

`dlq_message.sink_error` held why a record's send to SQS failed: the queue's URL and the
queue's or the network's own error text, which may echo what was sent (the reason, quoting a
record's value). It now holds only dlq.service's fixed marks (`SQS_FAILED` for any failure);
the text is sealed in `sink_sealed` with the domain's key as `{"detail": text}`, bound to
(domain, "dlq_message_sink", message id).

The system cipher and the domains' ciphers come from the key manager `store.migrate` hands over
(`keys`); only what has rows to convert is unwrapped. A key that cannot be used (a disabled
default key, KMS unreachable) stops the upgrade with its message, and nothing changes until it
can be; a domain's key that is gone for good, until the domain is dropped (the message,
domains.unreadable.refusal, names every such domain and the command). On SQLite,
`secure_delete` is on while the rows are rewritten, so the clear values do not linger in the
database file's free pages.

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

# As users.service digests and seals names (a migration keeps its own copy: it must go on reading
# what it wrote when the code moves on).
USERNAME_KEY_NAME = "@webUser"
USER_TABLE = "web_user"
# As dlq.service stores sink errors.
SINK_TABLE = "dlq_message_sink"
SQS_PENDING = (
    "the send to SQS has not happened yet (it follows the commit of the record's transaction)"
)
NO_QUEUE = "the domain had no dead-letter queue when the record was dead-lettered"
SQS_FAILED = "the send to SQS failed"
SENT_WITHOUT_OBJECT = "sent to SQS with a note in place of its object: "
SQS_RESENDING = "a resend to SQS is under way, started at "
# The mark 0014 gives dead letters whose delivery was not recorded (a fixed mark, kept in clear).
NOT_RECORDED = (
    "whether the record reached SQS was not recorded (it was dead-lettered by a version from "
    "before 2026-11-29 00:38 UTC)"
)

# Dead letters read at a time.
BATCH = 500

_USER_COLUMNS = ("password_hash", "role", "created_at")
_SESSION_COLUMNS = ("id_digest", "csrf_token", "expires_at")


_domain = sa.table("domain", sa.column("name"), sa.column("key_id"), sa.column("wrapped_key"))
_dlq = sa.table(
    "dlq_message",
    sa.column("domain_name"),
    sa.column("message_id"),
    sa.column("sink_error"),
    sa.column("sink_sealed"),
)


def _keys() -> Any:
    keys = context.config.attributes.get("keys")
    if keys is None:
        raise RuntimeError(
            "Migration 0020 seals web usernames and dead letters' sink errors with the system's "
            "and the domains' keys: run it through openprofiles.store.migrate with the key "
            "manager (keys=...)."
        )
    return keys


def _domain_ciphers(conn: sa.Connection) -> Callable[[str], Any]:
    """The cipher of a domain, its data key unwrapped on first use."""
    cache: dict[str, Any] = {}

    def cipher(domain_name: str) -> Any:
        if domain_name not in cache:
            from openprofiles.crypto.errors import KeyUnusable
            from openprofiles.domains.unreadable import refusal

            keys = _keys()
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
                    needs=(
                        f"seals the dead letters' sink errors of domain {domain_name} with its key"
                    ),
                    domain_name=domain_name,
                    error=exc,
                ) from exc
        return cache[domain_name]

    return cipher


def _system_cipher() -> Any:
    from openprofiles.crypto.errors import KeyUnusable

    keys = _keys()
    try:
        return keys.system_cipher()
    except KeyUnusable as exc:
        raise KeyUnusable(
            "Upgrading the database seals the web users' names with the system key, which "
            f"cannot be used: {exc.message} Nothing was changed.",
            exc.problem,
        ) from exc


def _create_tables(name_columns: list[sa.Column[Any]], reference: sa.Column[Any]) -> None:
    """web_user keyed by the first of `name_columns`, web_session referring to it by
    `reference` (a column of the same name and type)."""
    key = name_columns[0].name
    op.create_table(
        "web_user",
        *name_columns,
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(key),
    )
    op.create_table(
        "web_session",
        sa.Column("id_digest", sa.LargeBinary(length=32), nullable=False),
        reference,
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint([key], [f"web_user.{key}"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id_digest"),
    )
    op.create_index(f"ix_web_session_{key}", "web_session", [key])


def _rebuild(
    old_names: tuple[str, ...],
    name_columns: list[sa.Column[Any]],
    reference: sa.Column[Any],
    convert: Any,
) -> None:
    """Both tables again with `name_columns` in place of `old_names` (the user's key first):
    `convert(row)` gives a user row's new name columns, and each session's reference is the
    new key of its user."""
    conn = op.get_bind()
    old_key = old_names[0]
    user = sa.table("web_user", *(sa.column(c) for c in (*old_names, *_USER_COLUMNS)))
    session = sa.table("web_session", *(sa.column(c) for c in (*_SESSION_COLUMNS, old_key)))
    users = conn.execute(sa.select(user)).all()
    sessions = conn.execute(sa.select(session)).all()
    converted = {_key(r, old_key): convert(r) for r in users}
    op.drop_table("web_session")
    op.drop_table("web_user")
    _create_tables(name_columns, reference)
    new_key = name_columns[0].name
    if users:
        new_user = sa.table(
            "web_user", *(sa.column(c.name) for c in name_columns), *map(sa.column, _USER_COLUMNS)
        )
        conn.execute(
            sa.insert(new_user),
            [
                {**{c: getattr(r, c) for c in _USER_COLUMNS}, **converted[_key(r, old_key)]}
                for r in users
            ],
        )
    if sessions:
        new_session = sa.table("web_session", *map(sa.column, (*_SESSION_COLUMNS, new_key)))
        conn.execute(
            sa.insert(new_session),
            [
                {
                    **{c: getattr(r, c) for c in _SESSION_COLUMNS},
                    new_key: converted[_key(r, old_key)][new_key],
                }
                for r in sessions
            ],
        )


def _key(row: Any, column: str) -> Any:
    value = getattr(row, column)
    # psycopg returns bytea as memoryview, which is not hashable.
    return bytes(value) if isinstance(value, memoryview) else value


def _secure_delete(on: bool | int) -> int | None:
    """Turn SQLite's secure_delete on (or back as it was); its former value, None elsewhere."""
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return None
    former = int(conn.exec_driver_sql("PRAGMA secure_delete").scalar_one())
    conn.exec_driver_sql(f"PRAGMA secure_delete={int(on)}")
    return former


def upgrade() -> None:
    conn = op.get_bind()
    has_users = conn.execute(sa.text("SELECT count(*) FROM web_user")).scalar_one() > 0
    cipher = _system_cipher() if has_users else None

    def convert(row: Any) -> dict[str, Any]:
        assert cipher is not None
        digest = cipher.digest(USERNAME_KEY_NAME, row.username)
        sealed = cipher.seal_record(USER_TABLE, digest.hex(), {"username": row.username})
        return {"username_digest": digest, "username_sealed": sealed}

    former = _secure_delete(True)
    _rebuild(
        ("username",),
        [
            sa.Column("username_digest", sa.LargeBinary(length=16), nullable=False),
            sa.Column("username_sealed", sa.LargeBinary(), nullable=False),
        ],
        sa.Column("username_digest", sa.LargeBinary(length=16), nullable=False),
        convert,
    )
    _seal_sink_errors(conn)
    if former is not None:
        # The connection goes back to the pool: as it was.
        _secure_delete(former)


def _seal_sink_errors(conn: sa.Connection) -> None:
    with op.batch_alter_table("dlq_message") as batch:
        batch.add_column(sa.Column("sink_sealed", sa.LargeBinary(), nullable=True))
    cipher = _domain_ciphers(conn)
    marks = _dlq.c.sink_error.in_([SQS_PENDING, NO_QUEUE, SQS_FAILED, NOT_RECORDED])
    for row in _dlq_rows(
        conn,
        _dlq.c.sink_error.is_not(None),
        ~marks,
        ~_dlq.c.sink_error.startswith(SQS_RESENDING, autoescape=True),
    ):
        error: str = row.sink_error
        if error.startswith(SENT_WITHOUT_OBJECT):
            mark, detail = SENT_WITHOUT_OBJECT, error[len(SENT_WITHOUT_OBJECT) :]
        else:
            mark, detail = SQS_FAILED, error
        sealed = cipher(row.domain_name).seal_record(SINK_TABLE, row.message_id, {"detail": detail})
        conn.execute(
            sa.update(_dlq)
            .where(_dlq.c.domain_name == row.domain_name, _dlq.c.message_id == row.message_id)
            .values(sink_error=mark, sink_sealed=sealed)
        )


def _dlq_rows(conn: sa.Connection, *where: Any) -> Iterator[Any]:
    """The dead letters matching `where`, read BATCH at a time in key order (a domain's dead
    letters need not fit in memory at once); rows updated meanwhile are not read again."""
    after: tuple[str, str] = ("", "")
    while True:
        rows = conn.execute(
            sa.select(_dlq)
            .where(*where, sa.tuple_(_dlq.c.domain_name, _dlq.c.message_id) > after)
            .order_by(_dlq.c.domain_name, _dlq.c.message_id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        after = (rows[-1].domain_name, rows[-1].message_id)
        yield from rows


def downgrade() -> None:
    conn = op.get_bind()
    cipher_of = _domain_ciphers(conn)
    for row in _dlq_rows(conn, _dlq.c.sink_sealed.is_not(None)):
        opened = cipher_of(row.domain_name).open_record(
            SINK_TABLE, row.message_id, bytes(row.sink_sealed)
        )
        whole = opened["detail"]
        if row.sink_error == SENT_WITHOUT_OBJECT:
            whole = SENT_WITHOUT_OBJECT + whole
        conn.execute(
            sa.update(_dlq)
            .where(_dlq.c.domain_name == row.domain_name, _dlq.c.message_id == row.message_id)
            .values(sink_error=whole)
        )
    with op.batch_alter_table("dlq_message") as batch:
        batch.drop_column("sink_sealed")

    has_users = conn.execute(sa.text("SELECT count(*) FROM web_user")).scalar_one() > 0
    cipher = _system_cipher() if has_users else None

    def convert(row: Any) -> dict[str, Any]:
        assert cipher is not None
        digest = bytes(row.username_digest)
        opened = cipher.open_record(USER_TABLE, digest.hex(), bytes(row.username_sealed))
        return {"username": opened["username"]}

    _rebuild(
        ("username_digest", "username_sealed"),
        [sa.Column("username", sa.String(length=64), nullable=False)],
        sa.Column("username", sa.String(length=64), nullable=False),
        convert,
    )
