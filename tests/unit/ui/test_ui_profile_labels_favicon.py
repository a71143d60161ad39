"""Found by the second UI review, through Starlette's TestClient (both backends), signed in as
an agent: the profile page named its contact history after the object type ("CTR-NoInferred")
and its keys by their raw names (`_ctrContactId`, `_phone`), as did the search results' "Found
by"; a first-day agent reads "Contact history", "Contact id" and "Phone" now, the raw name in
the title. And /favicon.ico was a 404 on every page."""

from __future__ import annotations

import re

from starlette.testclient import TestClient
from tests.unit.integrations.integ_helpers import associate, ctr, send
from tests.unit.ui.test_ui_private_urls import (
    agent,  # noqa: F401  (the fixture: acme with 21 namesakes, and other)
    app_client,  # noqa: F401  (the fixture agent needs)
)


def _tabs(page: str) -> list[str]:
    nav = re.search(r'<nav aria-label="Record types" class="tabs">(.*?)</nav>', page, re.S)
    assert nav
    return [
        re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", a)).strip()
        for a in re.findall(r"<a [^>]*>(.*?)</a>", nav.group(1), re.S)
    ]


def test_the_profile_page_speaks_an_agents_words(agent: TestClient) -> None:  # noqa: F811
    services = agent.app.state.services  # type: ignore[attr-defined]
    associate(services, "acme", object_type_name="CTR-NoInferred")
    send(services, ctr("c-words-1", address="+12063457891"))
    popped = agent.get("/agent/contacts/c-words-1", params={"domain": "acme"})
    page = agent.get(popped.headers["location"]).text

    assert _tabs(page) == ["Contact history 1"]
    assert '<span title="_ctrContactId">Contact id</span>' in page
    assert '<span title="_phone">Phone</span>' in page
    assert "<code>_phone</code>" not in page and "<code>_ctrContactId</code>" not in page

    # The search moves its query out of the address (a private value) and shows the results.
    asked = agent.get("/agent/domains/acme", params={"q": "+12063457891"})
    found = agent.get(asked.headers["location"]).text
    (by,) = re.findall(r'<td class="small">(.*?)</td>', found, re.S)
    assert '<span title="_phone">Phone</span>' in by


def test_every_page_names_an_icon_that_is_served(agent: TestClient) -> None:  # noqa: F811
    page = agent.get("/agent/domains/acme").text
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page
    svg = agent.get("/static/favicon.svg")
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    # Asked for at this address whatever the page names (and signed in or not).
    icon = TestClient(agent.app).get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["content-type"] == "image/x-icon"
    assert icon.content[:4] == b"\x00\x00\x01\x00"
