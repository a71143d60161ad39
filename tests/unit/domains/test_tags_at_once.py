"""TagResource and UntagResource at the same time on one resource, on PostgreSQL: each keeps
what it did. They read the resource's tag row, merged and wrote it back under READ COMMITTED, so
the second, having read the row before the first committed, wrote over the first's tags (both
answered 200; ten TagResource calls at once kept five tags). SQLite's one writer serialises them
already: these tests are PostgreSQL's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.lock_waits import (
    in_its_own_transaction,
    postgres_services,
    second_writer_meets_first,
)
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.arns import domain_arn
from openprofiles.context import Services
from openprofiles.tags.service import get_tags, put_tags, remove_tags

D = "tagged"


@pytest.fixture
def pg_services(tmp_path: Path) -> Iterator[Services]:
    with postgres_services(tmp_path) as services:
        yield services


def tagged(services: Services, tags: dict[str, str]) -> str:
    """The domain `D`, with `tags`; its ARN."""
    make_domain(services, D)
    arn = domain_arn(services.settings, D)
    if tags:
        with services.write() as tx:
            put_tags(tx, domain_name=D, resource_arn=arn, tags=tags)
    return arn


def tags_of(services: Services, arn: str) -> dict[str, str]:
    with services.read() as tx:
        return get_tags(tx, resource_arn=arn)


@pytest.mark.postgres
@pytest.mark.parametrize("first_tags", [False, True], ids=["no-row-yet", "row"])
def test_two_tag_resource_calls_at_once_keep_both_tags(
    pg_services: Services, first_tags: bool
) -> None:
    """With no row yet (both would insert it) and with one (both update it)."""
    services = pg_services
    arn = tagged(services, {"team": "care"} if first_tags else {})

    outcome = second_writer_meets_first(
        services,
        lambda tx: put_tags(tx, domain_name=D, resource_arn=arn, tags={"first": "1"}),
        in_its_own_transaction(
            services,
            lambda tx: put_tags(tx, domain_name=D, resource_arn=arn, tags={"second": "2"}),
        ),
    )

    assert outcome is None
    expected = {"first": "1", "second": "2"} | ({"team": "care"} if first_tags else {})
    assert tags_of(services, arn) == expected


@pytest.mark.postgres
def test_two_untag_resource_calls_at_once_remove_both_tags(pg_services: Services) -> None:
    services = pg_services
    arn = tagged(services, {"a": "1", "b": "2", "c": "3"})

    outcome = second_writer_meets_first(
        services,
        lambda tx: remove_tags(tx, resource_arn=arn, tag_keys=["a"]),
        in_its_own_transaction(
            services, lambda tx: remove_tags(tx, resource_arn=arn, tag_keys=["b"])
        ),
    )

    assert outcome is None
    assert tags_of(services, arn) == {"c": "3"}


@pytest.mark.postgres
def test_a_tag_resource_call_during_an_untag_keeps_its_tag(pg_services: Services) -> None:
    services = pg_services
    arn = tagged(services, {"a": "1"})

    outcome = second_writer_meets_first(
        services,
        lambda tx: remove_tags(tx, resource_arn=arn, tag_keys=["a"]),
        in_its_own_transaction(
            services,
            lambda tx: put_tags(tx, domain_name=D, resource_arn=arn, tags={"b": "2"}),
        ),
    )

    assert outcome is None
    assert tags_of(services, arn) == {"b": "2"}
