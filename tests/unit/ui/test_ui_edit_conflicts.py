"""An edit refused because someone else changed a field meanwhile can be acted on: the agent's
typed values stay in the form, each conflicting field (each conflicting attribute) shows the
value saved now, and saving again replaces it knowingly, while a third agent's change after
that is refused in turn. It used to say "reload the page", and the agent retyped their change
without ever seeing what the other had saved."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape
from typing import Any

import pytest
from starlette.testclient import TestClient
from tests.unit.ingest.conftest import DOMAIN
from tests.unit.ui.test_ui_admin_ops import services_of, signed_in
from tests.unit.ui.test_ui_pages import _FormFields

from openprofiles.profiles import service as profiles
from openprofiles.settings import Settings
from openprofiles.ui import profile_form as pf

REFUSED = "Someone else changed this field since you opened the form."


@pytest.fixture
def agent(settings: Settings) -> Iterator[TestClient]:
    yield from signed_in(settings, "agent")


def _profile(client: TestClient, fields: dict[str, Any]) -> tuple[str, str, dict[str, str]]:
    """(profile id, edit address, the edit form as a browser sends it back)."""
    with services_of(client).write() as tx:
        profile_id = profiles.create_profile(tx, domain_name=DOMAIN, fields=fields).profile_id
    url = f"/agent/domains/{DOMAIN}/profiles/{profile_id}/edit"
    return profile_id, url, _form_of(client.get(url).text)


def _form_of(html: str) -> dict[str, str]:
    parser = _FormFields()
    parser.feed(html)
    return parser.fields


def _someone_saves(client: TestClient, profile_id: str, changes: dict[str, Any]) -> None:
    with services_of(client).write() as tx:
        profiles.update_profile(tx, domain_name=DOMAIN, profile_id=profile_id, changes=changes)


def _stored(client: TestClient, profile_id: str) -> dict[str, Any]:
    with services_of(client).read() as tx:
        return profiles.get_profile(tx, domain_name=DOMAIN, profile_id=profile_id).fields


def _now_saved(html: str, field: str) -> str:
    """The "Now saved" note under the field, as text."""
    found = re.search(rf'<p class="hint" id="{re.escape(field)}-now">(.*?)</p>', html, re.S)
    assert found, f"no 'Now saved' note for {field}"
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", found.group(1))).split())


def test_a_refused_edit_keeps_the_typed_value_shows_the_saved_one_and_saves_on_request(
    agent: TestClient,
) -> None:
    profile_id, url, form = _profile(agent, {"FirstName": "Ada", "LastName": "Lovelace"})
    _someone_saves(agent, profile_id, {"FirstName": "Ann", "LastName": "King"})

    refused = agent.post(url, data={**form, "FirstName": "Bea"})

    assert refused.status_code == 400 and REFUSED in refused.text
    again = _form_of(refused.text)
    assert again["FirstName"] == "Bea", "the typed value is kept"
    assert _now_saved(refused.text, "FirstName") == "Now saved: Ann"
    assert "LastName-now" not in refused.text, "the agent did not change the last name"
    assert _stored(agent, profile_id)["FirstName"] == "Ann"

    saved = agent.post(url, data=again)

    assert saved.status_code == 303
    stored = _stored(agent, profile_id)
    assert stored["FirstName"] == "Bea"
    # The other agent's change to a field this agent did not touch stays.
    assert stored["LastName"] == "King"


def test_a_third_agents_change_after_the_refusal_is_refused_in_turn(agent: TestClient) -> None:
    profile_id, url, form = _profile(agent, {"FirstName": "Ada"})
    _someone_saves(agent, profile_id, {"FirstName": "Ann"})
    refused = agent.post(url, data={**form, "FirstName": "Bea"})
    assert refused.status_code == 400
    _someone_saves(agent, profile_id, {"FirstName": "Cy"})

    again = agent.post(url, data=_form_of(refused.text))

    assert again.status_code == 400 and REFUSED in again.text
    assert _now_saved(again.text, "FirstName") == "Now saved: Cy"
    assert _stored(agent, profile_id)["FirstName"] == "Cy"


def test_a_value_saved_now_is_escaped_and_isolated(agent: TestClient) -> None:
    profile_id, url, form = _profile(agent, {"FirstName": "Ada"})
    _someone_saves(agent, profile_id, {"FirstName": '<b>"אבג"</b>', "Gender": "FEMALE"})

    refused = agent.post(url, data={**form, "FirstName": "Bea", "Gender": "MALE"})

    assert refused.status_code == 400
    assert "<bdi>&lt;b&gt;&#34;אבג&#34;&lt;/b&gt;</bdi>" in refused.text
    assert "<b>" not in refused.text
    # A choice shows its label, a cleared field says so.
    assert _now_saved(refused.text, "Gender") == "Now saved: Female"
    _someone_saves(agent, profile_id, {"FirstName": ""})
    cleared = agent.post(url, data={**form, "FirstName": "Bea"})
    assert _now_saved(cleared.text, "FirstName") == "Now saved: nothing (the field was cleared)"


def test_conflicting_attributes_show_the_stored_lines_and_save_on_request(
    agent: TestClient,
) -> None:
    profile_id, url, form = _profile(
        agent, {"Attributes": {"tier": "gold", "colour": "red", "gone": "soon"}}
    )
    _someone_saves(
        agent,
        profile_id,
        {"Attributes": {"tier": "platinum", "gone": "", "added": "elsewhere"}},
    )
    typed = "tier = silver\ncolour = blue"  # "gone" removed, "tier" and "colour" changed

    refused = agent.post(url, data={**form, "Attributes": typed})

    assert refused.status_code == 400 and REFUSED in refused.text
    again = _form_of(refused.text)
    # What the agent typed, and the line another added meanwhile (test_ui_edit_conflict_refresh).
    assert again["Attributes"].replace("\r\n", "\n") == typed + "\nadded = elsewhere"
    # "gone" was removed by both: no conflict; "colour" was not changed meanwhile.
    assert _now_saved(refused.text, "Attributes") == "Now saved: tier = platinum"

    saved = agent.post(url, data=again)

    assert saved.status_code == 303
    assert _stored(agent, profile_id)["Attributes"] == {
        "tier": "silver",
        "colour": "blue",
        "added": "elsewhere",  # the other agent's, untouched by this one
    }


def test_an_attribute_removed_meanwhile_is_named() -> None:
    shown = pf.values_from_profile({"Attributes": {"tier": "gold"}})
    values = {**shown, "Attributes": "tier = silver"}
    current: dict[str, Any] = {"Attributes": {}}
    baseline, saved = pf.refused_edit(current, shown, values)
    assert saved == {"Attributes": pf.NowSaved(removed=("tier",))}
    # Saving again writes the typed value, and checks it against "not stored".
    assert pf.update_changes(current, baseline, values) == ({"Attributes": {"tier": "silver"}}, {})


def test_a_field_both_agents_set_to_the_same_value_is_no_conflict() -> None:
    shown = pf.values_from_profile({"FirstName": "Ada"})
    values = {**shown, "FirstName": "Ann"}
    assert pf.update_changes({"FirstName": "Ann"}, shown, values) == ({"FirstName": "Ann"}, {})


def test_a_field_names_its_now_saved_note_for_screen_readers(agent: TestClient) -> None:
    """The note sat under the field unlinked: a screen reader on the field heard the conflict
    but not the value saved now (review)."""
    profile_id, url, form = _profile(agent, {"FirstName": "Ada", "Gender": "MALE"})
    _someone_saves(agent, profile_id, {"FirstName": "Ann", "Gender": "FEMALE"})
    refused = agent.post(url, data={**form, "FirstName": "Bea", "Gender": "OTHER"}).text

    def described_by(field: str) -> list[str]:
        tag = re.search(rf'<(?:input|select|textarea) id="{re.escape(field)}"[^>]*>', refused)
        assert tag, f"no control {field}"
        ids = re.search(r'aria-describedby="([^"]*)"', tag.group(0))
        return ids.group(1).split() if ids else []

    assert "FirstName-now" in described_by("FirstName")
    assert "Gender-now" in described_by("Gender")
    assert not any(i.endswith("-now") for i in described_by("LastName"))
