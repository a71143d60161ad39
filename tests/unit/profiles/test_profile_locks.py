"""profiles.service.lock_profiles / lock_live_profile on PostgreSQL: a second writer waits for
the first to commit and then reads what it wrote, and a profile merged away while it waited leads
on to its survivor. (SQLite's one writer serialises writes without them.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import text, update
from tests.support.backends import database_url_for

from openprofiles.app import build_services
from openprofiles.context import Principal, RequestContext, Services
from openprofiles.domains.handlers import create_domain
from openprofiles.profiles import service
from openprofiles.settings import Settings
from openprofiles.store.schema import profile

D = "locks"
# A bound on waiting for the other transaction to be blocked, not a synchronisation delay.
BLOCKED_WITHIN_SECONDS = 30


@pytest.fixture
def pg(tmp_path) -> Iterator[Services]:
    with database_url_for("postgres", tmp_path) as url:
        services = build_services(Settings(data_dir=tmp_path / "data", database_url=url))
        create_domain(
            RequestContext(services=services, principal=Principal("t", "admin")),
            {"DomainName": D, "DefaultExpirationDays": 5},
        )
        try:
            yield services
        finally:
            services.database.dispose()


def _create(services: Services, **fields: str) -> str:
    with services.write() as tx:
        return service.create_profile(tx, domain_name=D, fields=dict(fields)).profile_id


def _wait_until_blocked(services: Services) -> None:
    """Until another session of this database waits for a row lock."""
    deadline = time.monotonic() + BLOCKED_WITHIN_SECONDS
    with services.database.engine.connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock' "
                    "AND query LIKE '%FOR UPDATE%'"
                )
            ).scalar()
            conn.rollback()
            if waiting:
                return
    raise AssertionError("the second writer never waited for the lock")


def _second_writer(services: Services, work: Callable[[], object]) -> tuple[threading.Thread, list]:
    out: list = []

    def run() -> None:
        try:
            out.append(work())
        except BaseException as exc:  # reported by the test
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def test_a_second_writer_waits_and_reads_what_the_first_wrote(pg: Services) -> None:
    ada = _create(pg, FirstName="Ada")

    def second() -> str:
        with pg.write() as tx:
            service.lock_profiles(tx, domain_name=D, profile_ids=[ada])
            return service.get_profile(tx, domain_name=D, profile_id=ada).fields["FirstName"]

    with pg.write() as tx:
        service.lock_profiles(tx, domain_name=D, profile_ids=[ada])
        record = service.get_profile(tx, domain_name=D, profile_id=ada)
        thread, out = _second_writer(pg, second)
        _wait_until_blocked(pg)
        record.fields["FirstName"] = "Augusta"
        service.save_profile(tx, domain_name=D, record=record)
    thread.join()
    assert out == ["Augusta"]


def test_a_profile_merged_away_while_waiting_leads_on_to_its_survivor(pg: Services) -> None:
    ada, augusta = _create(pg, FirstName="Ada"), _create(pg, FirstName="Augusta")

    def second() -> str | None:
        with pg.write() as tx:
            return service.lock_live_profile(tx, domain_name=D, profile_id=ada)

    with pg.write() as tx:
        service.lock_profiles(tx, domain_name=D, profile_ids=[ada, augusta])
        thread, out = _second_writer(pg, second)
        _wait_until_blocked(pg)
        tx.conn.execute(
            update(profile)
            .where(profile.c.domain_name == D, profile.c.profile_id == ada)
            .values(merged_into=augusta)
        )
    thread.join()
    assert out == [augusta]
