"""Group commit: the writes of the requests the event loop runs in one turn share one SQLite
transaction, and one commit.

A SQLite commit writes every page its transaction changed to the WAL. A CreateProfile changes
about ten pages, several of them the same for every request (the tails of the tables, the upper
levels of the indexes), and with the transaction's start (pool checkout, writer lock, BEGIN) the
commit was about a third of the server's time per request (docs/performance.md, seventh
session). So on the event loop (`openprofiles.blocking`) the first write opens a transaction and
schedules its commit with `loop.call_soon`: the requests the loop already has ready to run in
this turn come first, and their writes join the open transaction, each in a savepoint of its
own. A write that fails rolls back to its savepoint, leaving the others' in place.

Nothing is answered before it is durable, as before: each member's answer waits for the shared
commit (`blocking.reply_after`). If the commit fails, none of the members' writes is applied and
every member is answered with an internal error — including one that failed on its own, since
its answer may rest on another member's write that is now undone.

The transaction holds the writer lock from its first member to its commit: within one turn of
the loop, a few requests' work. Writes in worker threads, and in other processes, wait for it
as they wait for any writer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Connection, RootTransaction

from openprofiles.blocking import CommitOutcome, reply_after

logger = logging.getLogger("openprofiles.store")


class CommitGroup:
    """One open write transaction on an event loop, shared by the writes of several requests.

    `end` is called once the transaction has committed or rolled back (it gives back the
    connection and the writer lock).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        conn: Connection,
        transaction: RootTransaction,
        end: Callable[[CommitGroup], None],
    ) -> None:
        self.loop = loop
        self.conn = conn
        self._transaction = transaction
        self._end = end
        self.outcome: CommitOutcome = loop.create_future()
        self.open = True
        self._savepoints = 0
        loop.call_soon(self.finish)

    @contextmanager
    def member(self) -> Iterator[Connection]:
        """One request's write inside the shared transaction, in a savepoint of its own."""
        if not self.open:
            raise RuntimeError("this commit group has already ended")
        reply_after(self.outcome)
        driver = self.conn.connection.driver_connection
        assert driver is not None
        # Savepoints nest when a member writes inside its own write; names follow the depth.
        name = f"member_{self._savepoints}"
        self._savepoints += 1
        # Straight to the driver, like BEGIN (store/database.py): a member is a few statements.
        driver.execute(f"SAVEPOINT {name}")
        try:
            yield self.conn
            driver.execute(f"RELEASE {name}")
        except BaseException:
            self._undo(driver, name)
            raise
        finally:
            self._savepoints -= 1

    def _undo(self, driver: object, name: str) -> None:
        """Roll the failed member back to its savepoint; if SQLite has already rolled the whole
        transaction back (it does on some errors), end the group with that failure."""
        if not self.open:
            return
        try:
            driver.execute(f"ROLLBACK TO {name}")  # type: ignore[attr-defined]
            driver.execute(f"RELEASE {name}")  # type: ignore[attr-defined]
        except Exception as error:
            self._close(error)

    def finish(self) -> None:
        """Commit what the members wrote (the loop calls this after the turn's requests)."""
        if not self.open:
            return
        try:
            self._transaction.commit()
        except Exception as error:
            self._close(error)
        else:
            self._close(None)

    def abandon(self) -> None:
        """Roll back, for a loop that stopped before the commit (the database is closing)."""
        if self.open:
            self._close(RuntimeError("the event loop stopped before the commit"))

    def _close(self, failure: BaseException | None) -> None:
        self.open = False
        if failure is not None:
            # The type only: an error's text may quote the statement that failed.
            logger.error("a shared write transaction failed: %s", type(failure).__name__)
            try:
                self._transaction.rollback()
            except Exception:  # noqa: BLE001 — the connection is closed below either way
                logger.error("rolling back a failed shared write transaction failed too")
        try:
            self.conn.close()
        finally:
            self._end(self)
            # A stopped loop's future has no one left to tell (abandon).
            if not self.outcome.done() and not self.loop.is_closed():
                self.outcome.set_result(failure)
