"""Contact records arriving while their instance is being associated (PostgreSQL, READ
COMMITTED, several server processes): none is left kept as unrouted once the instance is
associated, whichever of the two transactions comes first; and a kept record two replays reach
at once is sent on once. SQLite's single writer serialises all of these already.

Each test holds the first transaction open until the second waits for one of its locks, or has
finished without waiting (tests.support.lock_waits). Before the instance's association lock,
the first two did not wait, and the record stayed kept with its instance associated until the
instance was associated again; the replays both sent the record on."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from tests.support.lock_waits import second_writer_meets_first

from openprofiles.contacts.kept import count_unrouted
from openprofiles.contacts.models import BatchOutcome
from openprofiles.contacts.records import split_body
from openprofiles.contacts.service import connect_instance, ingest_contact_items
from openprofiles.contacts.sweep import replay_held
from openprofiles.context import Services, Tx
from openprofiles.dlq.service import count as count_dead_letters
from openprofiles.integrations.service import put_integration

from .integ_helpers import INSTANCE, ctr, make_domain, send

D = "assoc-race"
pytestmark = pytest.mark.parametrize("settings", ["postgres"], indirect=True)


def _associate(tx: Tx) -> BatchOutcome:
    _, replayed = connect_instance(tx, domain_name=D, instance_arn=INSTANCE, move=False)
    return replayed


def _ingest(tx: Tx, *records: object) -> BatchOutcome:
    return ingest_contact_items(tx, split_body("\n".join(json.dumps(r) for r in records)))


def test_a_record_read_unassociated_while_the_association_is_uncommitted_is_routed(
    services: Services,
) -> None:
    """The batch reads "no integration" (the association is not committed), then waits for the
    association's lock, and looks again once it has committed: the record goes to the domain.
    Before, it was kept after the association's replay had read the kept records."""
    make_domain(services, D)
    assert send(services, ctr("kept-before")).unrouted == {INSTANCE: 1}

    def during() -> BatchOutcome:
        with services.write() as tx:
            return _ingest(tx, ctr("during", address="+17208401004"))

    outcome = second_writer_meets_first(services, _associate, during)

    assert isinstance(outcome, BatchOutcome), outcome
    assert (outcome.accepted, outcome.rejected) == (1, [])
    with services.read() as tx:
        assert count_unrouted(tx, instance_arn=INSTANCE) == {}


def test_a_record_kept_before_the_association_began_is_replayed_by_it(
    services: Services,
) -> None:
    """The batch keeps the record (its instance has no domain) and is not committed yet; the
    association waits for it, and its replay then reads the kept record and sends it on.
    Before, the replay read the kept records without it, and it was committed after."""
    make_domain(services, D)

    def association() -> BatchOutcome:
        with services.write() as tx:
            return _associate(tx)

    replayed = second_writer_meets_first(
        services, lambda tx: _ingest(tx, ctr("kept-meanwhile")), association
    )

    assert isinstance(replayed, BatchOutcome), replayed
    assert (replayed.accepted, replayed.rejected) == (1, [])
    with services.read() as tx:
        assert count_unrouted(tx, instance_arn=INSTANCE) == {}


def _replay_held(tx: Tx) -> BatchOutcome:
    return replay_held(tx, instance_arns=[INSTANCE], limit=10)


@pytest.mark.parametrize("second", [_replay_held, _associate], ids=["connector", "association"])
def test_a_kept_record_two_replays_reach_at_once_is_sent_on_once(
    services: Services, second: Callable[[Tx], BatchOutcome]
) -> None:
    """The connector's replay of held records has taken a kept record out, uncommitted, when
    another connector's replay (which reads it too, and waits for the first's delete) or an
    association's (which waits for the first's lock on the instance) begins: the second finds
    it taken. Before, the second sent it on again: an invalid record was dead-lettered twice."""
    make_domain(services, D)
    invalid = ctr("bad-channel", Channel="PIGEON")
    assert send(services, invalid).unrouted == {INSTANCE: 1}
    with services.write() as tx:
        # Associated without the replay, as a record held while its domain's key could not be
        # used is kept with its instance associated.
        put_integration(tx, domain_name=D, uri=INSTANCE, object_type_name="CTR")

    def then() -> BatchOutcome:
        with services.write() as tx:
            return second(tx)

    again = second_writer_meets_first(services, _replay_held, then)

    assert isinstance(again, BatchOutcome), again
    assert (again.accepted, again.rejected) == (0, [])
    with services.read() as tx:
        assert count_unrouted(tx, instance_arn=INSTANCE) == {}
        assert count_dead_letters(tx, domain_name=D) == 1
