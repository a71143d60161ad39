"""PutIntegration associating a new instance with a domain while DeleteDomain removes it
(PostgreSQL, READ COMMITTED, several server processes). SQLite's single writer serialises the
two already.

DeleteDomain locks the association locks of the instances its domain has (integrations.service
`lock_domain_instances`); an instance being associated with it for the first time is not among
them. Both also take the domain's lock (`lock_domain`): DeleteDomain exclusively, first of its
locks, every PutIntegration shared, before it reads the domain. So one commits first:

* the deletion first: PutIntegration then finds no domain and answers NotFound (HTTP 404,
  ResourceNotFoundException) and changes nothing: the instance's kept records stay kept;
* PutIntegration first: the deletion then sees the integration (and what its replay of the
  kept records wrote) and deletes it with the domain: nothing is left of the domain.

Each test keeps the first transaction open until the second waits for one of its locks
(tests.support.lock_waits)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from tests.support.lock_waits import second_writer_meets_first
from tests.unit.integrations.integ_helpers import INSTANCE, ctr, make_domain, send

from openprofiles.contacts.kept import count_unrouted
from openprofiles.contacts.service import connect_instance
from openprofiles.context import Principal, RequestContext, Services, Tx
from openprofiles.domains.handlers import delete_domain as delete_domain_op
from openprofiles.domains.service import delete_domain, find_domain
from openprofiles.errors import NotFound
from openprofiles.integrations.handlers import put_integration as put_integration_op
from openprofiles.integrations.service import instance_domain
from openprofiles.store.schema import metadata

D = "deleted-while-associated"
pytestmark = pytest.mark.parametrize("settings", ["postgres"], indirect=True)


def _ctx(services: Services) -> RequestContext:
    return RequestContext(services=services, principal=Principal("test", "admin"))


def _kept_records(services: Services) -> None:
    """Two contact records of the instance, kept while it has no domain."""
    outcome = send(services, ctr("c1", address="+17208401003"), ctr("c2", address="+17208401004"))
    assert outcome.unrouted == {INSTANCE: 2}, outcome


def _rows_of(services: Services, domain_name: str) -> dict[str, int]:
    """The tables that still hold rows of the domain, with how many."""
    out: dict[str, int] = {}
    with services.read() as tx:
        for table in metadata.sorted_tables:
            if "domain_name" in table.c:
                n = tx.conn.execute(
                    select(func.count()).where(table.c.domain_name == domain_name)
                ).scalar_one()
                if n:
                    out[table.name] = n
    return out


def test_put_integration_after_the_deletion_committed_is_not_found(services: Services) -> None:
    """The deletion commits first: PutIntegration answers NotFound for the domain, not a
    foreign-key violation (before: "created concurrently; try again", HTTP 400, for a domain
    that no longer exists), and the records kept for the instance stay kept."""
    make_domain(services, D)
    _kept_records(services)

    def put() -> object:
        return put_integration_op(_ctx(services), {"DomainName": D, "Uri": INSTANCE})

    outcome = second_writer_meets_first(services, lambda tx: delete_domain(tx, domain_name=D), put)

    assert isinstance(outcome, NotFound), outcome
    assert outcome.code == "ResourceNotFoundException" and outcome.status == 404
    assert D in outcome.message
    with services.read() as tx:
        assert find_domain(tx, domain_name=D) is None
        assert instance_domain(tx, instance_arn=INSTANCE) is None
        assert count_unrouted(tx, instance_arn=INSTANCE) == {INSTANCE: 2}
    assert _rows_of(services, D) == {}


def test_a_deletion_after_put_integration_deletes_its_integration_too(services: Services) -> None:
    """PutIntegration (with its replay of the kept records) commits first: the deletion waits
    for it, then deletes the integration and the profiles the replay made with the domain.
    This held before too, later: the deletion's DELETE of the domain row waited for the
    PutIntegration's foreign-key lock on it, and ON DELETE CASCADE took what it wrote; but
    the instance, not among the deletion's association locks then, was open meanwhile to
    batches routed to the vanishing domain."""
    make_domain(services, D)
    _kept_records(services)

    def associating(tx: Tx) -> None:
        _, replayed = connect_instance(tx, domain_name=D, instance_arn=INSTANCE, move=False)
        assert replayed.accepted == 2

    def delete() -> object:
        return delete_domain_op(_ctx(services), {"DomainName": D})

    outcome = second_writer_meets_first(services, associating, delete)

    assert isinstance(outcome, dict), outcome
    with services.read() as tx:
        assert find_domain(tx, domain_name=D) is None
        assert instance_domain(tx, instance_arn=INSTANCE) is None
        # Sent on into the domain, and deleted with it, as records of a domain are.
        assert count_unrouted(tx, instance_arn=INSTANCE) == {}
    assert _rows_of(services, D) == {}
