"""An edit form shown again — refused for a field changed meanwhile, refused for an error, or
kept when the session ended and given back after sign-in — shows what is saved now in every
field the agent did not change (in the field and as the value it was shown), and what the
agent typed in the others. It used to show an untouched field as it was when the form was
first opened: the page named the customer "ApiFirst ApiLast" while the form said "Conf", and
a change the agent then made to that field was judged against the stale value and refused.
On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient
from tests.unit.ingest.conftest import DOMAIN, make_domain
from tests.unit.ui.test_ui_admin_ops import PASSWORD, signed_in
from tests.unit.ui.test_ui_edit_conflicts import (
    REFUSED,
    _form_of,
    _now_saved,
    _profile,
    _someone_saves,
    _stored,
)
from tests.unit.ui.test_ui_kept_form import TYPED, _sent_after_the_session_ended, _sign_in

from openprofiles.app import create_app
from openprofiles.settings import Settings
from openprofiles.ui import profile_form as pf
from openprofiles.users import service as users

SHOWN = pf.SHOWN_PREFIX


@pytest.fixture
def agent(settings: Settings) -> Iterator[TestClient]:
    yield from signed_in(settings, "agent")


def test_a_refused_edit_shows_what_is_saved_now_in_the_fields_the_agent_left(
    agent: TestClient,
) -> None:
    profile_id, url, form = _profile(
        agent,
        {
            "FirstName": "Conf",
            "LastName": "Orig",
            "BusinessName": "Old Co",
            "Gender": "MALE",
            "Address": {"City": "Oslo"},
            "Attributes": {"tier": "gold"},
        },
    )
    _someone_saves(
        agent,
        profile_id,
        {
            "FirstName": "ApiFirst",
            "LastName": "ApiLast",
            "BusinessName": "",
            "Gender": "FEMALE",
            "Address": {"City": "Bergen"},
            "Attributes": {"tier": "platinum"},
        },
    )

    refused = agent.post(url, data={**form, "MiddleName": "Mid", "LastName": "Typed"})

    assert refused.status_code == 400 and REFUSED in refused.text
    again = _form_of(refused.text)
    # What the agent typed stays; the conflicting field says what is saved now.
    assert again["MiddleName"] == "Mid" and again["LastName"] == "Typed"
    # A change not refused stays a change from what was first shown, to be saved next time.
    assert again[SHOWN + "MiddleName"] == ""
    assert _now_saved(refused.text, "LastName") == "Now saved: ApiLast"
    # The fields the agent left show what is saved now, as the page's breadcrumb does.
    assert again["FirstName"] == again[SHOWN + "FirstName"] == "ApiFirst"
    assert again["BusinessName"] == again[SHOWN + "BusinessName"] == ""
    assert again["Gender"] == again[SHOWN + "Gender"] == "FEMALE"
    assert again["Address.City"] == again[SHOWN + "Address.City"] == "Bergen"
    assert again["Attributes"] == again[SHOWN + "Attributes"] == "tier = platinum"
    assert "FirstName-now" not in refused.text, "no conflict on a field the agent left"

    # The agent now changes the first name from the value they see: no conflict.
    saved = agent.post(url, data={**again, "FirstName": "Agent"})

    assert saved.status_code == 303
    stored = _stored(agent, profile_id)
    assert (stored["FirstName"], stored["MiddleName"], stored["LastName"]) == (
        "Agent",
        "Mid",
        "Typed",
    )
    # What the other saved to the fields this agent never changed stays.
    assert stored["Gender"] == "FEMALE" and stored["Address"]["City"] == "Bergen"
    assert stored["Attributes"] == {"tier": "platinum"} and not stored.get("BusinessName")


def test_a_refused_edit_refreshes_the_attribute_lines_the_agent_left(
    agent: TestClient,
) -> None:
    """The agent changed one attribute line: the text area kept every other line as first
    shown, one changed meanwhile among them, though saving never wrote it back."""
    profile_id, url, form = _profile(
        agent,
        {"LastName": "Orig", "Attributes": {"tier": "gold", "region": "north", "old": "x"}},
    )
    _someone_saves(
        agent,
        profile_id,
        {"LastName": "ApiLast", "Attributes": {"region": "south", "old": "", "new": "y"}},
    )
    typed = form["Attributes"].replace("tier = gold", "tier = silver")

    refused = agent.post(url, data={**form, "LastName": "Typed", "Attributes": typed})

    assert refused.status_code == 400 and REFUSED in refused.text
    again = _form_of(refused.text)
    # The agent's line as typed; the others as saved now (changed, added, removed meanwhile).
    assert again["Attributes"].splitlines() == ["tier = silver", "region = south", "new = y"]
    # As shown: the agent's line as first shown (still their change), the others as saved.
    assert again[SHOWN + "Attributes"].splitlines() == [
        "region = south",
        "new = y",
        "tier = gold",
    ]
    assert "Attributes-now" not in refused.text, "no conflict on the attributes"

    saved = agent.post(url, data=again)

    assert saved.status_code == 303
    stored = _stored(agent, profile_id)
    assert stored["LastName"] == "Typed"
    assert stored["Attributes"] == {"tier": "silver", "region": "south", "new": "y"}


def test_a_form_refused_for_an_error_shows_what_is_saved_now_in_the_fields_left(
    agent: TestClient,
) -> None:
    profile_id, url, form = _profile(agent, {"FirstName": "Conf", "EmailAddress": "a@b.co"})
    _someone_saves(agent, profile_id, {"FirstName": "ApiFirst"})

    refused = agent.post(url, data={**form, "EmailAddress": "not an email"})

    assert refused.status_code == 400 and "Enter an email address" in refused.text
    again = _form_of(refused.text)
    assert again["EmailAddress"] == "not an email"
    assert again[SHOWN + "EmailAddress"] == "a@b.co"
    assert again["FirstName"] == again[SHOWN + "FirstName"] == "ApiFirst"


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    with app.state.services.write() as tx:
        users.create_user(tx, username="ana", password=PASSWORD, role="agent")
    make_domain(app.state.services)
    with TestClient(app, follow_redirects=False) as test_client:
        yield test_client
    app.state.services.database.dispose()


def test_a_kept_form_comes_back_with_what_is_saved_now_in_the_fields_left(
    client: TestClient,
) -> None:
    """A kept form is not checked until saved: the first name ana typed keeps its value as
    shown, so saving still refuses what someone else saved there meanwhile; the last name she
    left shows what is saved now."""
    profile_id, page = _sent_after_the_session_ended(client)
    _someone_saves(client, profile_id, {"FirstName": "ApiFirst", "LastName": "ApiLast"})
    back = _sign_in(client, page, "ana")
    assert back.status_code == 200
    url = f"/agent/domains/{DOMAIN}/profiles/{profile_id}/edit"

    restored = client.post(url, data=_form_of(back.text))

    assert restored.status_code == 200
    form = _form_of(restored.text)
    assert form["FirstName"] == TYPED and form[SHOWN + "FirstName"] == "Ada"
    assert form["LastName"] == form[SHOWN + "LastName"] == "ApiLast"

    refused = client.post(url, data=form)

    assert refused.status_code == 400
    assert _now_saved(refused.text, "FirstName") == "Now saved: ApiFirst"
    assert "LastName-now" not in refused.text
    assert client.post(url, data=_form_of(refused.text)).status_code == 303
    stored = _stored(client, profile_id)
    assert (stored["FirstName"], stored["LastName"]) == (TYPED, "ApiLast")
