"""How many advisory locks the write transactions of a test hold, counted by PostgreSQL itself:
as each transaction commits, a statement on its own connection counts its session's advisory
locks in pg_locks (store.advisory takes them transaction-scoped, so they are all still held
then). The tests of store.chunks bound what the largest held; on SQLite, which takes none, it
only counts the commits."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import event
from sqlalchemy.engine import Connection

from openprofiles.context import Services

_COUNT = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
    "AND granted"
)


@dataclass
class Commits:
    """The advisory locks held by each transaction committed, in order (0 each on SQLite)."""

    locks: list[int] = field(default_factory=list)

    @property
    def most(self) -> int:
        return max(self.locks, default=0)


@contextmanager
def counting_commits(services: Services) -> Iterator[Commits]:
    """The commits of `services`' engine while the block runs, with the advisory locks each
    held as it committed."""
    seen = Commits()
    sqlite = services.database.is_sqlite

    def on_commit(conn: Connection) -> None:
        if sqlite:
            seen.locks.append(0)
            return
        # Straight to the driver, inside the transaction being committed (a statement through
        # the Connection here would re-enter its commit).
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(_COUNT)
            seen.locks.append(int(cursor.fetchone()[0]))
        finally:
            cursor.close()

    engine = services.database.engine
    event.listen(engine, "commit", on_commit)
    try:
        yield seen
    finally:
        event.remove(engine, "commit", on_commit)
