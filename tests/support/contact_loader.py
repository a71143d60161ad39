"""A data dir with a domain for the contact-centre instance, for the tests of `openprofiles
ingest contact-records` (tests/cli): its services and the command's storage options."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tests.unit.integrations.integ_helpers import associate, make_domain

from openprofiles.app import build_services
from openprofiles.context import Services
from openprofiles.profiles.service import SearchCriterion, search_profiles
from openprofiles.settings import Settings

D = "loaded"


@contextmanager
def loaded_data_dir(settings: Settings) -> Iterator[tuple[Services, list[str]]]:
    """The services of a data dir with domain D for the instance, and the command's options."""
    services = build_services(settings)
    make_domain(services, D)
    associate(services, D)
    options = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        options += ["--database-url", settings.database_url]
    try:
        yield services, options
    finally:
        services.database.dispose()


def found(services: Services, contact_id: str, domain_name: str = D) -> int:
    """How many profiles of the domain (D) the contact's `_ctrContactId` finds."""
    with services.read() as tx:
        page, _ = search_profiles(
            tx,
            domain_name=domain_name,
            criteria=[SearchCriterion("_ctrContactId", (contact_id,))],
        )
    return len(page)
