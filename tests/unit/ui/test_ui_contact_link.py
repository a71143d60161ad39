"""Linking a live contact to the caller's profile from the agent pages (Starlette's TestClient,
both backends): the contact is carried from its screen-pop page through the search, its result
pages and the creation form to the profile, whose button adds `_ctrContactId` as AddProfileKey
does, so the contact's record lands there when it arrives. A contact another profile already
has is moved only when the agent chooses to. Contact ids with "/" or "?" screen-pop too."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from starlette.testclient import TestClient
from tests.unit.integrations.integ_helpers import associate, ctr, send
from tests.unit.ui.test_ui_kept_form import _fields as form_fields_of
from tests.unit.ui.test_ui_private_urls import (
    NAME,
    agent,  # noqa: F401  (the fixture: acme with 21 namesakes, and other)
    app_client,  # noqa: F401  (the fixture agent needs)
    csrf_of,
    link_named,
)

from openprofiles.context import Services
from openprofiles.profiles import service as profiles

CONTACT = "9f1c2e4a-7b1d-4c55-a0e2-3c5d8f9e1a07"
# A contact id as some systems write them: characters an address must percent-encode.
ODD_CONTACT = "inst/9f1c?part=2#a b%"
CONTACT_ARN = f"arn:aws:connect:us-east-1:111122223333:instance/1d908e11/contact/{CONTACT}"


def services_of(client: TestClient) -> Services:
    return client.app.state.services  # type: ignore[attr-defined,no-any-return]


def linked_to(client: TestClient, contact_id: str, domain: str = "acme") -> list[str]:
    """The profiles the contact's key finds, as the contact record's resolution will."""
    with services_of(client).read() as tx:
        page, _ = profiles.search_profiles(
            tx,
            domain_name=domain,
            criteria=[profiles.SearchCriterion("_ctrContactId", (contact_id,))],
        )
    return sorted(rec.profile_id for rec, _ in page)


def new_profile(client: TestClient, **fields: str) -> str:
    with services_of(client).write() as tx:
        return profiles.create_profile(tx, domain_name="acme", fields=fields).profile_id


def link(client: TestClient, profile_id: str, contact_id: str) -> None:
    with services_of(client).write() as tx:
        profiles.add_profile_key(
            tx,
            domain_name="acme",
            profile_id=profile_id,
            key_name="_ctrContactId",
            values=[contact_id],
        )


def carried(url: str) -> str | None:
    """The contact a link carries."""
    values = parse_qs(urlsplit(unescape(url)).query).get("contact")
    return values[0] if values else None


def link_form(html: str) -> tuple[str, dict[str, str], str]:
    """The profile page's link form: its action, its fields and its button's text."""
    match = re.search(
        r'<form method="post" action="([^"]*/link-contact)"[^>]*>(.*?)</form>', html, re.S
    )
    assert match, "no link form"
    fields = {
        n: unescape(v) for n, v in re.findall(r'name="([^"]+)" value="([^"]*)"', match.group(2))
    }
    button = re.search(r"<button[^>]*>(.*?)</button>", match.group(2), re.S)
    assert button
    return match.group(1), fields, " ".join(unescape(button.group(1)).split())


def test_the_contact_goes_from_its_page_through_the_search_to_the_profile_that_links_it(
    agent: TestClient,  # noqa: F811
) -> None:
    contact_page = agent.get(f"/agent/contacts/{CONTACT}", params={"domain": "acme"})
    assert "No profile is linked to this contact yet" in contact_page.text
    searched = agent.post(
        "/agent/domains/acme",
        data={
            "csrf_token": csrf_of(contact_page.text),
            "q": NAME,
            "key": "auto",
            "contact": CONTACT,
        },
    )
    assert searched.status_code == 303
    assert carried(searched.headers["location"]) == CONTACT
    first = agent.get(searched.headers["location"]).text
    assert "Finding the caller of contact" in first
    # Every way on from the results keeps the contact: the next page, and its results.
    second = agent.get(link_named(first, "Next page")).text
    assert carried(link_named(second, "Previous page")) == CONTACT
    result = re.search(r'<th scope="row"><a href="([^"]+)"', second)
    assert result
    assert carried(result.group(1)) == CONTACT
    profile_id = urlsplit(result.group(1)).path.rsplit("/", 1)[1]

    page = agent.get(unescape(result.group(1))).text
    action, fields, button = link_form(page)
    assert button == f"Link contact {CONTACT} to this profile"
    assert fields == {"csrf_token": csrf_of(page), "contact": CONTACT}
    done = agent.post(action, data=fields)
    assert done.status_code == 303
    assert linked_to(agent, CONTACT) == [profile_id]
    shown = agent.get(done.headers["location"]).text
    assert "is now linked to this profile" in shown
    assert "/link-contact" not in shown  # nothing left to link

    # The screen pop opens it now, and the contact's record, arriving after the contact, lands
    # on it.
    popped = agent.get(f"/agent/contacts/{CONTACT}", params={"domain": "acme"})
    assert urlsplit(popped.headers["location"]).path == f"/agent/domains/acme/profiles/{profile_id}"
    associate(services_of(agent), "acme")
    send(services_of(agent), ctr(CONTACT))
    with services_of(agent).read() as tx:
        assert profiles.profile_keys(tx, domain_name="acme", profile_id=profile_id)[
            "_ctrContactId"
        ] == [CONTACT]
    assert linked_to(agent, CONTACT) == [profile_id]


def test_a_contact_linked_to_another_profile_is_moved_only_when_the_agent_chooses(
    agent: TestClient,  # noqa: F811
) -> None:
    wrong = new_profile(agent, FirstName="Wrong", LastName="Person")
    right = new_profile(agent, FirstName="Right", LastName="Person")
    link(agent, wrong, CONTACT)
    # The screen pop opens the linked profile with the contact, so the agent can search on.
    popped = agent.get(f"/agent/contacts/{CONTACT}", params={"domain": "acme"})
    wrong_page = agent.get(popped.headers["location"]).text
    assert "is linked to this profile" in wrong_page
    assert carried(link_named(wrong_page, "Not the caller? Search for another profile")) == CONTACT

    page = agent.get(f"/agent/domains/acme/profiles/{right}", params={"contact": CONTACT}).text
    # Which profile has it, linked.
    assert re.search(rf'<a href="/agent/domains/acme/profiles/{wrong}\?contact=[^"]+"', page)
    assert "Wrong Person" in page
    action, fields, button = link_form(page)
    assert button == f"Link contact {CONTACT} to this profile instead"
    assert fields["move"] == "1"

    # A form that did not choose (a page shown before the other profile got the contact)
    # links nothing: the contact would be on two profiles, and its record on neither.
    kept = agent.post(action, data={**fields, "move": ""})
    assert kept.status_code == 303
    assert "linked=1" not in kept.headers["location"]
    assert linked_to(agent, CONTACT) == [wrong]

    moved = agent.post(action, data=fields)
    assert moved.status_code == 303
    assert linked_to(agent, CONTACT) == [right]
    assert "is now linked to this profile" in agent.get(moved.headers["location"]).text
    associate(services_of(agent), "acme")
    send(services_of(agent), ctr(CONTACT))
    assert linked_to(agent, CONTACT) == [right]


def test_a_profile_created_from_the_contact_page_is_linked_to_the_contact(
    agent: TestClient,  # noqa: F811
) -> None:
    contact_page = agent.get(f"/agent/contacts/{CONTACT}", params={"domain": "acme"}).text
    create_url = link_named(contact_page, "Create a profile")
    assert carried(create_url) == CONTACT
    form = agent.get(create_url).text
    submission = re.search(r'name="submission" value="([^"]+)"', form)
    assert submission
    # The form names no action: it is posted to its own address, contact included.
    assert '<form method="post" novalidate>' in form
    created = agent.post(
        create_url,
        data={"csrf_token": csrf_of(form), "submission": submission.group(1), "FirstName": "Nia"},
    )
    assert created.status_code == 303, created.text
    profile_id = urlsplit(created.headers["location"]).path.rsplit("/", 1)[1]
    assert linked_to(agent, CONTACT) == [profile_id]
    shown = agent.get(created.headers["location"]).text
    assert "Profile saved." in shown and "is now linked to this profile" in shown


def test_a_profile_created_for_a_contact_another_has_meanwhile_is_not_linked(
    agent: TestClient,  # noqa: F811
) -> None:
    other = new_profile(agent, FirstName="Earlier")
    form = agent.get("/agent/domains/acme/profiles/new", params={"contact": CONTACT}).text
    link(agent, other, CONTACT)
    created = agent.post(
        f"/agent/domains/acme/profiles/new?contact={CONTACT}",
        data={"csrf_token": csrf_of(form), "FirstName": "Later"},
    )
    assert created.status_code == 303
    assert linked_to(agent, CONTACT) == [other]
    _, fields, button = link_form(agent.get(created.headers["location"]).text)
    assert button.endswith("to this profile instead") and fields["move"] == "1"


def test_linking_is_a_csrf_checked_post_of_a_valid_contact_id(
    agent: TestClient,  # noqa: F811
) -> None:
    profile_id = new_profile(agent, FirstName="Ama")
    url = f"/agent/domains/acme/profiles/{profile_id}/link-contact"
    refused = agent.post(url, data={"contact": CONTACT})
    assert refused.status_code == 403
    assert agent.get(url).status_code == 404  # a POST only
    page = agent.get(f"/agent/domains/acme/profiles/{profile_id}").text
    for bad in ("", "x" * 256, "c-1\nSet-Cookie: a=b", "   "):
        answer = agent.post(url, data={"csrf_token": csrf_of(page), "contact": bad})
        assert answer.status_code == 400, bad
        assert "This contact id is not valid" in answer.text
    carried_bad = agent.get(
        f"/agent/domains/acme/profiles/{profile_id}", params={"contact": "c\x00"}
    )
    assert carried_bad.status_code == 400
    assert linked_to(agent, CONTACT) == []
    # Unknown profile: the friendly 404, nothing linked.
    missing = agent.post(
        "/agent/domains/acme/profiles/" + "0" * 32 + "/link-contact",
        data={"csrf_token": csrf_of(page), "contact": CONTACT},
    )
    assert missing.status_code == 404


# (Not an id with "%2F" in it: Starlette's TestClient decodes an address twice, as a server
# does not.)
@pytest.mark.parametrize("contact_id", [ODD_CONTACT, "a/b", CONTACT_ARN])
def test_a_contact_id_that_needs_percent_encoding_screen_pops(
    agent: TestClient,  # noqa: F811
    contact_id: str,
) -> None:
    address = f"/agent/contacts/{quote(contact_id, safe='')}"
    unlinked = agent.get(address, params={"domain": "acme"})
    assert unlinked.status_code == 200, unlinked.text
    assert "No profile is linked to this contact yet" in unlinked.text
    # Its search box and its "create" link carry it whole.
    hidden = re.search(r'name="contact" value="([^"]*)"', unlinked.text)
    assert hidden and unescape(hidden.group(1)) == contact_id
    assert carried(link_named(unlinked.text, "Create a profile")) == contact_id

    profile_id = new_profile(agent, FirstName="Odd")
    page = agent.get(f"/agent/domains/acme/profiles/{profile_id}", params={"contact": contact_id})
    action, fields, _ = link_form(page.text)
    assert fields["contact"] == contact_id
    agent.post(action, data=fields)
    assert linked_to(agent, contact_id) == [profile_id]
    popped = agent.get(address, params={"domain": "acme"})
    assert popped.status_code == 303
    location = popped.headers["location"]
    assert urlsplit(location).path == f"/agent/domains/acme/profiles/{profile_id}"
    assert carried(location) == contact_id
    # The contact's own link on the profile page leads back to its screen pop.
    shown = agent.get(location).text
    assert f'<a href="{address}"><code>' in shown


def test_editing_the_profile_keeps_the_live_contact(agent: TestClient) -> None:  # noqa: F811
    """An agent who corrects the caller's profile before linking the contact came back to it
    without the contact, and lost the way to link it (review)."""
    profile_id = new_profile(agent, FirstName="Ana", LastName="Lima")
    page = agent.get(f"/agent/domains/acme/profiles/{profile_id}", params={"contact": CONTACT})
    found = re.search(r'<a [^>]*href="([^"]+)"[^>]*>Edit profile</a>', page.text)
    assert found, "no Edit profile link"
    edit_url = found.group(1)
    assert carried(edit_url) == CONTACT
    # Every field of the form, its text areas too: an incomplete form is refused.
    fields = form_fields_of(agent.get(unescape(edit_url)).text)
    saved = agent.post(unescape(edit_url), data={**fields, "FirstName": "Ana Maria"})
    assert saved.status_code == 303
    assert carried(saved.headers["location"]) == CONTACT
    _, link_fields, _ = link_form(agent.get(saved.headers["location"]).text)
    assert link_fields["contact"] == CONTACT


def test_spaces_around_a_carried_contact_id_are_dropped(agent: TestClient) -> None:  # noqa: F811
    """The page read `?contact= c-1` with its spaces, the link form's POST without them: the
    profile that has the contact offered to link it again (review)."""
    profile_id = new_profile(agent, FirstName="Ana", LastName="Lima")
    link(agent, profile_id, CONTACT)
    page = agent.get(
        f"/agent/domains/acme/profiles/{profile_id}", params={"contact": f" {CONTACT} "}
    ).text
    assert "is linked to this profile" in page
