"""The screen pop of a contact whose start event (POST /contact-events, SigV4-signed, through the
real app; both backends) was turned down because several profiles share the caller's phone
number (CTR-NoInferred: spec §3.2): the contact stays linked to none, and its page lists those
profiles, says why, and offers the search box filled in with the number and the creation link;
the chosen profile's page links the contact as for any contact (contacts.shared_endpoint)."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import urlsplit

from sqlalchemy import text
from starlette.testclient import TestClient
from tests.unit.integrations.integ_helpers import associate
from tests.unit.ui.test_ui_contact_link import link_form, linked_to, new_profile
from tests.unit.ui.test_ui_private_urls import (
    NAMESAKES,
    PHONE,
    agent,  # noqa: F401  (the fixture: acme with 21 namesakes, and other)
    app_client,  # noqa: F401  (the fixture agent needs)
    assert_clean,
    csrf_of,
)
from tests.unit.ui.test_ui_screen_pop_search_key import CALLER, event, post_event, services_of

from openprofiles.profiles import service as profiles

SAID = "matched several profiles, so this contact was not linked to any"


def cards(html: str) -> list[str]:
    """The profile ids of the screen pop's cards."""
    return re.findall(r'<li><a href="/agent/domains/acme/profiles/([0-9a-f]{32})\?', html)


def kept_rows(client: TestClient) -> list[bytes]:
    with services_of(client).read() as tx:
        return [
            bytes(row[0])
            for row in tx.conn.execute(text("SELECT sealed FROM contact_shared_endpoint"))
        ]


def test_the_screen_pop_lists_the_profiles_that_share_the_callers_number(
    agent: TestClient,  # noqa: F811
) -> None:
    associate(services_of(agent), "acme", object_type_name="CTR-NoInferred")
    ana = new_profile(agent, FirstName="Ana", PhoneNumber=CALLER)
    ben = new_profile(agent, FirstName="Ben", MobilePhoneNumber=CALLER)

    sent = post_event(agent, event("c-shared-1"))

    assert sent.status_code == 200, sent.text
    assert sent.json().get("ProfileId") is None
    assert linked_to(agent, "c-shared-1") == []
    [sealed] = kept_rows(agent)
    assert CALLER.encode() not in sealed and CALLER[2:].encode() not in sealed

    popped = agent.get("/agent/contacts/c-shared-1", params={"domain": "acme"})
    assert popped.status_code == 200, popped.headers.get("location")
    page = popped.text
    assert "is known here" not in page
    assert f"The caller's phone number {SAID}" in page
    assert sorted(cards(page)) == sorted([ana, ben])
    # The search box opens filled in with the number, for the signed-in agent only; the
    # creation link carries it sealed.
    assert re.search(rf'name="q"[^>]*value="{re.escape(CALLER)}"', page)
    new_url = unescape(re.search(r'<a href="([^"]+)">create a profile</a>', page).group(1))
    assert_clean(new_url, CALLER)

    # Linked from the chosen profile's page, as any contact.
    chosen = agent.get(f"/agent/domains/acme/profiles/{ben}?contact=c-shared-1").text
    action, fields, _ = link_form(chosen)
    done = agent.post(action, data=fields)
    assert done.status_code == 303
    assert linked_to(agent, "c-shared-1") == [ben]
    assert kept_rows(agent) == []
    popped = agent.get("/agent/contacts/c-shared-1", params={"domain": "acme"})
    assert urlsplit(popped.headers["location"]).path == f"/agent/domains/acme/profiles/{ben}"


def test_more_sharers_than_the_screen_pop_shows_have_a_sealed_more_link(
    agent: TestClient,  # noqa: F811
) -> None:
    associate(services_of(agent), "acme", object_type_name="CTR-NoInferred")
    sent = post_event(
        agent,
        {**event("c-shared-2"), "CustomerEndpoint": {"Address": PHONE, "Type": "TELEPHONE_NUMBER"}},
    )
    assert sent.status_code == 200, sent.text

    page = agent.get("/agent/contacts/c-shared-2", params={"domain": "acme"}).text

    assert SAID in page
    assert 0 < len(cards(page)) < NAMESAKES
    more = re.search(r'<a href="([^"]+)">All the profiles that match in acme</a>', page)
    assert more
    assert_clean(unescape(more.group(1)), PHONE)
    found = agent.get(unescape(more.group(1)))
    assert found.status_code == 200
    assert "c-shared-2" in found.text
    assert csrf_of(page)


def test_a_number_no_profile_holds_any_more_says_so_with_the_search_filled_in(
    agent: TestClient,  # noqa: F811
) -> None:
    associate(services_of(agent), "acme", object_type_name="CTR-NoInferred")
    sharers = [new_profile(agent, FirstName=n, PhoneNumber=CALLER) for n in ("Ana", "Ben")]
    assert post_event(agent, event("c-shared-3")).status_code == 200
    with services_of(agent).write() as tx:
        for profile_id in sharers:
            profiles.update_profile(
                tx, domain_name="acme", profile_id=profile_id, changes={"PhoneNumber": ""}
            )

    page = agent.get("/agent/contacts/c-shared-3", params={"domain": "acme"}).text

    assert f"The caller's phone number {SAID}; no profile holds it now." in page
    assert "set by the contact centre" not in page and cards(page) == []
    assert re.search(rf'name="q"[^>]*value="{re.escape(CALLER)}"', page)
