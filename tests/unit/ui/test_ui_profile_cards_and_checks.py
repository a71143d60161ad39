"""Found by a UI review (both backends, Starlette's TestClient, signed in as an agent): a screen
pop's look-alike profiles ("Ada Lovelace in care" twice) told apart on their cards; the agent
forms refusing a phone number that is no whole number of its country ("+1 (206) 555-01"), as
they refuse "call me"; and the edit form refusing to leave a profile with no field at all, as
the create form refuses an empty form."""

from __future__ import annotations

import re
from html import unescape

from starlette.testclient import TestClient
from tests.unit.integrations.integ_helpers import associate
from tests.unit.ui.test_ui_contact_link import new_profile
from tests.unit.ui.test_ui_pages import _FormFields
from tests.unit.ui.test_ui_private_urls import (
    agent,  # noqa: F401  (the fixture: acme with 21 namesakes, and other)
    app_client,  # noqa: F401  (the fixture agent needs)
)
from tests.unit.ui.test_ui_screen_pop_search_key import event, post_event, services_of

from openprofiles.profiles import service as profiles
from openprofiles.ui import profile_form as pf

INCOMPLETE = "+1 (206) 555-01"


def form_fields(client: TestClient, url: str) -> dict[str, str]:
    parser = _FormFields()
    parser.feed(client.get(url).text)
    return parser.fields


def field_error(html: str, name: str) -> str:
    """The message under a form field (its -error paragraph), or ""."""
    match = re.search(rf'<p class="error" id="{re.escape(name)}-error">([^<]*)</p>', html)
    return unescape(match.group(1)) if match else ""


def fields_of(client: TestClient, profile_id: str) -> dict[str, object]:
    with services_of(client).read() as tx:
        return profiles.get_profile(tx, domain_name="acme", profile_id=profile_id).fields


def found_by_phone(client: TestClient, text: str) -> int:
    with services_of(client).read() as tx:
        page, _ = profiles.search_profiles(
            tx,
            domain_name="acme",
            criteria=[profiles.SearchCriterion("_phone", (text,))],
            limit=5,
        )
    return len(page)


def test_look_alike_profiles_on_a_screen_pop_show_what_tells_them_apart(
    agent: TestClient,  # noqa: F811
) -> None:
    associate(services_of(agent), "acme")
    new_profile(
        agent,
        FirstName="Ada",
        LastName="Lovelace",
        PhoneNumber="+1 206 345 7890",
        EmailAddress="ada@example.com",
        AccountNumber="ACC-1",
    )
    new_profile(
        agent,
        FirstName="Ada",
        LastName="Lovelace",
        MobilePhoneNumber="+44 20 7123 4567",
        BusinessEmailAddress="ada@analytical.example",
    )
    sent = post_event(
        agent, event("c-ada-1", profileSearchKey="_fullName", profileSearchValue="Ada Lovelace")
    )
    assert sent.status_code == 200, sent.text
    page = agent.get("/agent/contacts/c-ada-1")
    assert page.status_code == 200, page.text
    cards = re.findall(r"<li><a href=\"/agent/domains/acme/profiles/.*?</li>", page.text, re.S)
    assert len(cards) == 2 and all("Ada Lovelace" in card for card in cards)
    shown = sorted(
        re.findall(r"<dt>([^<]*)</dt><dd dir=\"auto\">([^<]*)</dd>", card) for card in cards
    )
    assert shown == sorted(
        [
            [("Phone", "+1 206 345 7890"), ("Email", "ada@example.com"), ("Account", "ACC-1")],
            [("Phone", "+44 20 7123 4567"), ("Email", "ada@analytical.example")],
        ]
    )


def test_the_create_form_refuses_an_incomplete_phone_number_keeping_what_was_typed(
    agent: TestClient,  # noqa: F811
) -> None:
    url = "/agent/domains/acme/profiles/new"
    sent = agent.post(
        url, data={**form_fields(agent, url), "FirstName": "Ada", "PhoneNumber": INCOMPLETE}
    )
    assert sent.status_code == 400, sent.text
    assert field_error(sent.text, "PhoneNumber") == pf.INCOMPLETE_PHONE
    assert f'value="{INCOMPLETE}"' in sent.text and 'value="Ada"' in sent.text
    assert found_by_phone(agent, INCOMPLETE) == 0
    # The whole number is saved.
    whole = "+1 (206) 555-0123"
    sent = agent.post(
        url, data={**form_fields(agent, url), "FirstName": "Ada", "PhoneNumber": whole}
    )
    assert sent.status_code == 303, sent.text
    assert found_by_phone(agent, whole) == 1


