"""Reads of a profile racing its deletion. `find_profile` follows merges to the live profile, then
reads its row: two statements, no lock. On PostgreSQL (READ COMMITTED) a DeleteProfile that
commits in between leaves the second statement without a row: the read finds no profile, and its
callers answer as for any missing profile (BatchGetProfile's per-id error, the agent page's
404), where they once failed with an IndexError (a 500). On SQLite the read transaction is one
snapshot, so it reads the profile as it was when the transaction began."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tests.support.between_statements import before_statement

from openprofiles.context import Principal, RequestContext, Services
from openprofiles.domains.handlers import create_domain
from openprofiles.errors import NotFound
from openprofiles.identity.service import merge_profiles
from openprofiles.profiles import service

D = "reads"


@pytest.fixture
def domain(services: Services) -> str:
    create_domain(
        RequestContext(services=services, principal=Principal("t", "admin")),
        {"DomainName": D, "DefaultExpirationDays": 5},
    )
    return D


def _create(services: Services, first_name: str) -> str:
    with services.write() as tx:
        fields = {"FirstName": first_name}
        return service.create_profile(tx, domain_name=D, fields=fields).profile_id


def _deleting(services: Services, profile_id: str) -> Callable[[], None]:
    def delete() -> None:
        with services.write() as tx:
            service.delete_profile(tx, domain_name=D, profile_id=profile_id)

    return delete


def _gone(services: Services, profile_id: str) -> bool:
    with services.read() as tx:
        return service.find_profile(tx, domain_name=D, profile_id=profile_id) is None


def test_a_profile_deleted_between_finding_and_reading_it_is_not_found(
    services: Services, domain: str
) -> None:
    ada = _create(services, "Ada")
    with (
        services.read() as tx,
        before_statement(
            tx.conn, service._PROFILE_BY_ID.statement, _deleting(services, ada)
        ) as ran,
    ):
        if services.database.is_sqlite:
            record = service.get_profile(tx, domain_name=D, profile_id=ada)
            assert record.fields["FirstName"] == "Ada"
        else:
            with pytest.raises(NotFound, match=f"The profile {ada} does not exist"):
                service.get_profile(tx, domain_name=D, profile_id=ada)
    assert ran == [True]
    assert _gone(services, ada)


def test_a_merged_id_whose_survivor_is_deleted_meanwhile_is_missing_from_a_batch_get(
    services: Services, domain: str
) -> None:
    """BatchGetProfile (`get_profiles`) reads the requested rows, then follows a merged one to
    its survivor; the survivor's deletion (which takes the merged profile too) commits between."""
    ada, augusta = _create(services, "Ada"), _create(services, "Augusta")
    with services.write() as tx:
        merge_profiles(tx, domain_name=D, main_profile_id=ada, profile_ids=[augusta])
    with (
        services.read() as tx,
        before_statement(
            tx.conn, service._PROFILE_BY_ID.statement, _deleting(services, ada)
        ) as ran,
    ):
        found = service.get_profiles(tx, domain_name=D, profile_ids=[augusta])
    assert ran == [True]
    if services.database.is_sqlite:
        assert found[augusta].profile_id == ada
    else:
        assert found == {}
    assert _gone(services, ada) and _gone(services, augusta)
