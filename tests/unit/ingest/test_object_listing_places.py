"""An object's place in ListProfileObjects (objects.service._FIRST_STORED: created_at, then
write_order) is where it was first stored, on SQLite and PostgreSQL: writing it again, in a
later transaction and among other writes, moves its updated_at (retention, eviction) but not its
place; an expired object written again is a new object and takes a new place (spec §1.9).

Before, a replacement renumbered write_order, and among the objects first stored by one
transaction the one written again changed place."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from openprofiles.context import Services, Tx
from openprofiles.ingest.pipeline import IngestRejected, ingest_batch
from openprofiles.objects.service import list_profile_objects_as_stored
from openprofiles.store.schema import profile_object

from .conftest import DOMAIN, crm_type, put_type


def _batch(tx: Tx, ids: list[str], first: str = "Ada") -> str:
    records = [{"id": i, "email": "a@x.com", "first": first} for i in ids]
    outcomes = ingest_batch(
        tx,
        domain_name=DOMAIN,
        object_type_name="Crm",
        records=[(r, json.dumps(r)) for r in records],
    )
    assert not any(isinstance(o, IngestRejected) for o in outcomes), outcomes
    return str(outcomes[0].profile_id)


def _places(services: Services) -> dict[str, tuple[Any, ...]]:
    with services.read() as tx:
        rows = tx.conn.execute(
            select(
                profile_object.c.unique_digest,
                profile_object.c.created_at,
                profile_object.c.write_order,
                profile_object.c.updated_at,
            ).where(profile_object.c.domain_name == DOMAIN)
        )
        return {
            bytes(r.unique_digest).hex(): (r.created_at, r.write_order, r.updated_at) for r in rows
        }


def _listed(services: Services, profile_id: str, now: datetime | None = None) -> list[str]:
    with services.database.read() as conn:
        tx = Tx(conn=conn, services=services, **({"now": now} if now else {}))
        records, more = list_profile_objects_as_stored(
            tx, domain_name=DOMAIN, object_type_name="Crm", profile_id=profile_id, limit=100
        )
    assert not more
    return [json.loads(r.object_json)["id"] for r in records]


def test_writing_an_object_again_keeps_its_place(services: Services, domain: str) -> None:
    put_type(services, "Crm", crm_type())
    with services.write() as tx:
        profile_id = _batch(tx, ["a", "b", "c", "d"])
    before = _places(services)
    assert _listed(services, profile_id) == ["d", "c", "b", "a"]
    # Written again after a new object, in another order, changed.
    with services.write() as tx:
        _batch(tx, ["e", "c", "a"], first="Augusta")
    after = _places(services)
    for key, (created, order, _) in before.items():
        assert after[key][:2] == (created, order)
    assert sorted(after[k][2] > before[k][2] for k in before) == [False, False, True, True]
    assert _listed(services, profile_id) == ["e", "d", "c", "b", "a"]


def test_an_expired_object_written_again_takes_a_new_place(services: Services, domain: str) -> None:
    put_type(services, "Crm", crm_type(ExpirationDays=1))
    with services.write() as tx:
        profile_id = _batch(tx, ["a", "b"])
    later = datetime.now(UTC) + timedelta(days=2)
    with services.database.write() as conn:
        tx = Tx(conn=conn, services=services, now=later)
        _batch(tx, ["c", "a"])
    assert _listed(services, profile_id, now=later) == ["a", "c"]
