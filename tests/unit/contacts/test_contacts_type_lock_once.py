"""A batch of contact records takes its object type's lock once (PostgreSQL). contacts.service
`_apply_as` takes it (shared) to read the integration under it, so that records that waited for a
DeleteProfileObjectType find their integration disabled (test_contacts_type_deletion_races);
`ingest_batch` then took it again, a statement more each batch. It is told the caller holds it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event
from tests.unit.contacts.test_contacts_without_endpoint import CALLER, D, task, with_template
from tests.unit.integrations.integ_helpers import ctr, send

from openprofiles.context import Services
from openprofiles.store.advisory import lock_id


@contextmanager
def lock_requests(services: Services, name: tuple[str, ...]) -> Iterator[list[int]]:
    """How many times each statement run meanwhile asks for the advisory lock `name`, one
    entry a statement that asks for it."""
    wanted = lock_id(name)
    seen: list[int] = []

    def values(parameters: Any) -> list[Any]:
        if isinstance(parameters, dict):
            return list(parameters.values())
        if isinstance(parameters, Sequence) and not isinstance(parameters, str | bytes):
            return [v for p in parameters for v in values(p)]
        return [parameters]

    def before(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        if "pg_advisory" in statement:
            asked = values(parameters).count(wanted)
            if asked:
                seen.append(asked)

    engine = services.database.engine
    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


@pytest.mark.parametrize(
    "settings", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_contact_batch_takes_its_object_types_lock_once(services: Services) -> None:
    with_template(services, "CTR")

    with lock_requests(services, ("object_type", D, "CTR")) as asked:
        outcome = send(
            services,
            ctr("call-1", address=CALLER),
            ctr("call-2", address="+13035550111"),
            task("task-1", PreviousContactId="call-1"),
        )

    assert outcome.accepted == 3 and not outcome.rejected, outcome.rejected
    assert asked == [1]