def test_the_edit_form_refuses_an_incomplete_phone_number_keeping_what_was_typed(
    agent: TestClient,  # noqa: F811
) -> None:
    profile_id = new_profile(agent, FirstName="Ada", HomePhoneNumber="+1 206 555 0123")
    url = f"/agent/domains/acme/profiles/{profile_id}/edit"
    sent = agent.post(url, data={**form_fields(agent, url), "HomePhoneNumber": "+1 206 555 01"})
    assert sent.status_code == 400, sent.text
    assert field_error(sent.text, "HomePhoneNumber") == pf.INCOMPLETE_PHONE
    assert 'value="+1 206 555 01"' in sent.text
    assert fields_of(agent, profile_id)["HomePhoneNumber"] == "+1 206 555 0123"
    # A number of another country, written with its code, is whole.
    sent = agent.post(url, data={**form_fields(agent, url), "HomePhoneNumber": "+34 912 345 678"})
    assert sent.status_code == 303, sent.text
    assert fields_of(agent, profile_id)["HomePhoneNumber"] == "+34 912 345 678"


def test_the_edit_form_refuses_to_leave_a_profile_with_no_field(
    agent: TestClient,  # noqa: F811
) -> None:
    with services_of(agent).write() as tx:
        profile_id = profiles.create_profile(
            tx,
            domain_name="acme",
            fields={
                "FirstName": "Ada",
                "EmailAddress": "ada@example.com",
                "Address": {"City": "London"},
                "Attributes": {"tier": "gold"},
            },
        ).profile_id
    before = fields_of(agent, profile_id)
    url = f"/agent/domains/acme/profiles/{profile_id}/edit"
    shown = form_fields(agent, url)
    cleared = {
        name: ("" if name in pf.form_names() and name not in ("Gender", "PartyType") else value)
        for name, value in shown.items()
    }
    sent = agent.post(url, data=cleared)
    assert sent.status_code == 400, sent.text
    assert field_error(sent.text, pf.EMPTY_FIELD) == pf.EMPTIED_PROFILE
    assert fields_of(agent, profile_id) == before
    # Clearing all but one field is an edit like any other.
    sent = agent.post(url, data={**cleared, "LastName": "Lovelace"})
    assert sent.status_code == 303, sent.text
    assert fields_of(agent, profile_id) == {"LastName": "Lovelace"}


def test_an_edit_that_empties_the_form_saves_when_someone_else_added_a_field_meanwhile(
    agent: TestClient,  # noqa: F811
) -> None:
    """The check is against the profile as it is when saved: a field someone else saved
    meanwhile, which the form did not show, stays, so the profile is not left empty."""
    profile_id = new_profile(agent, FirstName="Ada")
    url = f"/agent/domains/acme/profiles/{profile_id}/edit"
    shown = form_fields(agent, url)
    with services_of(agent).write() as tx:
        profiles.update_profile(
            tx, domain_name="acme", profile_id=profile_id, changes={"AccountNumber": "ACC-9"}
        )
    sent = agent.post(url, data={**shown, "FirstName": ""})
    assert sent.status_code == 303, sent.text
    assert fields_of(agent, profile_id) == {"AccountNumber": "ACC-9"}


def page_text(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", "", html)).split())


def test_a_contact_id_nothing_was_heard_of_is_said_to_be_unknown(
    agent: TestClient,  # noqa: F811
) -> None:
    associate(services_of(agent), "acme")
    page = agent.get("/agent/contacts/nope-123")
    assert page.status_code == 200, page.text
    text = page_text(page.text)
    assert "No contact with the id nope-123 is known here." in text
    # The caller may be on the line (the contact's event not come yet): the search stays.
    assert "Search in acme" in text and "Create a profile in acme" in text
    # Known (its start event applied) but linked to no profile now: said as before.
    sent = post_event(agent, event("c-known-1"))
    assert sent.status_code == 200, sent.text
    with services_of(agent).write() as tx:
        profiles.delete_profile_key(
            tx,
            domain_name="acme",
            profile_id=sent.json()["ProfileId"],
            key_name="_ctrContactId",
            values=["c-known-1"],
        )
    page = agent.get("/agent/contacts/c-known-1")
    assert page.status_code == 200, page.text
    text = page_text(page.text)
    assert "No profile is linked to this contact yet" in text
    assert "is known here" not in text
