"""Bring a database's schema up to date with Alembic (run at server start and by the CLI).

A migration that seals data already stored (0018) needs the domains' keys: the key manager is
handed to it in the Alembic config's attributes (`keys`). Without one, such a migration runs as
long as it has nothing to seal (an empty database), and stops saying so otherwise.

Several processes may start at once on one database (`serve --workers N`, a CLI command beside
a server, containers starting together). Each brings the schema up to date, and on a fresh
database they all found it empty and ran the same migrations together: on PostgreSQL all but
one failed (`duplicate key value violates unique constraint "pg_type_typname_nsp_index"`: two
CREATE TABLEs of one name), on SQLite with "database is locked". So the upgrade runs alone: on
PostgreSQL under a session advisory lock held for the whole run by the migrating connection
(one per schema: the migrations create their tables in the connection's current schema); on
SQLite under the writer lock (store.writer_lock, taken by every writer) in a BEGIN IMMEDIATE
transaction. The next process waits, then finds the schema already at its revision.

`migrating` is that same lock and transaction for a change made outside Alembic on a database
that may not be upgraded yet (domains.unreadable drops a domain whose key is gone, so that the
upgrade can go on): it runs alone too, and commits whole or not at all.

`before_migrating` is the read transaction of what a process reads before its upgrade (the
keyring checks of app.build_services). Reading several tables in one transaction, it keeps a
lock on each until it ends, while another process's upgrade, holding the tables it has ALTERed
already, waits to ALTER one of them: on PostgreSQL each then waited for the other ("deadlock
detected", and one of the processes did not start). So on PostgreSQL that transaction holds the
migration lock shared: it waits for an upgrade under way to end before it reads anything, and an
upgrade waits for the reads to end before it ALTERs anything (readers share the lock with each
other). Rather than a transaction per statement: the lock covers every read made there, those of
helpers handed the connection (domains.unreadable's) included, however many statements they
run, and no upgrade commits between two of them, so what they compare is of one schema and one
moment. On SQLite a reader blocks no writer (WAL) and never waits for one: a plain read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection

from openprofiles.store.advisory import lock_id
from openprofiles.store.database import Database

if TYPE_CHECKING:
    from openprofiles.crypto.domain_keys import KeyManager

logger = logging.getLogger("openprofiles.store")

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def head_revision() -> str:
    """The newest schema revision this version's migrations bring a database to (what
    `openprofiles --version` names, and what an older version's refusal is compared with)."""
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(config).get_current_head()
    if head is None:  # a build without its migrations
        raise RuntimeError(f"No migrations found in {MIGRATIONS_DIR}.")
    return head


def upgrade_to_head(database: Database, keys: KeyManager | None = None) -> None:
    upgrade_to(database, "head", keys)


def upgrade_to(database: Database, revision: str, keys: KeyManager | None = None) -> None:
    """Upgrade to `revision` (tests of a migration's data start from the one before it)."""
    _run(database, keys, lambda config: command.upgrade(config, revision))


def downgrade_to(database: Database, revision: str, keys: KeyManager | None = None) -> None:
    """Downgrade to `revision` (tests of a migration's downgrade)."""
    _run(database, keys, lambda config: command.downgrade(config, revision))


def _run(database: Database, keys: KeyManager | None, action: Callable[[Config], None]) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["keys"] = keys
    with migrating(database) as conn:
        config.attributes["connection"] = conn
        action(config)


@contextmanager
def migrating(database: Database) -> Iterator[Connection]:
    """A connection in a transaction that commits when the block ends, held by this migration
    alone among the processes that migrate the same database (the module docstring)."""
    if database.is_sqlite:
        # Outside a request, a write of its own: the writer lock, then BEGIN IMMEDIATE.
        with database.write() as conn:
            yield conn
        return
    with database.engine.connect() as conn:
        key = _lock_key(conn)
        # A session lock, taken and kept outside the migration's transaction: it is held until
        # that transaction has committed (or rolled back) and is released below, or when the
        # connection closes if the release cannot be sent.
        # A migration waits for its locks as long as it takes, never the sessions' lock_timeout
        # (store.database): another server's migration, or an ALTER behind a long query, must
        # not fail the start-up. SET LOCAL: the pooled session keeps its own timeout.
        conn.execute(text("SET LOCAL lock_timeout = 0"))
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
        conn.commit()
        try:
            with conn.begin():
                conn.execute(text("SET LOCAL lock_timeout = 0"))
                yield conn
        finally:
            _unlock(conn, key)


@contextmanager
def before_migrating(database: Database) -> Iterator[Connection]:
    """A read transaction for what a process reads before its upgrade, which waits for another
    process's upgrade under way and makes one wait for it, never both (the module docstring)."""
    with database.read() as conn:
        if not database.is_sqlite:
            # As long as the upgrade takes, as the upgrade waits for the lock (`migrating`);
            # then the session's own lock_timeout again for the reads (DEFAULT: its value as
            # the session started, before any SET).
            conn.execute(text("SET LOCAL lock_timeout = 0"))
            conn.execute(
                text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": _lock_key(conn)}
            )
            conn.execute(text("SET LOCAL lock_timeout TO DEFAULT"))
        yield conn


def _lock_key(conn: Connection) -> int:
    """The migration lock of the connection's schema: the migrations create their tables in
    the current schema, so databases in two schemas migrate independently."""
    return lock_id(("migrate", conn.execute(text("SELECT current_schema()")).scalar() or ""))


def _unlock(conn: Connection, key: int) -> None:
    if conn.invalidated or conn.closed:
        return  # the session is over, and its locks with it
    try:
        conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        conn.commit()
    except Exception:
        # The lock must not go back to the pool with the connection: closing the session
        # releases it. (Not raised: it would hide the migration's own error, if any.)
        logger.warning("releasing the migration lock failed; closing its connection")
        conn.invalidate()
