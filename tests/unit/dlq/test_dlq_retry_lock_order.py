"""`dlq retry` takes the key locks of all the letters it applies up front, in the one global
order (store.advisory), as a batch of `ingest` takes its own. Taken letter by letter, a retry
held the first letter's locks while it waited for the second's, which a batch holding the
second's in that order and waiting for the first's held: a deadlock (PostgreSQL). The order is
checked where the locks are asked for, so on both backends."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.unit.ingest.conftest import DOMAIN, crm_type, make_domain, put_type

from openprofiles.context import Services, Tx
from openprofiles.dlq import service
from openprofiles.dlq.sinks import dead_letter
from openprofiles.ingest import pipeline
from openprofiles.store.advisory import lock_id


def test_a_retry_asks_for_every_key_lock_in_the_global_order(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_domain(services)
    put_type(services, "Crm", crm_type())
    ids = [
        dead_letter(
            services,
            domain_name=DOMAIN,
            object_type_name="Crm",
            object_json=json.dumps({"id": f"r{n}", "email": f"r{n}@example.com"}),
            reason="No profile matched.",
            category="no_profile",
        ).message_id
        for n in range(6)
    ]
    asked: list[int] = []
    real = pipeline.take_locks

    def recorded(tx: Tx, names: Any, **kwargs: Any) -> None:
        names = list(names)
        asked.extend(sorted({lock_id(n) for n in names}))
        real(tx, names, **kwargs)

    monkeypatch.setattr(pipeline, "take_locks", recorded)
    outcome = service.retry_in_batches(services, domain_name=DOMAIN)
    assert sorted(outcome.succeeded) == sorted(ids)
    # Asked for again per letter by the pipeline, held already then: what matters is the
    # order in which each lock is first asked for.
    first_asked = list(dict.fromkeys(asked))
    assert len(first_asked) == 6 * 3  # each record: its UNIQUE value, its id and email keys
    assert first_asked == sorted(first_asked)
