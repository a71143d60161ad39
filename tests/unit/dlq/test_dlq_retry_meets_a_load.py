"""`dlq retry` meeting a load of `ingest` that reads the letter's record again (PostgreSQL): the
load takes the record's key locks, then the letter's row to count another attempt on it. The
retry locked the letters' rows first and then waited for the keys: a deadlock, which ended one
of the two. It now takes the keys before the rows."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from tests.support.lock_waits import WAIT_BOUND_SECONDS, postgres_services, until_blocked_by
from tests.unit.ingest.conftest import DOMAIN, crm_type, make_domain, put_type

from openprofiles.context import Services, Tx
from openprofiles.dlq import service
from openprofiles.ingest.pipeline import IngestRejected, ingest_batch
from openprofiles.ingest.rejections import Rejected, dead_letter_all

RECORD = {"id": "c1", "email": "c1@example.com"}
ORIGIN = "File customers.jsonl, line 1"


def _load(tx: Tx) -> list[str]:
    """What a batch of `ingest` does with the record: tries it (its key locks taken), and
    dead-letters it (no profile may be created), counting another attempt on its letter."""
    (outcome,) = ingest_batch(
        tx, domain_name=DOMAIN, object_type_name="Crm", records=[(RECORD, json.dumps(RECORD))]
    )
    assert isinstance(outcome, IngestRejected)
    return dead_letter_all(tx, DOMAIN, "Crm", [Rejected(json.dumps(RECORD), outcome, ORIGIN)])


@pytest.mark.postgres
def test_a_retry_waits_for_a_load_of_its_record_without_holding_the_letter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with postgres_services(tmp_path) as services:
        _meet(services, monkeypatch)


def _meet(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    make_domain(services)
    put_type(services, "Crm", crm_type(AllowProfileCreation=False))
    with services.write() as tx:
        (letter,) = _load(tx)
    failures: list[BaseException] = []
    real = service.retry

    def recorded(*args: Any, **kwargs: Any) -> Any:
        # A retry ended by the deadlock is run again (store.conflicts): what ended it is kept.
        try:
            return real(*args, **kwargs)
        except BaseException as exc:
            failures.append(exc)
            raise

    monkeypatch.setattr(service, "retry", recorded)
    outcome: list[Any] = []
    thread = threading.Thread(
        target=lambda: outcome.append(service.retry_in_batches(services, domain_name=DOMAIN))
    )
    with services.write() as tx:
        # The load holds the record's keys; the retry, started now, waits for them.
        (outcome_of_load,) = ingest_batch(
            tx, domain_name=DOMAIN, object_type_name="Crm", records=[(RECORD, json.dumps(RECORD))]
        )
        pid = tx.conn.execute(text("SELECT pg_backend_pid()")).scalar()
        thread.start()
        until_blocked_by(services, pid, "the retry")
        # Then it counts another attempt on the letter: its row must not be the retry's.
        assert isinstance(outcome_of_load, IngestRejected)
        again = dead_letter_all(
            tx, DOMAIN, "Crm", [Rejected(json.dumps(RECORD), outcome_of_load, ORIGIN)]
        )
    thread.join(timeout=WAIT_BOUND_SECONDS)
    assert not thread.is_alive()
    assert again == [letter]
    assert failures == []
    assert outcome[0].failed == [letter]
