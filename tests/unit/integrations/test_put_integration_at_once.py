"""PutIntegration at the same time as DeleteProfileObjectType, PutProfileObjectType or another
PutIntegration, on PostgreSQL (READ COMMITTED). Each used to lose something:

* PutIntegration checked its object type unlocked, so with a deletion of the type uncommitted
  it left an integration enabled for a deleted type, whichever committed first;
* the deletion (and the definition that enables again what a deletion disabled) read the
  integrations unlocked and wrote their settings back whole, over a PutIntegration's new ones;
* two PutIntegration calls of a new Uri both found none, and the second was refused 400
  ("created concurrently; try again"), though PUT is idempotent.

SQLite's one writer serialises them already: these tests are PostgreSQL's."""

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
from tests.unit.identity.conftest import CRM
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.context import Services, Tx
from openprofiles.errors import BadRequest
from openprofiles.integrations.models import Integration
from openprofiles.integrations.service import associate_instance, get_integration, put_integration
from openprofiles.object_types.service import (
    delete_object_type,
    find_object_type,
    put_object_type,
)
from openprofiles.store.schema import integration

D = "integrated"
URI = "arn:aws:appflow:us-east-1:123456789012:flow/crm"
OLD_ROLE = "arn:aws:iam::123456789012:role/old"
NEW_ROLE = "arn:aws:iam::123456789012:role/new"


@pytest.fixture
def pg_services(tmp_path: Path) -> Iterator[Services]:
    with postgres_services(tmp_path) as services:
        yield services


def with_types(services: Services, *names: str) -> None:
    make_domain(services, D)
    with services.write() as tx:
        for name in names:
            put_object_type(tx, domain_name=D, name=name, params=CRM)


def put(type_name: str, role: str | None = None) -> Callable[[Tx], Any]:
    settings = {"RoleArn": role} if role else None
    return lambda tx: put_integration(
        tx, domain_name=D, uri=URI, object_type_name=type_name, settings=settings
    )


def delete_type(name: str) -> Callable[[Tx], None]:
    return lambda tx: delete_object_type(tx, domain_name=D, name=name)


def the_integration(services: Services) -> Integration:
    with services.read() as tx:
        return get_integration(tx, domain_name=D, uri=URI)


def type_exists(services: Services, name: str) -> bool:
    with services.read() as tx:
        return find_object_type(tx, domain_name=D, name=name) is not None


@pytest.mark.postgres
def test_a_put_integration_during_the_deletion_of_its_type_is_refused(
    pg_services: Services,
) -> None:
    services = pg_services
    with_types(services, "Crm")
    with services.write() as tx:
        put("Crm", OLD_ROLE)(tx)

    outcome = second_writer_meets_first(
        services, delete_type("Crm"), in_its_own_transaction(services, put("Crm", NEW_ROLE))
    )

    assert isinstance(outcome, BadRequest), outcome
    assert "object type Crm does not exist" in outcome.message
    assert not type_exists(services, "Crm")
    found = the_integration(services)
    assert found.disabled_reason is not None
    assert found.settings["RoleArn"] == OLD_ROLE


@pytest.mark.postgres
def test_the_deletion_of_a_type_during_a_new_put_integration_disables_it(
    pg_services: Services,
) -> None:
    services = pg_services
    with_types(services, "Crm")

    outcome = second_writer_meets_first(
        services, put("Crm"), in_its_own_transaction(services, delete_type("Crm"))
    )

    assert outcome is None
    assert not type_exists(services, "Crm")
    assert the_integration(services).disabled_reason is not None


@pytest.mark.postgres
def test_the_deletion_of_a_type_keeps_the_settings_a_put_integration_wrote_meanwhile(
    pg_services: Services,
) -> None:
    """The integration moves to another type with new settings while its old type is deleted:
    the deletion, which read it as ingesting the old type, neither disables it nor writes its
    old settings back."""
    services = pg_services
    with_types(services, "Crm", "Other")
    with services.write() as tx:
        put("Crm", OLD_ROLE)(tx)

    outcome = second_writer_meets_first(
        services, put("Other", NEW_ROLE), in_its_own_transaction(services, delete_type("Crm"))
    )

    assert outcome is None
    found = the_integration(services)
    assert found.object_type_name == "Other"
    assert found.settings["RoleArn"] == NEW_ROLE
    assert found.disabled_reason is None


@pytest.mark.postgres
def test_defining_a_deleted_type_again_keeps_the_settings_a_put_integration_wrote_meanwhile(
    pg_services: Services,
) -> None:
    """An integration its type's deletion disabled is put again, on another type, while the
    deleted type is defined again: the definition, which read it disabled, does not write its
    old settings back."""
    services = pg_services
    with_types(services, "Crm", "Other")
    with services.write() as tx:
        put("Crm", OLD_ROLE)(tx)
    with services.write() as tx:
        delete_type("Crm")(tx)
    assert the_integration(services).disabled_reason is not None

    outcome = second_writer_meets_first(
        services,
        put("Other", NEW_ROLE),
        in_its_own_transaction(
            services, lambda tx: put_object_type(tx, domain_name=D, name="Crm", params=CRM)
        ),
    )

    assert not isinstance(outcome, BaseException), outcome
    found = the_integration(services)
    assert found.object_type_name == "Other"
    assert found.settings["RoleArn"] == NEW_ROLE
    assert found.disabled_reason is None


@pytest.mark.postgres
def test_two_put_integration_calls_of_a_new_uri_both_succeed(pg_services: Services) -> None:
    services = pg_services
    with_types(services, "Crm")

    outcome = second_writer_meets_first(
        services, put("Crm", OLD_ROLE), in_its_own_transaction(services, put("Crm", NEW_ROLE))
    )

    assert not isinstance(outcome, BaseException), outcome
    assert outcome.integration.settings["RoleArn"] == NEW_ROLE
    assert the_integration(services).settings["RoleArn"] == NEW_ROLE
    with services.read() as tx:
        count = tx.conn.execute(
            select(func.count()).where(integration.c.domain_name == D)
        ).scalar_one()
    assert count == 1


INSTANCE = "arn:aws:connect:us-east-1:123456789012:instance/11111111-2222-3333-4444-555555555555"


@pytest.mark.postgres
def test_an_instance_associated_again_during_a_put_integration_keeps_the_put(
    pg_services: Services,
) -> None:
    """Associating an instance again (the CLI, the admin pages: to replay its kept records)
    keeps its object type and settings: they were read before any lock, so a PutIntegration
    of the instance committing meanwhile had its new ones written back over with the old."""
    services = pg_services
    make_domain(services, D)
    old, new = "arn:aws:iam::123456789012:role/old", "arn:aws:iam::123456789012:role/new"
    with services.write() as tx:
        put_integration(
            tx, domain_name=D, uri=INSTANCE, object_type_name="CTR", settings={"RoleArn": old}
        )

    outcome = second_writer_meets_first(
        services,
        lambda tx: put_integration(
            tx,
            domain_name=D,
            uri=INSTANCE,
            object_type_name="CTR-NoInferred",
            settings={"RoleArn": new},
        ),
        in_its_own_transaction(
            services, lambda tx: associate_instance(tx, domain_name=D, instance_arn=INSTANCE)
        ),
    )

    assert not isinstance(outcome, BaseException), outcome
    with services.read() as tx:
        found = get_integration(tx, domain_name=D, uri=INSTANCE)
    assert (found.object_type_name, found.settings.get("RoleArn")) == ("CTR-NoInferred", new)
