"""PutProfileObjectType racing other writers of the domain's object types on PostgreSQL (several
server processes): the second writer waits for the first and then works from what the first
committed, as if they had run one after the other. Each test keeps the first writer's
transaction open until the second waits for one of its locks (or finishes without waiting,
which is how each race went wrong before)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.backends import postgres_schema_url
from tests.support.lock_waits import second_writer_meets_first

from openprofiles.app import build_services
from openprofiles.context import Services, Tx
from openprofiles.errors import BadRequest
from openprofiles.object_types.models import ObjectType
from openprofiles.object_types.service import (
    delete_object_type,
    find_object_type,
    put_object_type,
)
from openprofiles.settings import Settings

from .conftest import make_domain, profile_mapping

pytestmark = pytest.mark.postgres

D = "objtypes"  # conftest.make_domain's


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Services]:
    with postgres_schema_url() as url:
        services = build_services(Settings(data_dir=tmp_path / "data", database_url=url))
        try:
            make_domain(services)
            yield services
        finally:
            services.database.dispose()


def with_shared_key(content_type: str) -> dict[str, Any]:
    """A definition whose key `shared` is over a field of `content_type`."""
    definition = profile_mapping()
    definition["Fields"]["ref"] = {"Source": "_source.ref", "ContentType": content_type}
    definition["Keys"]["shared"] = [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["ref"]}]
    return definition


def put(tx: Tx, name: str, definition: dict[str, Any]) -> ObjectType:
    return put_object_type(tx, domain_name=D, name=name, params=definition)


def put_now(services: Services, name: str, definition: dict[str, Any]) -> ObjectType:
    with services.write() as tx:
        return put(tx, name, definition)


def test_a_put_that_waited_for_the_deletion_of_its_type_creates_it_again(pg: Services) -> None:
    """It used to find the row before the deletion committed, update nothing after, and fail
    (500)."""
    put_now(pg, "Crm", profile_mapping(Description="first"))
    outcome = second_writer_meets_first(
        pg,
        lambda tx: delete_object_type(tx, domain_name=D, name="Crm"),
        lambda: put_now(pg, "Crm", profile_mapping(Description="again")),
    )
    assert isinstance(outcome, ObjectType), outcome
    with pg.read() as tx:
        found = find_object_type(tx, domain_name=D, name="Crm")
    assert found is not None and found.description == "again"


def test_two_puts_at_once_keep_one_content_type_for_a_key_name(pg: Services) -> None:
    """Both used to check against the types committed before either, and both passed."""
    outcome = second_writer_meets_first(
        pg,
        lambda tx: put(tx, "TA", with_shared_key("STRING")),
        lambda: put_now(pg, "TB", with_shared_key("PHONE_NUMBER")),
    )
    assert isinstance(outcome, BadRequest), outcome
    assert "Key shared is already defined by object type TA" in outcome.message
    with pg.read() as tx:
        assert find_object_type(tx, domain_name=D, name="TB") is None
