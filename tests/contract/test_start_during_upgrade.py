"""A process that starts while another upgrades the database (both backends): its keyring checks
read the credential and domain tables before its own upgrade (app.build_services). On PostgreSQL
they read in one transaction, keeping a lock on credential while the other process's upgrade,
having ALTERed domain (0032) in its one transaction, waited to ALTER credential (0042): the
checks' read of domain then waited for the upgrade, and PostgreSQL ended one of them with
"deadlock detected" (`openprofiles serve` exited "Cannot open the database"). They now hold the
migration lock shared (store.migrate.before_migrating), so the two wait for each other in turn.

The interleaving is set, not raced: the checking process is held just before its read of domain
(a hook on its statements, in its thread), and the upgrading one is started from there; the
checks go on once the upgrade waits for one of their locks (PostgreSQL) or has finished (SQLite,
where a reader blocks no writer)."""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import event, select, text
from sqlalchemy.engine import Connection, Engine

from openprofiles.app import build_services
from openprofiles.context import Services
from openprofiles.settings import Settings
from openprofiles.store import migrate
from openprofiles.store.database import Database
from openprofiles.store.migrate import downgrade_to, head_revision
from openprofiles.store.schema import domain

# Before 0032, which ALTERs domain, and 0042, which ALTERs credential, in the upgrade's order.
BEFORE = "0031"
# A bound on how long either process may take to get where it is awaited, not a delay.
WAIT_BOUND_SECONDS = 60
_BLOCKED_BY = text("SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))")


class _Start(threading.Thread):
    """build_services in a thread of its own, as a process starting; keeps what it raised."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.error: BaseException | None = None

    def run(self) -> None:
        services: Services | None = None
        try:
            services = build_services(self.settings)
        except BaseException as exc:  # handed to the test
            self.error = exc
        finally:
            if services is not None:
                services.database.dispose()


def _blocked_by(watcher: Database, pid: int) -> bool:
    with watcher.engine.connect() as conn:
        return bool(conn.execute(_BLOCKED_BY, {"pid": pid}).scalar())


def test_a_start_checking_the_keyring_waits_for_an_upgrade_instead_of_deadlocking(
    settings: Settings,
) -> None:
    built = build_services(settings)  # the keyring, and a database at the head
    try:
        downgrade_to(built.database, BEFORE, built.keys)
    finally:
        built.database.dispose()

    checking = _Start(settings)
    upgrading = _Start(settings)
    domain_read: list[str] = []
    upgrade_waited: list[bool] = []
    watcher = Database(settings.effective_database_url)

    def hold_before_domain_read(
        conn: Connection, _cursor: Any, statement: str, *_args: Any
    ) -> None:
        if threading.current_thread() is not checking or domain_read:
            return
        wanted = select(domain.c.name, domain.c.key_id, domain.c.wrapped_key)
        if statement != wanted.compile(dialect=conn.dialect).string:
            return
        domain_read.append(statement)
        driver: Any = conn.connection.driver_connection
        pid = None if conn.dialect.name == "sqlite" else driver.info.backend_pid
        upgrading.start()
        deadline = time.monotonic() + WAIT_BOUND_SECONDS
        while upgrading.is_alive():
            if pid is not None and _blocked_by(watcher, pid):
                upgrade_waited.append(True)
                break
            # Waiting on the upgrade, not a delay: it waits for this transaction or finishes.
            upgrading.join(timeout=0.01)
            if time.monotonic() > deadline:
                raise AssertionError("the upgrade neither waited for the checks nor finished")

    event.listen(Engine, "before_cursor_execute", hold_before_domain_read)
    try:
        checking.start()
        checking.join(WAIT_BOUND_SECONDS)
        if domain_read:  # the hook started the upgrade
            upgrading.join(WAIT_BOUND_SECONDS)
    finally:
        event.remove(Engine, "before_cursor_execute", hold_before_domain_read)
    try:
        assert domain_read, "the keyring checks never read the domains"
        assert not checking.is_alive() and not upgrading.is_alive(), "a start never ended"
        assert [checking.error, upgrading.error] == [None, None]
        # On PostgreSQL the upgrade met the checks' transaction (on SQLite it never waits).
        assert upgrade_waited == ([] if settings.is_sqlite else [True])
        with watcher.read() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    finally:
        watcher.dispose()
    assert [v for (v,) in versions] == [head_revision()]


def test_the_reads_before_the_upgrade_keep_the_sessions_lock_timeout(settings: Settings) -> None:
    """The wait for an upgrade is unbounded, as the upgrade's own; the reads then wait for a
    table's lock no longer than any other statement (PostgreSQL's lock_timeout, 30 s)."""
    built = build_services(settings)
    try:
        with migrate.before_migrating(built.database) as conn:
            if not settings.is_sqlite:
                assert conn.execute(text("SHOW lock_timeout")).scalar() == "30s"
            assert conn.execute(select(domain.c.name)).all() == []
    finally:
        built.database.dispose()
