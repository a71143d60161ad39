"""The confirmations of the profile page ("Profile saved.", "Contact ... is now linked to this
profile") and of the password page ("Your password has been changed") come from the change
itself, once (ui.flash), never from the address: they were shown for `?saved=1`, `&linked=1`
and `?changed=1`, so anyone could send an agent a link that said "Saved" for a change that
never happened. Starlette's TestClient, both backends."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from starlette.testclient import TestClient
from tests.unit.integrations.integ_helpers import make_domain
from tests.unit.ui.test_ui_kept_form import _fields
from tests.unit.ui.test_ui_private_urls import PASSWORD, csrf_of, hidden_value, sign_in

from openprofiles.app import create_app
from openprofiles.profiles import service as profiles
from openprofiles.settings import Settings
from openprofiles.ui.flash import FLASH_COOKIE
from openprofiles.ui.web import cookie_name
from openprofiles.users import service as users

SAVED = "Profile saved."
LINKED = "is now linked to this profile"
CONTACT = "c-7b1d-4c55"


@dataclass
class Setup:
    agent: TestClient
    other_agent: TestClient
    profile: str
    second: str


def profile_url(profile_id: str) -> str:
    return f"/agent/domains/acme/profiles/{profile_id}"


@pytest.fixture
def setup(settings: Settings) -> Iterator[Setup]:
    app = create_app(settings)
    services = app.state.services
    make_domain(services, "acme")
    with services.write() as tx:
        for username in ("agent1", "agent2"):
            users.create_user(tx, username=username, password=PASSWORD, role="agent")
        ids = [
            profiles.create_profile(tx, domain_name="acme", fields={"FirstName": n}).profile_id
            for n in ("Kofi", "Ama")
        ]
    agent = TestClient(app, follow_redirects=False)
    other = TestClient(app, follow_redirects=False)
    sign_in(agent, "agent1")
    sign_in(other, "agent2")
    try:
        yield Setup(agent, other, *ids)
    finally:
        agent.close()
        other.close()
        services.database.dispose()


def edit(client: TestClient, profile_id: str, first_name: str) -> str:
    """Save the edit form with a new first name; the address it redirects to."""
    form = _fields(client.get(f"{profile_url(profile_id)}/edit").text)
    saved = client.post(f"{profile_url(profile_id)}/edit", data={**form, "FirstName": first_name})
    assert saved.status_code == 303, saved.text
    return saved.headers["location"]


def test_a_link_does_not_say_saved_or_linked(setup: Setup) -> None:
    crafted = setup.agent.get(f"{profile_url(setup.profile)}?saved=1")
    assert crafted.status_code == 200 and SAVED not in crafted.text
    # Linked indeed, but not by this agent just now: the page says it is linked, not "now".
    with setup.agent.app.state.services.write() as tx:  # type: ignore[attr-defined]
        profiles.add_profile_key(
            tx,
            domain_name="acme",
            profile_id=setup.profile,
            key_name="_ctrContactId",
            values=[CONTACT],
        )
    page = setup.agent.get(f"{profile_url(setup.profile)}?contact={CONTACT}&linked=1&saved=1")
    assert "is linked to this profile" in page.text
    assert LINKED not in page.text and SAVED not in page.text


def test_a_save_is_confirmed_once_on_the_page_it_leads_to(setup: Setup) -> None:
    location = edit(setup.agent, setup.profile, "Kwame")
    # Nothing in the address: a copy of it, the history or a reload shows no confirmation.
    assert location == profile_url(setup.profile)
    shown = setup.agent.get(location)
    assert SAVED in shown.text and "Kwame" in shown.text
    assert SAVED not in setup.agent.get(location).text


def test_a_confirmation_is_shown_only_for_its_profile_and_session(setup: Setup) -> None:
    location = edit(setup.agent, setup.profile, "Kwame")
    name = cookie_name(setup.agent.app.state.services, FLASH_COOKIE)  # type: ignore[attr-defined]
    flash = setup.agent.cookies.get(name)
    assert flash
    # Another agent given the cookie (another session): no confirmation of someone else's save.
    setup.other_agent.cookies.set(name, flash)
    assert SAVED not in setup.other_agent.get(location).text
    # Another profile opened first (another tab) neither shows nor spends it.
    assert SAVED not in setup.agent.get(profile_url(setup.second)).text
    assert SAVED in setup.agent.get(location).text
    # A cookie written by hand is no confirmation either.
    setup.agent.cookies.set(name, "saved")
    assert SAVED not in setup.agent.get(location).text


def test_creating_and_linking_are_confirmed_once(setup: Setup) -> None:
    new = f"/agent/domains/acme/profiles/new?contact={CONTACT}"
    form = setup.agent.get(new).text
    created = setup.agent.post(
        new,
        data={
            "csrf_token": csrf_of(form),
            "submission": hidden_value(form, "submission"),
            "FirstName": "Nia",
        },
    )
    assert created.status_code == 303, created.text
    location = created.headers["location"]
    assert "saved" not in location and "linked" not in location
    first = setup.agent.get(location).text
    assert SAVED in first and LINKED in first
    again = setup.agent.get(location).text
    assert SAVED not in again and LINKED not in again and "is linked to this profile" in again


PASSWORD_CHANGED = "Your password has been changed"


def test_a_link_does_not_say_the_password_was_changed(setup: Setup) -> None:
    crafted = setup.agent.get("/ui/password?changed=1")
    assert crafted.status_code == 200 and PASSWORD_CHANGED not in crafted.text


def test_a_password_change_is_confirmed_once(setup: Setup) -> None:
    form = setup.agent.get("/ui/password").text
    new = "another long password"
    done = setup.agent.post(
        "/ui/password",
        data={
            "csrf_token": csrf_of(form),
            "current_password": PASSWORD,
            "new_password": new,
            "new_password_confirm": new,
        },
    )
    assert done.status_code == 303 and done.headers["location"] == "/ui/password"
    # Not on another page (the profile opened first), and only once on its own.
    assert PASSWORD_CHANGED not in setup.agent.get(profile_url(setup.profile)).text
    assert PASSWORD_CHANGED in setup.agent.get("/ui/password").text
    assert PASSWORD_CHANGED not in setup.agent.get("/ui/password").text
