"""ListProfileObjects' read (objects.service.list_profile_objects_as_stored, newest first stored
first) finds the profile's objects of the type by ix_profile_object_profile, sorts only their
places, and reads the page's rows alone, by primary key: neither the type's other objects in the
domain nor every sealed object of the profile (on SQLite; on PostgreSQL, whose choice between
lookups and a scan follows its statistics, the index the page comes from is asserted)."""

from __future__ import annotations

import pytest
from tests.unit.integrations.integ_helpers import associate, ctr, make_domain, send
from tests.unit.store.test_profile_object_plans import INDEX, D, plan_of

from openprofiles.context import Services, Tx
from openprofiles.objects import service as objects
from openprofiles.profiles.service import SearchCriterion, search_profiles


@pytest.fixture
def profile_id(services: Services) -> str:
    """A profile with 12 contact records, and another with 3."""
    make_domain(services, D)
    associate(services, D)
    send(services, *(ctr(f"p-{n}", start=f"2026-01-{1 + n:02d}T09:00:00Z") for n in range(12)))
    send(services, *(ctr(f"q-{n}", address="+17208401004") for n in range(3)))
    with services.read() as tx:
        page, _ = search_profiles(
            tx, domain_name=D, criteria=[SearchCriterion("_ctrContactId", ("p-0",))]
        )
    [(found, _)] = page
    return found.profile_id


def test_the_listing_reads_only_the_page_rows(services: Services, profile_id: str) -> None:
    def listing(tx: Tx) -> None:
        page, more = objects.list_profile_objects_as_stored(
            tx, domain_name=D, object_type_name="CTR", profile_id=profile_id, limit=5
        )
        assert len(page) == 5 and more

    plan = plan_of(services, listing, "ORDER BY profile_object.created_at")
    if services.settings.is_sqlite:
        lookup = "(domain_name=? AND profile_id=? AND object_type_name=?)"
        assert f"SEARCH profile_object USING INDEX {INDEX} {lookup}" in plan, plan
        by_key = "(domain_name=? AND object_type_name=? AND unique_digest=?)"
        assert f"SEARCH profile_object USING INDEX sqlite_autoindex_profile_object_1 {by_key}" in (
            plan
        ), plan
        assert "SCAN profile_object" not in plan, plan
    else:
        assert f"using {INDEX} on profile_object" in plan, plan
