"""Dead letters of a record read again, racing other writers; `dlq retry ID...` checking every id
first — from the review of the session that made letters of re-read records one letter."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, delete, update
from tests.support.backends import database_url_for
from tests.support.between_statements import before_statement
from tests.support.lock_waits import second_writer_meets_first
from tests.unit.ingest.conftest import DOMAIN, crm_type, make_domain, put_type

from openprofiles.app import build_services
from openprofiles.context import Services, Tx
from openprofiles.dlq import service
from openprofiles.dlq.models import DeadLetter
from openprofiles.dlq.sinks import dead_letter, dead_letter_in
from openprofiles.errors import NotFound
from openprofiles.objects.expiry import purge_once
from openprofiles.settings import Settings
from openprofiles.store.conflicts import retrying
from openprofiles.store.schema import dlq_message

ORIGIN = "File a.jsonl, line 2"
RECORD = json.dumps({"id": "x"})


def letter_in(tx: Tx) -> DeadLetter:
    """The record at ORIGIN dead-lettered within `tx`, as a file load or a flow run does."""
    return dead_letter_in(
        tx,
        domain_name=DOMAIN,
        object_type_name="Crm",
        object_json=RECORD,
        reason="No profile matched.",
        category="no_profile",
        origin=ORIGIN,
    )


def letter_from_file(services: Services) -> str:
    return dead_letter(
        services,
        domain_name=DOMAIN,
        object_type_name="Crm",
        object_json=RECORD,
        reason="No profile matched.",
        category="no_profile",
        origin=ORIGIN,
    ).message_id


@pytest.fixture
def pg_services(tmp_path: Path) -> Iterator[Services]:
    """Services on PostgreSQL only: on SQLite the one writer serialises the two transactions
    this race needs."""
    with database_url_for("postgres", tmp_path) as url:
        built = build_services(Settings(data_dir=tmp_path / "data", database_url=url))
        try:
            yield built
        finally:
            built.database.dispose()


@pytest.mark.postgres
def test_a_letter_deleted_while_its_record_is_read_again_gets_a_new_one(
    pg_services: Services,
) -> None:
    """The second reading found the letter, another writer (the expiry purge, dlq purge, a
    retry) deleted it, and the attempt it counted on nothing ended in NotFound: the file load
    stopped and the flow run failed."""
    services = pg_services
    make_domain(services)
    first = letter_from_file(services)
    other = create_engine(services.settings.database_url or "")

    def purge_it() -> None:
        with other.begin() as conn:
            conn.execute(delete(dlq_message).where(dlq_message.c.message_id == first))

    counted = (
        update(dlq_message)
        .where(dlq_message.c.domain_name == DOMAIN, dlq_message.c.message_id == first)
        .values(
            attempts=dlq_message.c.attempts + 1,
            last_attempt_at=None,
            reason_category="no_profile",
            sealed=b"",
        )
    )
    try:
        with services.write() as tx, before_statement(tx.conn, counted, purge_it) as ran:  # type: ignore[arg-type]
            again = dead_letter_in(
                tx,
                domain_name=DOMAIN,
                object_type_name="Crm",
                object_json=RECORD,
                reason="No profile matched.",
                category="no_profile",
                origin=ORIGIN,
            )
    finally:
        other.dispose()
    assert ran == [True]
    assert again.message_id != first and again.attempts == 1
    with services.read() as tx:
        assert [x.message_id for x in service.list_messages(tx, domain_name=DOMAIN)] == [
            again.message_id
        ]


@pytest.mark.postgres
def test_two_writers_dead_lettering_one_record_at_once_count_two_attempts_without_a_rerun(
    pg_services: Services,
) -> None:
    """The same record from the same place dead-lettered by two transactions at once (two runs
    reading one file or flow item): both found no letter, both inserted one, and the second met
    the unique index on the repeat digest, so store.conflicts ran its whole transaction again
    (a flow's batch ingested anew) to count the attempt. Now the second waits for the first and
    counts its attempt on the first's letter, run once."""
    services = pg_services
    make_domain(services)
    runs: list[bool] = []

    def second_writer() -> DeadLetter:
        runs.append(True)
        with services.write() as tx:
            return letter_in(tx)

    first: list[DeadLetter] = []
    outcome = second_writer_meets_first(
        services, lambda tx: first.append(letter_in(tx)), lambda: retrying(second_writer)
    )

    assert isinstance(outcome, DeadLetter), outcome
    assert len(runs) == 1, "the second writer's transaction was run again"
    assert outcome.message_id == first[0].message_id
    assert outcome.attempts == 2
    with services.read() as tx:
        stored = service.list_messages(tx, domain_name=DOMAIN)
    assert [(x.message_id, x.attempts) for x in stored] == [(first[0].message_id, 2)]


def test_retrying_ids_checks_every_id_before_applying_any(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the ids in several batches, the ones before an unknown id were applied and
    removed, and only the error was reported."""
    monkeypatch.setattr(service, "RETRY_BATCH", 2)
    make_domain(services)
    put_type(services, "Crm", crm_type())
    ids = [
        dead_letter(
            services,
            domain_name=DOMAIN,
            object_type_name="Crm",
            object_json=json.dumps({"id": str(n), "email": f"r{n}@example.com"}),
            reason="No profile matched.",
            category="no_profile",
        ).message_id
        for n in range(3)
    ]
    with services.write() as tx:
        service.purge(tx, domain_name=DOMAIN, message_ids=[ids[2]])
    with pytest.raises(NotFound, match=ids[2]):
        service.retry_in_batches(services, domain_name=DOMAIN, message_ids=ids)
    with services.read() as tx:
        assert service.count(tx, domain_name=DOMAIN) == 2


def test_expired_letters_are_purged_a_batch_per_transaction(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first purge after an upgrade deleted every letter past retention in one
    transaction, holding SQLite's writer for as long."""
    monkeypatch.setattr(service, "PURGE_BATCH", 2)
    make_domain(services)
    for n in range(5):
        dead_letter(
            services,
            domain_name=DOMAIN,
            object_type_name="Crm",
            object_json=json.dumps({"id": str(n)}),
            reason="No profile matched.",
            category="no_profile",
        )
    with services.write() as tx:
        tx.conn.execute(update(dlq_message).values(created_at=tx.now - timedelta(days=31)))
    writes: list[Any] = []
    real = services.write

    def counting() -> Any:
        writes.append(True)
        return real()

    monkeypatch.setattr(services, "write", counting)
    assert purge_once(services) == 5
    # Objects in one, then letters 2 + 2 + 1.
    assert len(writes) == 4
    with services.read() as tx:
        assert service.count(tx, domain_name=DOMAIN) == 0
