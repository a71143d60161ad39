"""Rough edges a first walk of the agent pages found, through Starlette's TestClient: a search
sent with nothing typed said nothing (the empty page came back), a form did not put the focus on
its first field, after a search the focus stayed at the top of the page instead of on the
results, duplicate attribute names in the profile form kept the last one silently, and the
contact history had no contact id for an agent to name a contact by. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import re
from html import unescape

import pytest
from starlette.testclient import TestClient
from tests.unit.integrations.integ_helpers import associate, ctr, send
from tests.unit.ui.test_ui_edit_conflicts import _form_of
from tests.unit.ui.test_ui_private_urls import (
    agent,  # noqa: F401  (the fixture: acme with 21 namesakes, and other)
    app_client,  # noqa: F401  (the fixture agent needs)
    csrf_of,
    link_named,
    post_search,
)
from tests.unit.ui.test_ui_review_defects import autofocused

from openprofiles.profiles import service as profiles

SEARCH = "/agent/domains/acme"
NEW_PROFILE = "/agent/domains/acme/profiles/new"


def focused_heading(html: str) -> bool:
    """Whether the results heading takes the focus when the page opens."""
    found = re.search(r'<h2 id="results-heading"([^>]*)>', html)
    assert found, "no results heading"
    return 'tabindex="-1"' in found[1] and re.search(r"\sautofocus\b", found[1]) is not None


def test_a_search_sent_with_nothing_typed_says_so(
    agent: TestClient,  # noqa: F811
) -> None:
    page = agent.get(SEARCH)
    for typed in ("", "   "):
        response = agent.post(
            SEARCH, data={"csrf_token": csrf_of(page.text), "q": typed, "key": "auto"}
        )
        assert response.status_code == 400
        # What to type, not only that nothing was: the kinds of value the box finds.
        assert (
            '<p class="alert error" role="alert">Type a phone number, email address, name, '
            "account number or profile id to search.</p>"
        ) in response.text
        # The box is empty and has the focus, to type in it.
        assert autofocused(response.text) == ["q"]
        assert 'id="results-heading"' not in response.text


def test_a_search_that_finds_nothing_says_no_profile_found_and_logs_no_value(
    agent: TestClient,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    missing = "nobody.here.4711@example.com"
    with caplog.at_level(logging.DEBUG):
        html = agent.get(post_search(agent, "acme", missing)).text
    heading = re.search(r'<h2 id="results-heading"[^>]*>(.*?)</h2>', html, re.S)
    assert heading
    text = " ".join(unescape(re.sub(r"<[^>]+>", "", heading[1])).split())
    assert text == f"No profile found for “{missing}” by _email"
    assert missing not in caplog.text


def test_the_results_heading_has_the_focus_after_a_search(
    agent: TestClient,  # noqa: F811
) -> None:
    found = agent.get(post_search(agent, "acme", "Maria Garcia")).text
    assert "20+ results" in found
    assert focused_heading(found)
    # Only the heading: the search box (which shows what was searched) does not take it back.
    assert autofocused(found) == []
    assert focused_heading(agent.get(link_named(found, "Next page")).text)
    nothing = agent.get(post_search(agent, "acme", "Nobody Atall")).text
    assert focused_heading(nothing)


def test_forms_put_the_focus_on_their_first_field(
    agent: TestClient,  # noqa: F811
) -> None:
    assert autofocused(agent.get(SEARCH).text) == ["q"]
    assert autofocused(agent.get(NEW_PROFILE).text) == ["FirstName"]
    services = agent.app.state.services  # type: ignore[attr-defined]
    with services.write() as tx:
        profile_id = profiles.create_profile(
            tx, domain_name="acme", fields={"FirstName": "Ada"}
        ).profile_id
    edit = agent.get(f"/agent/domains/acme/profiles/{profile_id}/edit").text
    assert autofocused(edit) == ["FirstName"]
    agent.cookies.clear()
    assert autofocused(agent.get("/ui/sign-in").text) == ["username"]


def test_duplicate_attribute_names_are_refused_naming_the_attribute_and_keeping_the_form(
    agent: TestClient,  # noqa: F811
) -> None:
    form = _form_of(agent.get(NEW_PROFILE).text)
    typed = "tier = gold\nregion = north\ntier = silver"
    response = agent.post(
        NEW_PROFILE, data={**form, "FirstName": "Dup", "LastName": "Licate", "Attributes": typed}
    )
    assert response.status_code == 400
    message = "Line 3: the attribute “tier” is already on line 1; keep one of the two lines."
    assert message in unescape(response.text)
    again = _form_of(response.text)
    # As typed (the text area gives line breaks back as a browser sends them, CRLF).
    assert again["Attributes"].splitlines() == typed.splitlines() and again["FirstName"] == "Dup"
    # Its field, not the first one, has the focus.
    assert autofocused(response.text) == ["Attributes"]
    services = agent.app.state.services  # type: ignore[attr-defined]
    with services.read() as tx:
        page, _ = profiles.search_profiles(
            tx,
            domain_name="acme",
            criteria=[profiles.SearchCriterion("_fullName", ("Dup Licate",))],
        )
    assert page == [], "nothing was saved"


def test_the_contact_history_shows_each_contacts_id_and_a_record_opens_indented(
    agent: TestClient,  # noqa: F811
) -> None:
    services = agent.app.state.services  # type: ignore[attr-defined]
    associate(services, "acme")
    send(services, ctr("c-polish-1", start="2026-01-03T09:00:00Z"))
    popped = agent.get("/agent/contacts/c-polish-1", params={"domain": "acme"})
    page = agent.get(popped.headers["location"]).text
    headings = re.findall(r'<th scope="col">([^<]*)</th>', page)
    assert "Contact ID" in headings
    row = re.search(r"<tbody>\s*<tr>(.*?)</tr>", page, re.S)
    assert row
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row[1], re.S)
    assert cells[headings.index("Contact ID")] == "c-polish-1"

    opened = agent.get(link_named(page, 'Open<span class="visually-hidden"> record 1</span>'))
    assert opened.status_code == 200
    shown = re.search(r'<pre class="record"[^>]*>(.*?)</pre>', opened.text, re.S)
    assert shown
    text = unescape(shown[1])
    record = json.loads(text)
    assert record["ContactId"] == "c-polish-1"
    assert text == json.dumps(record, indent=2, ensure_ascii=False, sort_keys=True)
