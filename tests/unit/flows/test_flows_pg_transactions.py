"""A flow's batch is applied a bounded run of records a transaction on PostgreSQL — and on
SQLite, where there is no lock to bound, a batch a transaction.

Flow batches (500 records) were applied whole, each transaction holding about two advisory
locks a record in PostgreSQL's shared lock table: the pressure store.chunks bounds for every
other way a batch comes in (SQLSTATE 53200 once a few such transactions run at once)."""

from __future__ import annotations

from pathlib import Path

from tests.support.advisory_locks import counting_commits
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.context import Services
from openprofiles.flows import service as flows
from openprofiles.integrations.service import put_integration
from openprofiles.store.chunks import PG_RECORDS_PER_TRANSACTION

from .test_flows_failed_items import TYPE, jsonl, user
from .test_flows_templates import D, flow_definition

RECORDS = 450


def test_a_flows_batch_holds_a_bounded_number_of_locks(services: Services, tmp_path: Path) -> None:
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "a.jsonl").write_text(jsonl(*(user(i) for i in range(1, RECORDS + 1))))
    with services.write() as tx:
        put_integration(
            tx,
            domain_name=D,
            uri="crm-export",
            object_type_name=TYPE,
            flow_definition=flow_definition("crm", "file://", str(folder)),
        )
    with counting_commits(services) as seen:
        run = flows.run_flow(services, domain_name=D, flow_name="crm")
    assert (run.status, run.records_ingested) == ("COMPLETED", RECORDS)
    if services.database.is_sqlite:
        assert seen.most == 0
        return
    # A user record takes a handful of locks (its UNIQUE value, its keys): a run of at most
    # PG_RECORDS_PER_TRANSACTION records holds a bounded number, a 450-record batch did not.
    assert 0 < seen.most <= 5 * PG_RECORDS_PER_TRANSACTION, seen.locks
