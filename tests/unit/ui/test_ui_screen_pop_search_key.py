"""The contact attributes `profileSearchKey` / `profileSearchValue` of a contact-start event
(POST /contact-events, SigV4-signed, through the real app; both backends, Starlette's
TestClient), as Amazon Connect's agent application honours them: the screen pop searches the
domain by that key and value instead of showing the profile the caller's phone number found.
The event still links the contact by the template's rules; the agent's choice links it through
the profile page's link button. Both or neither, a key SearchProfiles takes and a value of at
most 255 characters: otherwise 400 in the feed's AWS error format, without the value."""

from __future__ import annotations

import json
import re
from html import unescape
from typing import Any
from urllib.parse import urlsplit

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from starlette.testclient import TestClient
from tests.unit.integrations.integ_helpers import INSTANCE, associate
from tests.unit.ui.test_ui_contact_link import carried, link_form, linked_to, new_profile
from tests.unit.ui.test_ui_private_urls import (
    PHONE,
    agent,  # noqa: F401  (the fixture: acme with 21 namesakes, and other)
    app_client,  # noqa: F401  (the fixture agent needs)
    link_named,
)

from openprofiles.auth.credentials import create_credential
from openprofiles.context import Services

CALLER = "+12065550199"


def services_of(client: TestClient) -> Services:
    return client.app.state.services  # type: ignore[attr-defined,no-any-return]


def post_event(client: TestClient, event: dict[str, Any]) -> httpx.Response:
    """The event, signed with an admin credential, as the contact centre sends it."""
    with services_of(client).write() as tx:
        key = create_credential(tx, role="admin")
    body = json.dumps(event).encode()
    url = "http://testserver/contact-events"
    request = AWSRequest(
        method="POST", url=url, data=body, headers={"Content-Type": "application/json"}
    )
    credentials = Credentials(key.access_key_id, key.secret_access_key)
    SigV4Auth(credentials, "profile", services_of(client).settings.region).add_auth(request)
    return client.post("/contact-events", content=body, headers=dict(request.headers.items()))


def event(contact_id: str, **attributes: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ContactId": contact_id,
        "InitiationTimestamp": "2022-04-08T14:59:38Z",
        "Channel": "VOICE",
        "InstanceARN": INSTANCE,
        "CustomerEndpoint": {"Address": CALLER, "Type": "TELEPHONE_NUMBER"},
    }
    if attributes:
        out["Attributes"] = attributes
    return out


def test_the_screen_pop_shows_the_profile_the_attributes_search_finds(
    agent: TestClient,  # noqa: F811
) -> None:
    associate(services_of(agent), "acme")
    wanted = new_profile(agent, FirstName="Ana", LastName="Silva", AccountNumber="ACC-7")
    sent = post_event(
        agent, event("c-acct-1", profileSearchKey="_account", profileSearchValue="ACC-7")
    )
    assert sent.status_code == 200, sent.text
    # Linked as the template says (a new profile for the unknown number), not by the attribute.
    by_phone = sent.json()["ProfileId"]
    assert by_phone != wanted and sent.json()["CreatedProfile"] is True
    assert linked_to(agent, "c-acct-1") == [by_phone]

    popped = agent.get("/agent/contacts/c-acct-1")
    assert popped.status_code == 303, popped.text
    location = popped.headers["location"]
    assert urlsplit(location).path == f"/agent/domains/acme/profiles/{wanted}"
    assert carried(location) == "c-acct-1"
    # The agent links it there with the profile page's button, which moves the link.
    page = agent.get(location).text
    action, fields, button = link_form(page)
    assert button == "Link contact c-acct-1 to this profile instead"
    assert agent.post(action, data=fields).status_code == 303
    assert linked_to(agent, "c-acct-1") == [wanted]

    # Without the attributes, the screen pop opens the profile the phone number found.
    plain = post_event(agent, event("c-plain-1"))
    assert plain.status_code == 200, plain.text
    popped = agent.get("/agent/contacts/c-plain-1")
    assert urlsplit(popped.headers["location"]).path == (
        f"/agent/domains/acme/profiles/{plain.json()['ProfileId']}"
    )


