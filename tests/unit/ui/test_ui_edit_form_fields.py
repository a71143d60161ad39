"""The profile edit form writes only what the agent changed, whatever the form left out and
whatever the browser did to a value it was given: a form without some of its fields is refused
(a field left out read as empty, and saving cleared it: the attributes, the address); a value
the API stored with a line break comes back from a single-line input without it, and is no
change (saving another field stored it without); an email field is a text input (Chromium
rewrote an email input's internationalised domain into punycode)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient
from tests.unit.ingest.conftest import DOMAIN
from tests.unit.ui.test_ui_admin_ops import signed_in
from tests.unit.ui.test_ui_edit_conflicts import _form_of, _profile, _stored
from tests.unit.ui.test_ui_kms_outage_forms import DOMAIN as KEYED
from tests.unit.ui.test_ui_kms_outage_forms import (
    Setup,
    _outage,
    setup,  # noqa: F401  (the fixture: a domain whose key is in a KMS that can fail)
)

from openprofiles.settings import Settings
from openprofiles.ui import profile_form as pf

STORED = {
    "FirstName": "Ann",
    "LastName": "Lee",
    "PhoneNumber": "+12065550111",
    "Attributes": {"tier": "gold"},
    "Address": {"Address1": "1 Main St", "City": "Seattle"},
}


@pytest.fixture
def agent(settings: Settings) -> Iterator[TestClient]:
    yield from signed_in(settings, "agent")


def _csrf(form: dict[str, str]) -> dict[str, str]:
    return {"csrf_token": form["csrf_token"]}


@pytest.mark.parametrize(
    "leave_out",
    [
        # A script's form: just the field it means to change, no values as shown.
        lambda form: {**_csrf(form), "FirstName": "Anne"},
        # The whole form but its attributes and its address.
        lambda form: {
            k: v for k, v in form.items() if k != "Attributes" and not k.startswith("Address.")
        },
        # The whole form but some of the values it showed.
        lambda form: {k: v for k, v in form.items() if k != pf.SHOWN_PREFIX + "Attributes"},
    ],
    ids=["one-field", "no-attributes-or-address", "part-of-the-shown-values"],
)
def test_an_edit_form_without_some_of_its_fields_is_refused_and_clears_nothing(
    agent: TestClient, leave_out: Any
) -> None:
    profile_id, url, form = _profile(agent, STORED)
    sent = {**leave_out(form), "FirstName": "Anne"}

    refused = agent.post(url, data=sent)

    assert refused.status_code == 400
    assert "without some of its fields" in refused.text and "Nothing was saved" in refused.text
    stored = _stored(agent, profile_id)
    assert stored["FirstName"] == "Ann"
    assert stored["Attributes"] == {"tier": "gold"}
    assert stored["Address"] == {"Address1": "1 Main St", "City": "Seattle"}
    assert stored["LastName"] == "Lee" and stored["PhoneNumber"] == "+12065550111"


def test_a_whole_form_without_the_values_it_showed_saves_what_differs_from_the_profile(
    agent: TestClient,
) -> None:
    """Every field sent, none as shown (a script's form): compared with the profile as stored,
    as before."""
    profile_id, url, form = _profile(agent, STORED)
    sent = {k: v for k, v in form.items() if not k.startswith(pf.SHOWN_PREFIX)}

    assert agent.post(url, data={**sent, "FirstName": "Anne"}).status_code == 303
    stored = _stored(agent, profile_id)
    assert stored["FirstName"] == "Anne" and stored["Attributes"] == {"tier": "gold"}


def _as_single_line_inputs_send(client: TestClient, url: str) -> dict[str, str]:
    """The edit form at `url` as a browser sends it: a single-line input's value (text, tel,
    email) without line breaks (its value sanitisation); the values it showed (hidden inputs)
    and the text areas keep theirs."""
    html = client.get(url).text
    single_line = set(
        re.findall(r'<input id="[^"]*" name="([^"]+)" type="(?:text|tel|email)"', html)
    )
    assert {"FirstName", "Address.Address1"} <= single_line
    return {
        k: v.replace("\r", "").replace("\n", "") if k in single_line else v
        for k, v in _form_of(html).items()
    }


def test_a_line_break_a_single_line_input_drops_is_no_change(agent: TestClient) -> None:
    profile_id, url, _ = _profile(
        agent,
        {
            "FirstName": "Ann\nMarie",
            "LastName": "Smith",
            "AdditionalInformation": "line1\nline2",
            "Address": {"Address1": "1 Main St\r\nFlat 2"},
        },
    )
    sent = _as_single_line_inputs_send(agent, url)
    assert sent["FirstName"] == "AnnMarie"

    saved = agent.post(url, data={**sent, "LastName": "Smyth"})

    assert saved.status_code == 303
    stored = _stored(agent, profile_id)
    assert stored["LastName"] == "Smyth"
    assert stored["FirstName"] == "Ann\nMarie"
    assert stored["Address"] == {"Address1": "1 Main St\r\nFlat 2"}
    assert stored["AdditionalInformation"] == "line1\nline2"


def test_a_value_typed_over_one_with_a_line_break_is_saved(agent: TestClient) -> None:
    profile_id, url, _ = _profile(agent, {"FirstName": "Ann\nMarie"})
    sent = _as_single_line_inputs_send(agent, url)

    saved = agent.post(url, data={**sent, "FirstName": "Ann Marie"})

    assert saved.status_code == 303
    assert _stored(agent, profile_id)["FirstName"] == "Ann Marie"


def test_email_fields_are_text_inputs_with_an_email_keyboard(agent: TestClient) -> None:
    _, url, _ = _profile(agent, {"EmailAddress": "zoe@exämple.com"})
    pages = {
        "edit": agent.get(url).text,
        "create": agent.get(f"/agent/domains/{DOMAIN}/profiles/new").text,
    }

    for which, html in pages.items():
        assert 'type="email"' not in html, which
        for name in ("EmailAddress", "PersonalEmailAddress", "BusinessEmailAddress"):
            found = re.search(rf'<input id="{name}"[^>]*>', html)
            assert found, (which, name)
            assert 'type="text"' in found.group(0) and 'inputmode="email"' in found.group(0)
    assert _form_of(pages["edit"])["EmailAddress"] == "zoe@exämple.com"


def test_an_edit_form_without_some_of_its_fields_is_refused_while_the_key_cannot_be_used(
    setup: Setup,  # noqa: F811
) -> None:
    """Given back filled in during a KMS outage (agent_pages.unsaved_form), a form without its
    fields came back with them empty, and sent again once the key worked it cleared them."""
    url = f"/agent/domains/{KEYED}/profiles/{setup.profile_id}/edit"
    form = _form_of(setup.agent.get(url).text)
    _outage(setup, "KeyUnavailableException")

    answer = setup.agent.post(url, data={**_csrf(form), "LastName": "Mensah"})

    assert answer.status_code == 400
    assert "without some of its fields" in answer.text and "Save changes" not in answer.text
