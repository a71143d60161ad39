"""Two agents linking or moving the same live contact at once from the agent pages (PostgreSQL,
several server processes, READ COMMITTED): the second waits for the first and works from what it
committed, as when they come one after the other. SQLite's single writer serialises them already
(tests.unit.ui.test_ui_contact_link: the same pages one after the other, both backends).

The page takes the contact's lock before it reads which profiles have the contact
(ui.agent_pages `lock_contact`); each test keeps the other agent's transaction open until the
page waits for one of its locks (tests.support.lock_waits). Before, the page read the links
first, without waiting, and went by what was committed before the other agent's change."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from tests.support.backends import postgres_schema_url
from tests.support.lock_waits import second_writer_meets_first
from tests.unit.ingest.conftest import DOMAIN
from tests.unit.ui.test_ui_admin_ops import services_of, signed_in
from tests.unit.ui.test_ui_contact_link import link_form

from openprofiles.context import Services, Tx
from openprofiles.profiles import service as profiles
from openprofiles.settings import Settings

pytestmark = pytest.mark.postgres

CONTACT = "5d0e7c1b-2a44-4f0e-9a61-7c3b1e2d9f30"
KEY = "_ctrContactId"


@pytest.fixture
def pg_agent(tmp_path: Path) -> Iterator[TestClient]:
    with postgres_schema_url() as url:
        yield from signed_in(Settings(data_dir=tmp_path / "data", database_url=url), "agent")


def _profile(services: Services, name: str) -> str:
    with services.write() as tx:
        return profiles.create_profile(
            tx, domain_name=DOMAIN, fields={"FirstName": name}
        ).profile_id


def _link(tx: Tx, profile_id: str) -> None:
    profiles.add_profile_key(
        tx, domain_name=DOMAIN, profile_id=profile_id, key_name=KEY, values=[CONTACT]
    )


def _unlink(tx: Tx, profile_id: str) -> None:
    profiles.delete_profile_key(
        tx, domain_name=DOMAIN, profile_id=profile_id, key_name=KEY, values=[CONTACT]
    )


def _linked_to(services: Services) -> list[str]:
    """The profiles the contact's key finds, as the agent pages and the contact's record do."""
    with services.read() as tx:
        page, _ = profiles.search_profiles(
            tx, domain_name=DOMAIN, criteria=[profiles.SearchCriterion(KEY, (CONTACT,))]
        )
    return sorted(rec.profile_id for rec, _ in page)


def _post_link(client: TestClient, action: str, fields: dict[str, str]) -> tuple[int, str]:
    response = client.post(action, data=fields)
    return response.status_code, response.headers.get("location", response.text)


def test_two_agents_moving_one_contact_at_once_both_moves_are_made_in_turn(
    pg_agent: TestClient,
) -> None:
    """The contact is on one profile; another agent moves it to a second profile while this
    agent moves it to a third. This move waits for the other's, then takes the contact off the
    profile the other moved it to: the contact ends on the third profile only. Before, this
    move read the first profile as the one to take it off, and its DeleteProfileKey, once the
    other's move committed, found nothing there: NotFound, an error page."""
    services = services_of(pg_agent)
    first, second, third = (_profile(services, n) for n in ("First", "Second", "Third"))
    with services.write() as tx:
        _link(tx, first)
    page = pg_agent.get(
        f"/agent/domains/{DOMAIN}/profiles/{third}", params={"contact": CONTACT}
    ).text
    action, fields, button = link_form(page)
    assert button.endswith("to this profile instead") and fields["move"] == "1"

    def other_agent_moves(tx: Tx) -> None:
        _unlink(tx, first)
        _link(tx, second)

    status, where = second_writer_meets_first(
        services, other_agent_moves, lambda: _post_link(pg_agent, action, fields)
    )

    assert status == 303, where
    assert "is now linked to this profile" in pg_agent.get(where).text
    assert _linked_to(services) == [third]


def test_a_link_made_while_another_agent_links_the_contact_elsewhere_is_not_made(
    pg_agent: TestClient,
) -> None:
    """The page was shown while no profile had the contact; another agent links it to another
    profile while this agent's link (which did not choose to move it) is posted. This link
    waits for the other's, finds the contact on the other profile and links nothing, as when
    the other's link comes first: the profile page then shows which profile has it, and the
    choice to move it. Before, it found no link and linked the contact to both profiles, where
    the contact's record would go to neither."""
    services = services_of(pg_agent)
    other, this = _profile(services, "Other"), _profile(services, "This")
    page = pg_agent.get(
        f"/agent/domains/{DOMAIN}/profiles/{this}", params={"contact": CONTACT}
    ).text
    action, fields, button = link_form(page)
    assert "move" not in fields and not button.endswith("instead")

    status, where = second_writer_meets_first(
        services, lambda tx: _link(tx, other), lambda: _post_link(pg_agent, action, fields)
    )

    assert status == 303, where
    assert "is now linked to this profile" not in pg_agent.get(where).text
    assert _linked_to(services) == [other]