def test_several_matches_are_listed_and_none_offers_search_and_creation_filled_in(
    agent: TestClient,  # noqa: F811
) -> None:
    associate(services_of(agent), "acme")
    # The value normalised as SearchProfiles normalises a phone number: 21 namesakes share it.
    written = "(206) 555-0142"
    assert written != PHONE
    sent = post_event(
        agent, event("c-phone-1", profileSearchKey="_phone", profileSearchValue=written)
    )
    assert sent.status_code == 200, sent.text
    several = agent.get("/agent/contacts/c-phone-1")
    assert several.status_code == 200, several.text
    assert "Several profiles match this contact's search by _phone" in several.text
    assert len(re.findall(r"/agent/domains/acme/profiles/[0-9a-f]{32}\?contact=", several.text))
    assert several.text.count("Maria Garcia") == 20
    more = link_named(several.text, "All the profiles that match in acme")
    assert carried(more) == "c-phone-1" and "555" not in unescape(more)
    assert agent.get(unescape(more)).text.count("Maria Garcia") >= 20

    sent = post_event(
        agent, event("c-none-1", profileSearchKey="_email", profileSearchValue="new@example.com")
    )
    assert sent.status_code == 200, sent.text
    none = agent.get("/agent/contacts/c-none-1")
    assert none.status_code == 200
    assert "No profile matches this contact's search by _email" in none.text
    assert 'value="new@example.com"' in none.text
    assert '<option value="_email" selected>' in none.text
    create = link_named(none.text, "Create a profile")
    assert carried(create) == "c-none-1" and "example.com" not in unescape(create)
    form = agent.get(unescape(create)).text
    assert 'value="new@example.com"' in form

    # A key of one's own is searched as "Another key…".
    sent = post_event(
        agent, event("c-custom-1", profileSearchKey="loyaltyId", profileSearchValue="L-1")
    )
    assert sent.status_code == 200, sent.text
    custom = agent.get("/agent/contacts/c-custom-1").text
    assert "No profile matches this contact's search by loyaltyId" in custom
    assert '<option value="custom" selected>' in custom and 'value="loyaltyId"' in custom


def test_bad_search_attributes_are_ignored_saying_what_is_wrong(
    agent: TestClient,  # noqa: F811
) -> None:
    """A flow that sets profileSearchKey but fills profileSearchValue from an attribute empty for
    this caller (or a key SearchProfiles does not take): the event was refused whole (400), and
    the contact lost its live link for an optional override. It is linked as without the
    attributes; the answer says what was ignored, never the value; the screen pop searches as
    usual."""
    associate(services_of(agent), "acme")
    plain = post_event(agent, event("c-plain-0"))
    assert plain.status_code == 200, plain.text
    by_phone = plain.json()["ProfileId"]
    secret = "+12065550100"
    cases = {
        "only the key": ({"profileSearchKey": "_phone"}, "set both or neither"),
        "only the value": ({"profileSearchValue": secret}, "set both or neither"),
        "a bad key": (
            {"profileSearchKey": secret, "profileSearchValue": secret},
            "is not a key name",
        ),
        "a long value": (
            {"profileSearchKey": "_account", "profileSearchValue": "9" * 256},
            "the limit is 255",
        ),
        "not text": ({"profileSearchKey": "_account", "profileSearchValue": 7}, "strings"),
        "not a map": (["_phone"], "Attributes must be an object"),
    }
    for name, (attributes, says) in cases.items():
        contact_id = f"c-bad-{name.replace(' ', '-')}"
        response = post_event(agent, {**event(contact_id), "Attributes": attributes})
        assert response.status_code == 200, (name, response.text)
        answer = response.json()
        assert answer["ProfileId"] == by_phone, name
        assert says in answer["Message"] and "ignored" in answer["Message"], (name, answer)
        assert secret not in answer["Message"] and "9" * 20 not in answer["Message"], name
        assert linked_to(agent, contact_id) == [by_phone], name
        popped = agent.get(f"/agent/contacts/{contact_id}")
        assert urlsplit(popped.headers["location"]).path == (
            f"/agent/domains/acme/profiles/{by_phone}"
        ), name
    # Blank attributes ask for nothing (a flow clears an attribute by setting it to "").
    blank = post_event(agent, event("c-blank-1", profileSearchKey="", profileSearchValue=""))
    assert blank.status_code == 200, blank.text
