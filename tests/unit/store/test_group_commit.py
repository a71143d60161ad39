"""On the event loop, the writes of one turn share a transaction and are answered after its
commit (store.group_commit), against a real SQLite database."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from tests.support.event_loop import run_in_fresh_thread

from openprofiles.blocking import LoopRequest, WouldBlock, note_commit, on_the_loop
from openprofiles.context import Tx
from openprofiles.store.database import Database


@pytest.fixture
def database(tmp_path: Path) -> Any:
    db = Database(f"sqlite:///{tmp_path / 'group.sqlite3'}")
    with db.write() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER PRIMARY KEY, parent INTEGER REFERENCES t(n))"))
    yield db, tmp_path / "group.sqlite3"
    db.dispose()


def _committed(path: Path) -> list[int]:
    """The rows another connection sees: what has been committed."""
    with sqlite3.connect(path) as reader:
        return [n for (n,) in reader.execute("SELECT n FROM t ORDER BY n")]


def _insert(db: Database, *numbers: int, parent: int | None = None) -> LoopRequest:
    """One request on the loop writing `numbers`; its state (what its answer waits for)."""
    with on_the_loop() as state, db.write() as conn:
        for n in numbers:
            conn.execute(text("INSERT INTO t VALUES (:n, :parent)"), {"n": n, "parent": parent})
    return state


def test_writes_of_one_turn_share_one_commit_and_are_answered_after_it(database: Any) -> None:
    db, path = database

    async def scenario() -> None:
        first = _insert(db, 1)
        second = _insert(db, 2)
        assert first.reply_after is not None and first.reply_after is second.reply_after
        # Neither is committed, or answered, before the loop's turn ends.
        assert not first.reply_after.done()
        assert _committed(path) == []
        assert await first.reply_after is None
        assert _committed(path) == [1, 2]
        # The writer lock was given back with the commit: the next write opens a new group.
        third = _insert(db, 3)
        assert third.reply_after is not first.reply_after
        assert await third.reply_after is None

    run_in_fresh_thread(scenario())
    assert _committed(path) == [1, 2, 3]
    # A write outside the loop afterwards takes the lock at once and commits by itself.
    with db.write() as conn:
        conn.execute(text("INSERT INTO t VALUES (4, NULL)"))
    assert _committed(path) == [1, 2, 3, 4]


def test_a_failing_write_is_rolled_back_alone_and_still_waits_for_the_commit(
    database: Any,
) -> None:
    db, path = database

    async def scenario() -> None:
        _insert(db, 1)
        with pytest.raises(ValueError), on_the_loop() as failed, db.write() as conn:
            conn.execute(text("INSERT INTO t VALUES (2, NULL)"))
            raise ValueError("the handler rejected it")
        # Restartable work too: nothing of an attempt that would block stays behind.
        with pytest.raises(WouldBlock), on_the_loop(), db.write() as conn:
            conn.execute(text("INSERT INTO t VALUES (3, NULL)"))
            raise WouldBlock("a KMS call")
        last = _insert(db, 4)
        # Its answer may rest on the others' writes, so it waits for their commit as well.
        assert failed.reply_after is last.reply_after
        assert await last.reply_after is None

    run_in_fresh_thread(scenario())
    assert _committed(path) == [1, 4]


def test_a_write_inside_a_write_nests_in_the_shared_transaction(database: Any) -> None:
    db, path = database

    async def scenario() -> None:
        with on_the_loop() as state, db.write() as conn:
            conn.execute(text("INSERT INTO t VALUES (1, NULL)"))
            with pytest.raises(ValueError), db.write() as inner:
                inner.execute(text("INSERT INTO t VALUES (2, NULL)"))
                raise ValueError("inner write fails")
            with db.write() as inner:
                inner.execute(text("INSERT INTO t VALUES (3, NULL)"))
        assert state.reply_after is not None
        assert await state.reply_after is None

    run_in_fresh_thread(scenario())
    assert _committed(path) == [1, 3]


def test_a_failed_commit_applies_nothing_and_fails_every_member(database: Any) -> None:
    db, path = database

    async def scenario() -> None:
        first = _insert(db, 1)
        with on_the_loop() as second, db.write() as conn:
            # A foreign key checked at COMMIT: the insert succeeds, the shared commit fails.
            conn.execute(text("PRAGMA defer_foreign_keys=ON"))
            conn.execute(text("INSERT INTO t VALUES (2, 999)"))
        assert first.reply_after is second.reply_after
        assert first.reply_after is not None
        failure = await first.reply_after
        assert isinstance(failure, Exception)
        assert "FOREIGN KEY" in str(failure)
        # The lock was given back: the next turn's writes commit.
        assert await _insert(db, 3).reply_after is None  # type: ignore[misc]

    run_in_fresh_thread(scenario())
    assert _committed(path) == [3]


def test_the_writer_lock_is_held_from_the_first_member_to_the_commit(database: Any) -> None:
    db, _ = database
    lock = db._writer_lock

    async def scenario() -> None:
        state = _insert(db, 1)
        assert lock._thread_lock.locked()
        assert state.reply_after is not None
        await state.reply_after
        assert not lock._thread_lock.locked()

    run_in_fresh_thread(scenario())


def test_without_a_running_loop_a_write_commits_on_its_own(database: Any) -> None:
    db, path = database
    outcome: list[Any] = []

    def in_a_thread_without_a_loop() -> None:
        outcome.append(_insert(db, 1))

    thread = threading.Thread(target=in_a_thread_without_a_loop)
    thread.start()
    thread.join()
    assert outcome[0].reply_after is None
    assert _committed(path) == [1]


def test_a_group_whose_loop_stopped_is_rolled_back_when_the_database_closes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "stopped.sqlite3"
    db = Database(f"sqlite:///{path}")
    with db.write() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER PRIMARY KEY, parent INTEGER)"))

    async def write_and_stop_the_loop() -> None:
        _insert(db, 1)
        # The loop ends this turn and never runs the next, where the commit is scheduled.
        asyncio.get_running_loop().stop()

    def run_a_loop_that_stops() -> None:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(write_and_stop_the_loop())
        loop.close()

    # In a fresh thread, as _run: this thread may have a loop running (Playwright).
    thread = threading.Thread(target=run_a_loop_that_stops)
    thread.start()
    thread.join()
    assert db._group is not None and db._group.open
    db.dispose()
    assert _committed(path) == []


def test_an_action_after_commit_is_refused_once_a_write_joined_a_shared_transaction() -> None:
    """Such an action (an SQS send) would run when the request's own block ends, before the
    shared commit: on the loop it moves the request to a thread while it still can, and is a
    programming error after."""
    tx = Tx(conn=None, services=None)  # type: ignore[arg-type]
    with on_the_loop():
        with pytest.raises(WouldBlock):
            tx.after_commit(lambda: None)
        note_commit()
        with pytest.raises(RuntimeError, match="after a write"):
            tx.after_commit(lambda: None)
    assert tx.after_commit_actions == []
    tx.after_commit(print)  # in a worker thread it is queued as ever
    assert tx.after_commit_actions == [print]
