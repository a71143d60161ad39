"""Profile writes racing other writers of the same profile on PostgreSQL (several server
processes): the second writer waits for the first and works from what the first committed. Each
test keeps the first writer's transaction open until the second waits for one of its locks (or
finishes without waiting, which is how each race went wrong before the writers locked)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text, update
from tests.support.backends import postgres_schema_url
from tests.support.lock_waits import (
    WAIT_BOUND_SECONDS,
    second_writer_meets_first,
    until_blocked_by,
)

from openprofiles.app import build_services
from openprofiles.context import Principal, RequestContext, Services, Tx
from openprofiles.domains.handlers import create_domain
from openprofiles.errors import NotFound
from openprofiles.identity.service import merge_profiles
from openprofiles.profiles import service
from openprofiles.settings import Settings
from openprofiles.store.schema import profile

pytestmark = pytest.mark.postgres

D = "races"


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Services]:
    with postgres_schema_url() as url:
        services = build_services(Settings(data_dir=tmp_path / "data", database_url=url))
        try:
            create_domain(
                RequestContext(services=services, principal=Principal("t", "admin")),
                {"DomainName": D, "DefaultExpirationDays": 5},
            )
            yield services
        finally:
            services.database.dispose()


def _create(services: Services, **fields: str) -> str:
    with services.write() as tx:
        return service.create_profile(tx, domain_name=D, fields=dict(fields)).profile_id


def _update(services: Services, profile_id: str, **changes: str) -> None:
    with services.write() as tx:
        service.update_profile(tx, domain_name=D, profile_id=profile_id, changes=changes)


def _merge(main: str, merged: str) -> Callable[[Tx], object]:
    return lambda tx: merge_profiles(tx, domain_name=D, main_profile_id=main, profile_ids=[merged])


def _keys(services: Services, profile_id: str) -> dict[str, list[str]]:
    with services.read() as tx:
        return service.profile_keys(tx, domain_name=D, profile_id=profile_id)


def test_two_updates_of_one_profile_both_count(pg: Services) -> None:
    ada = _create(pg, EmailAddress="ada@example.com")

    def first(tx: Tx) -> None:
        service.update_profile(tx, domain_name=D, profile_id=ada, changes={"FirstName": "Ada"})

    outcome = second_writer_meets_first(pg, first, lambda: _update(pg, ada, LastName="Lovelace"))
    assert outcome is None
    with pg.read() as tx:
        fields = service.get_profile(tx, domain_name=D, profile_id=ada).fields
    assert (fields.get("FirstName"), fields.get("LastName")) == ("Ada", "Lovelace")


def test_a_key_added_to_a_profile_being_merged_away_is_refused(pg: Services) -> None:
    """AddProfileKey waits for the merge, then finds the id merged away: NotFound, as for any
    merged-away id (profiles.service docstring), and the key is on neither profile."""
    main, dup = _create(pg, FirstName="Ada"), _create(pg, FirstName="Augusta")

    def add() -> str:
        with pg.write() as tx:
            return service.add_profile_key(
                tx, domain_name=D, profile_id=dup, key_name="loyaltyId", values=["L-1"]
            )

    outcome = second_writer_meets_first(pg, _merge(main, dup), add)
    assert isinstance(outcome, NotFound) and f"merged into {main}" in outcome.message
    assert "loyaltyId" not in _keys(pg, main)
    assert "loyaltyId" not in _keys(pg, dup)


def test_a_key_deleted_from_a_profile_being_merged_away_is_refused(pg: Services) -> None:
    """DeleteProfileKey waits for the merge, then finds the id merged away: NotFound, and the
    key the merge moved stays on the survivor."""
    main, dup = _create(pg, FirstName="Ada"), _create(pg, FirstName="Augusta")
    with pg.write() as tx:
        service.add_profile_key(
            tx, domain_name=D, profile_id=dup, key_name="loyaltyId", values=["L-1"]
        )

    def delete() -> None:
        with pg.write() as tx:
            service.delete_profile_key(
                tx, domain_name=D, profile_id=dup, key_name="loyaltyId", values=["L-1"]
            )

    outcome = second_writer_meets_first(pg, _merge(main, dup), delete)
    assert isinstance(outcome, NotFound) and f"merged into {main}" in outcome.message
    assert _keys(pg, main).get("loyaltyId") == ["L-1"]


def test_a_writer_that_locked_a_profile_second_reads_what_the_first_wrote(pg: Services) -> None:
    ada = _create(pg, FirstName="Ada")

    def first(tx: Tx) -> None:
        service.lock_profiles(tx, domain_name=D, profile_ids=[ada])
        record = service.get_profile(tx, domain_name=D, profile_id=ada)
        record.fields["FirstName"] = "Augusta"
        service.save_profile(tx, domain_name=D, record=record)

    def second() -> str:
        with pg.write() as tx:
            service.lock_profiles(tx, domain_name=D, profile_ids=[ada])
            return str(service.get_profile(tx, domain_name=D, profile_id=ada).fields["FirstName"])

    assert second_writer_meets_first(pg, first, second) == "Augusta"


def test_a_profile_merged_away_while_its_lock_was_awaited_leads_to_the_survivor(
    pg: Services,
) -> None:
    ada, augusta = _create(pg, FirstName="Ada"), _create(pg, FirstName="Augusta")

    def first(tx: Tx) -> None:
        service.lock_profiles(tx, domain_name=D, profile_ids=[ada, augusta])
        tx.conn.execute(
            update(profile)
            .where(profile.c.domain_name == D, profile.c.profile_id == ada)
            .values(merged_into=augusta)
        )

    def second() -> str | None:
        with pg.write() as tx:
            return service.lock_live_profile(tx, domain_name=D, profile_id=ada)

    assert second_writer_meets_first(pg, first, second) == augusta


def test_a_delete_locks_the_profiles_merged_into_it_in_id_order(pg: Services) -> None:
    """DeleteProfile of L, X merged into L, locks both; so does an undo of that merge, in id
    order (store.advisory). The delete locked L first, then X: holding L while it waited for X,
    it deadlocked with an undo holding X and waiting for L (PostgreSQL then failed one of
    them). Now it locks them in id order too: with the first of them held by another
    transaction, the delete waits for it holding neither, and the other can still be taken."""
    low, high = sorted([_create(pg, FirstName="Ada"), _create(pg, FirstName="Augusta")])
    with pg.write() as tx:
        merge_profiles(tx, domain_name=D, main_profile_id=high, profile_ids=[low])
    out: list[BaseException | None] = []

    def delete() -> None:
        try:
            with pg.write() as tx:
                service.delete_profile(tx, domain_name=D, profile_id=high)
            out.append(None)
        except BaseException as exc:  # handed to the test
            out.append(exc)

    deleting = threading.Thread(target=delete)
    with pg.write() as tx:
        service.lock_profiles(tx, domain_name=D, profile_ids=[low])
        pid = tx.conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        deleting.start()
        until_blocked_by(pg, pid, "the delete")
        with pg.write() as other:
            # Would fail at once (lock unavailable) if the waiting delete held it.
            service.lock_profiles(other, domain_name=D, profile_ids=[high], wait=False)
    deleting.join(WAIT_BOUND_SECONDS)
    assert out == [None]
    with pg.read() as tx:
        assert service.get_profiles(tx, domain_name=D, profile_ids=[low, high]) == {}
