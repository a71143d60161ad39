"""A contact-start event whose caller several profiles share (CTR-NoInferred,
CTR-AutoAssociateOnly: spec §3.2) links nothing, and keeps the caller's endpoint, sealed under
the domain's key, for the screen pop during the contact's live period
(contacts.shared_endpoint): purged by the sweep after it, gone with an agent's link, the erased
profile that holds it, and the domain. On SQLite and PostgreSQL, through the real services."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import text
from tests.unit.integrations.integ_helpers import INSTANCE, associate, make_domain

from openprofiles.cli import main
from openprofiles.contacts.service import apply_contact_event
from openprofiles.context import Services
from openprofiles.domains.service import delete_domain
from openprofiles.profiles.service import (
    SearchCriterion,
    add_profile_key,
    create_profile,
    delete_profile,
    search_profiles,
)

D = "sharedpop"
NUMBER = "+13035550000"
EMAIL = "family@example.org"


def profile(services: Services, **fields: Any) -> str:
    with services.write() as tx:
        return create_profile(tx, domain_name=D, fields=fields).profile_id


def start(services: Services, contact_id: str, address: str, *, channel: str = "VOICE") -> Any:
    kind = "EMAIL_ADDRESS" if "@" in address else "TELEPHONE_NUMBER"
    event = {
        "ContactId": contact_id,
        "InitiationTimestamp": "2026-11-03T09:00:00Z",
        "Channel": channel,
        "InstanceARN": INSTANCE,
        "CustomerEndpoint": {"Address": address, "Type": kind},
    }
    with services.write() as tx:
        return apply_contact_event(tx, event)


def rows(services: Services) -> list[Any]:
    """The kept endpoints as the database holds them (a copy of it, read raw)."""
    with services.read() as tx:
        return tx.conn.execute(
            text(
                "SELECT domain_name, key_name, endpoint_digest, sealed FROM contact_shared_endpoint"
            )
        ).all()


def kept(services: Services, contact_id: str) -> tuple[str, str] | None:
    from openprofiles.contacts.shared_endpoint import shared_endpoint

    with services.read() as tx:
        return shared_endpoint(tx, domain_name=D, contact_id=contact_id)


def linked(services: Services, contact_id: str) -> list[str]:
    with services.read() as tx:
        page, _ = search_profiles(
            tx, domain_name=D, criteria=[SearchCriterion("_ctrContactId", (contact_id,))]
        )
    return [p.profile_id for p, _ in page]


@pytest.fixture(params=["CTR-NoInferred", "CTR-AutoAssociateOnly"])
def shared(services: Services, request: pytest.FixtureRequest) -> list[str]:
    """A domain of the template whose two profiles share NUMBER (written two ways) and EMAIL."""
    make_domain(services, D)
    associate(services, D, object_type_name=request.param)
    return sorted(
        [
            profile(services, FirstName="Jane", PhoneNumber=NUMBER, EmailAddress=EMAIL),
            profile(
                services, FirstName="Jim", HomePhoneNumber="(303) 555-0000", EmailAddress=EMAIL
            ),
        ]
    )


def test_a_shared_number_links_nothing_and_is_kept_sealed(
    services: Services, shared: list[str]
) -> None:
    link = start(services, "c1", NUMBER)

    assert link.profile_id is None and not link.created_profile
    assert "more than one profile" in (link.reason or "")
    assert linked(services, "c1") == []
    [row] = rows(services)
    assert row.domain_name == D and row.key_name == "_phone"
    # Neither the number nor its digits are in the row in clear.
    raw = b"".join(bytes(v) for v in (row.endpoint_digest, row.sealed))
    assert b"3035550000" not in raw and b"303 555" not in raw
    assert kept(services, "c1") == ("_phone", NUMBER)


def test_a_shared_email_of_a_chat_is_kept(services: Services, shared: list[str]) -> None:
    link = start(services, "chat-1", EMAIL, channel="CHAT")

    assert link.profile_id is None
    [row] = rows(services)
    assert row.key_name == "_email" and b"example.org" not in bytes(row.sealed)
    assert kept(services, "chat-1") == ("_email", EMAIL)


def test_a_number_on_one_profile_keeps_nothing(services: Services, shared: list[str]) -> None:
    only = profile(services, PhoneNumber="+13035550001")

    link = start(services, "c2", "+13035550001")

    assert link.profile_id == only
    assert rows(services) == []


def test_the_sweep_purges_it_after_the_live_period(services: Services, shared: list[str]) -> None:
    from openprofiles.contacts.links import WAIT_SECONDS
    from openprofiles.contacts.sweep import purge_shared_endpoints

    start(services, "c1", NUMBER)
    with services.read() as tx:
        now = tx.now

    assert purge_shared_endpoints(services, now=now + timedelta(seconds=WAIT_SECONDS - 60)) == 0
    assert len(rows(services)) == 1
    assert purge_shared_endpoints(services, now=now + timedelta(seconds=WAIT_SECONDS + 1)) == 1
    assert rows(services) == []


def test_an_agents_link_supersedes_it(services: Services, shared: list[str]) -> None:
    start(services, "c1", NUMBER)

    with services.write() as tx:
        add_profile_key(
            tx, domain_name=D, profile_id=shared[0], key_name="_ctrContactId", values=["c1"]
        )

    assert linked(services, "c1") == [shared[0]]
    assert rows(services) == []


def test_deleting_a_profile_that_holds_the_number_erases_it(
    services: Services, shared: list[str]
) -> None:
    start(services, "c1", NUMBER)
    start(services, "chat-1", EMAIL, channel="CHAT")
    assert len(rows(services)) == 2
    other = profile(services, PhoneNumber="+4930123456")

    with services.write() as tx:
        delete_profile(tx, domain_name=D, profile_id=other)
    assert len(rows(services)) == 2
    with services.write() as tx:
        delete_profile(tx, domain_name=D, profile_id=shared[1])

    assert rows(services) == []


def test_deleting_the_domain_erases_it(services: Services, shared: list[str]) -> None:
    start(services, "c1", NUMBER)

    with services.write() as tx:
        delete_domain(tx, domain_name=D)

    assert rows(services) == []


def test_erasing_by_value_takes_a_number_no_profile_holds_any_more(
    services: Services, shared: list[str]
) -> None:
    # The profiles lost the number before they were deleted: DeleteProfile found nothing by it,
    # and the number stayed readable for the rest of the hour. The erasure by value (`instances
    # purge-unrouted --matching`) takes it.
    from openprofiles.held_values import HeldValue
    from openprofiles.profiles.service import update_profile

    start(services, "c1", NUMBER)
    with services.write() as tx:
        for profile_id in shared:
            update_profile(
                tx,
                domain_name=D,
                profile_id=profile_id,
                changes={"PhoneNumber": "", "HomePhoneNumber": ""},
            )
            delete_profile(tx, domain_name=D, profile_id=profile_id)
    assert kept(services, "c1") == ("_phone", NUMBER)

    region = services.settings.default_phone_region
    with services.read() as tx:
        assert erase(tx, HeldValue("(303) 555-0000", region), dry_run=True) == 1
    assert kept(services, "c1") == ("_phone", NUMBER)
    with services.write() as tx:
        # A value that is neither an email nor a phone number is no caller's endpoint.
        assert erase(tx, HeldValue("Jane", region)) == 0
    # The operator's command (docs/operations.md, "Erasing a customer").
    options = ["--data-dir", str(services.settings.data_dir)]
    if services.settings.database_url:
        options += ["--database-url", services.settings.database_url]
    result = CliRunner().invoke(
        main, ["instances", "purge-unrouted", *options, "--matching", "+1 303 555 0000", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["CallerEndpoints"] == 1
    assert kept(services, "c1") is None
    assert rows(services) == []


def test_erasing_by_value_takes_an_email_address_ignoring_case(
    services: Services, shared: list[str]
) -> None:
    from openprofiles.held_values import HeldValue

    start(services, "chat-1", EMAIL, channel="CHAT")
    start(services, "c1", NUMBER)
    region = services.settings.default_phone_region
    with services.write() as tx:
        assert erase(tx, HeldValue("FAMILY@Example.org", region)) == 1
    # The phone number, another value, stays until its own erasure.
    assert kept(services, "chat-1") is None
    assert kept(services, "c1") == ("_phone", NUMBER)


def erase(tx: Any, value: Any, *, dry_run: bool = False) -> int:
    """What `instances purge-unrouted --matching` does to the kept endpoints (here in one
    transaction), asserting every domain was looked at."""
    from openprofiles.contacts.shared_endpoint import held_endpoints, purge_holding

    held, unreadable = held_endpoints(tx, value=value)
    assert unreadable == []
    return purge_holding(tx, held, dry_run=dry_run)
