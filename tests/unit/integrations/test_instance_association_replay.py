"""Associating an instance with thousands of kept contact records: the association's
transaction replays one chunk (`REPLAY_CHUNK`), the rest follow after its commit a chunk a
transaction, and the server's sweep finishes a replay whose process stopped among the chunks.

Before, the association replayed every kept record in its one transaction: on PostgreSQL each
contact's advisory locks are held to the commit, and a few thousand records exhausted the
server's lock table — PutIntegration answered 500 ("out of shared memory"), the association
rolled back, and the instance could never be associated while those records were kept."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select
from tests.support.server import run_server

from openprofiles.app import background_tasks
from openprofiles.contacts.kept import count_unrouted
from openprofiles.contacts.models import BatchOutcome
from openprofiles.contacts.records import split_body
from openprofiles.contacts.service import REPLAY_CHUNK, connect_instance, ingest_contact_items
from openprofiles.contacts.sweep import kept_records_task
from openprofiles.context import Services
from openprofiles.settings import Settings
from openprofiles.store.schema import contact_record

from .integ_helpers import INSTANCE, ctr, make_domain

D = "replay-chunks"


def _keep(services: Services, count: int) -> None:
    """`count` contact records of INSTANCE (associated with no domain) kept through the intake,
    an ordinary batch a transaction; each its own contact and caller."""
    for start in range(0, count, REPLAY_CHUNK):
        records = [
            ctr(f"kept-{n:05d}", address=f"+1720{n:07d}")
            for n in range(start, min(count, start + REPLAY_CHUNK))
        ]
        with services.write() as tx:
            outcome = ingest_contact_items(tx, split_body("\n".join(map(json.dumps, records))))
        assert outcome.unrouted == {INSTANCE: len(records)}


def _routed(services: Services) -> int:
    with services.read() as tx:
        return int(
            tx.conn.execute(
                select(func.count())
                .select_from(contact_record)
                .where(contact_record.c.domain_name == D)
            ).scalar_one()
        )


@pytest.mark.parametrize("settings", ["postgres"], indirect=True)
def test_put_integration_of_an_instance_with_thousands_of_kept_records(
    settings: Settings,
) -> None:
    """6,000 kept records (4 advisory locks each), far more than one transaction's locks fit in
    PostgreSQL's default lock table: PutIntegration (boto3, the live server) associates the
    instance and every record reaches the domain, once. Before: 500, "out of shared memory",
    nothing kept was sent on and the instance stayed unassociated."""
    with run_server(settings) as server:
        services = server.services
        make_domain(services, D)
        _keep(services, 6000)

        answer = server.client().put_integration(DomainName=D, Uri=INSTANCE)

        assert answer["Uri"] == INSTANCE and answer["ObjectTypeName"] == "CTR"
        with services.read() as tx:
            assert count_unrouted(tx, instance_arn=INSTANCE) == {}
        assert _routed(services) == 6000


def test_the_sweep_finishes_a_replay_whose_process_stopped_between_chunks(
    services: Services,
) -> None:
    """The association commits with its first chunk, and the process stops before it sends
    the rest: the server's background sweep sends them on, once. Before, there was no sweep
    (and the association replayed all of them, in a transaction that could not hold them)."""
    make_domain(services, D)
    _keep(services, REPLAY_CHUNK + 25)

    # Only the first step of an association: its transaction, then nothing more.
    with services.write() as tx:
        _, replayed = connect_instance(tx, domain_name=D, instance_arn=INSTANCE, move=False)
    assert (replayed.accepted, replayed.rejected) == (REPLAY_CHUNK, [])
    with services.read() as tx:
        assert count_unrouted(tx, instance_arn=INSTANCE) == {INSTANCE: 25}

    sweep = {t.name: t for t in background_tasks(services)}["send kept contact records on"]
    assert sweep.interval_seconds == 60
    sent = sweep.run()

    assert isinstance(sent, BatchOutcome)
    assert (sent.accepted, sent.rejected, sent.held) == (25, [], 0)
    again = kept_records_task(services).run()  # nothing is left to send
    assert isinstance(again, BatchOutcome) and again.accepted == 0
    with services.read() as tx:
        assert count_unrouted(tx, instance_arn=INSTANCE) == {}
    assert _routed(services) == REPLAY_CHUNK + 25
