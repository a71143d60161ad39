"""Two PutIntegration calls of other Uris with one FlowName at once, on PostgreSQL (READ
COMMITTED). A FlowName is one flow's in its domain (its runs and checkpoints are kept under it):
PutIntegration refuses a name another integration's flow has. Each call checked that unlocked,
and both found it free: the domain had two flows of one name, sharing its checkpoints. Now the
second waits for the first's lock on the name, finds its flow, and is refused. SQLite's one
writer serialises them already."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from tests.support.lock_waits import (
    in_its_own_transaction,
    postgres_services,
    second_writer_meets_first,
)
from tests.unit.flows.test_flows_templates import flow_definition
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.context import Services, Tx
from openprofiles.errors import BadRequest
from openprofiles.integrations.service import put_integration
from openprofiles.store.schema import integration

D = "flows-at-once"


@pytest.fixture
def pg_services(tmp_path: Path) -> Iterator[Services]:
    with postgres_services(tmp_path) as services:
        yield services


def put(uri: str, flow_name: str) -> Callable[[Tx], Any]:
    return lambda tx: put_integration(
        tx,
        domain_name=D,
        uri=uri,
        object_type_name="CTR",
        flow_definition=flow_definition(flow_name, "crm-bucket"),
    )


def flows_named(services: Services, flow_name: str) -> int:
    with services.read() as tx:
        return tx.conn.execute(
            select(func.count()).where(
                integration.c.domain_name == D, integration.c.flow_name == flow_name
            )
        ).scalar_one()


@pytest.mark.postgres
def test_a_flow_name_put_at_once_under_another_uri_is_refused(pg_services: Services) -> None:
    services = pg_services
    make_domain(services, D)

    outcome = second_writer_meets_first(
        services,
        put("s3://crm/a", "crm"),
        in_its_own_transaction(services, put("s3://crm/b", "crm")),
    )

    assert isinstance(outcome, BadRequest), outcome
    assert "A flow named crm already exists" in outcome.message
    assert flows_named(services, "crm") == 1


@pytest.mark.postgres
def test_other_flow_names_put_at_once_are_both_kept(pg_services: Services) -> None:
    services = pg_services
    make_domain(services, D)

    outcome = second_writer_meets_first(
        services,
        put("s3://crm/a", "crm"),
        in_its_own_transaction(services, put("s3://crm/b", "web")),
    )

    assert not isinstance(outcome, BaseException), outcome
    assert (flows_named(services, "crm"), flows_named(services, "web")) == (1, 1)
