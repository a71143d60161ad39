"""TagResource at the same time as the deletion of the resource it tags, on PostgreSQL: the tags
go with the resource. TagResource only checked that the resource existed, without a lock, and
resource_tag has no foreign key: one that found the resource before a DeleteDomain or a
DeleteProfileObjectType committed wrote its tags after the deletion had removed the resource's,
and a domain or object type created again under the name showed them. Now it holds the locks
the deletion takes (shared) before it looks: it waits for the deletion and finds the resource
gone. SQLite's one writer serialises them already: these tests are PostgreSQL's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from tests.support.lock_waits import postgres_services, second_writer_meets_first
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.arns import child_arn, domain_arn
from openprofiles.context import Principal, RequestContext, Services
from openprofiles.domains.service import delete_domain
from openprofiles.errors import NotFound
from openprofiles.object_types.service import delete_object_type, put_object_type
from openprofiles.store.schema import resource_tag
from openprofiles.tags import handlers

D = "tag-race"
TYPE = "Crm"
CRM: dict[str, Any] = {
    "Description": "CRM customers",
    "Fields": {"id": {"Source": "_source.id", "Target": "_profile.AccountNumber"}},
    "Keys": {"crmId": [{"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["id"]}]},
}


@pytest.fixture
def pg_services(tmp_path: Path) -> Iterator[Services]:
    with postgres_services(tmp_path) as services:
        yield services


def tag_resource(services: Services, arn: str) -> Any:
    """TagResource of `arn` as a second writer (the handler, in its own transaction)."""
    ctx = RequestContext(services=services, principal=Principal("test", "admin"))
    return lambda: handlers.tag_resource(ctx, {"resourceArn": arn, "tags": {"team": "care"}})


def tag_rows(services: Services) -> int:
    with services.read() as tx:
        query = select(func.count()).where(resource_tag.c.domain_name == D)
        return int(tx.conn.execute(query).scalar_one())


@pytest.mark.postgres
def test_tag_resource_during_delete_domain_leaves_no_tags(pg_services: Services) -> None:
    services = pg_services
    make_domain(services, D)

    outcome = second_writer_meets_first(
        services,
        lambda tx: delete_domain(tx, domain_name=D),
        tag_resource(services, domain_arn(services.settings, D)),
    )

    assert isinstance(outcome, NotFound), outcome
    assert tag_rows(services) == 0


@pytest.mark.postgres
def test_tag_resource_during_delete_profile_object_type_leaves_no_tags(
    pg_services: Services,
) -> None:
    services = pg_services
    make_domain(services, D)
    with services.write() as tx:
        put_object_type(tx, domain_name=D, name=TYPE, params=CRM)

    outcome = second_writer_meets_first(
        services,
        lambda tx: delete_object_type(tx, domain_name=D, name=TYPE),
        tag_resource(services, child_arn(services.settings, D, "object-types", TYPE)),
    )

    assert isinstance(outcome, NotFound), outcome
    assert tag_rows(services) == 0
