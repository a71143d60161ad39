"""Defects a review of the agent's search and profile pages found, through Starlette's
TestClient: results pages with no way back and a count that read as the whole search's on page
3, a name search that said nothing of middle names, searches in non-Latin scripts refused as
"too long" well under the API's 255 characters, and customers' values not isolated from the
text around them (a right-to-left name reordered its neighbours)."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import pytest
from starlette.testclient import TestClient
from tests.unit.ui.test_ui_private_urls import (
    NAME,
    NAMESAKES,
    agent,  # noqa: F401  (the fixture: acme with 21 namesakes, and other)
    app_client,  # noqa: F401  (the fixture agent needs)
    csrf_of,
    link_named,
    post_search,
    result_count,
)

from openprofiles.profiles import service as profiles
from openprofiles.ui import agent_pages
from openprofiles.ui.web import UI

ARABIC = "\u0628"  # ب
HAN = "\u4e2d"  # 中
EMOJI = "\U0001f600"  # 😀, two UTF-16 units, 4 bytes of UTF-8, 12 characters of JSON
# The agent the fixture signs in, whom its searches are sealed for (agent_pages._search_scope).
AGENT = "ana"


def add_profiles(client: TestClient, count: int, **fields: object) -> list[str]:
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.write() as tx:
        return [
            profiles.create_profile(tx, domain_name="acme", fields=fields).profile_id
            for _ in range(count)
        ]


def heading(html: str) -> str:
    match = re.search(r'<h2 id="results-heading"[^>]*>(.*?)<span', html, re.S)
    assert match, "no results heading"
    return " ".join(match.group(1).split())


def current_page(html: str) -> str:
    match = re.search(r'<span class="page-number">([^<]*)</span>', html)
    assert match, "no page indicator"
    return match.group(1)


def profile_ids(html: str) -> list[str]:
    return re.findall(r'<th scope="row"><a href="/agent/domains/acme/profiles/([0-9a-f]+)"', html)


def has_link(html: str, text: str) -> bool:
    return re.search(rf"<a [^>]*>{re.escape(text)}</a>", html) is not None


# ------------------------------------------------- 1. pages of results: back, and which page


def test_results_pages_go_back_and_say_which_page_and_results_they_show(
    agent: TestClient,  # noqa: F811
) -> None:
    add_profiles(agent, 51 - NAMESAKES, FirstName="Maria", LastName="Garcia")  # 51 in all
    first = agent.get(post_search(agent, "acme", NAME)).text
    assert heading(first) == "20+ results"
    assert not has_link(first, "Previous page") and not has_link(first, "First page")
    second = agent.get(link_named(first, "Next page")).text
    assert current_page(second) == "Page 2"
    assert heading(second) == "Results 21–40 of 40+"
    third = agent.get(link_named(second, "Next page")).text
    # The last page: its 11 results are the 41st to the 51st, not "11 results".
    assert result_count(third) == 11
    assert current_page(third) == "Page 3"
    assert heading(third) == "Results 41–51 of 51"
    assert not has_link(third, "Next page")

    back = agent.get(link_named(third, "Previous page")).text
    assert current_page(back) == "Page 2"
    assert heading(back) == "Results 21–40 of 40+"
    assert profile_ids(back) == profile_ids(second)
    start = agent.get(link_named(back, "Previous page")).text
    assert heading(start) == "20+ results"
    assert profile_ids(start) == profile_ids(first)
    assert profile_ids(agent.get(link_named(third, "First page")).text) == profile_ids(first)
    # Every page's results are different profiles: 51 in all.
    assert len(set(profile_ids(first) + profile_ids(second) + profile_ids(third))) == 51


def last_page(wanted: agent_pages.SearchRequest) -> agent_pages.SearchRequest:
    for _ in range(agent_pages.MAX_SEARCH_PAGES - 1):
        # Before every profile id: the page is the search's first 20 results, and more follow.
        wanted = wanted.next_page("0" * 32)
    return wanted


def test_the_pages_end_before_their_addresses_grow_too_long(
    agent: TestClient,  # noqa: F811
) -> None:
    ui = UI(agent.app.state.services)  # type: ignore[attr-defined]
    page = agent.get(
        agent_pages.search_url(ui, "acme", last_page(agent_pages.SearchRequest(NAME)), user=AGENT)
    )
    assert page.status_code == 200
    assert current_page(page.text) == f"Page {agent_pages.MAX_SEARCH_PAGES}"
    assert result_count(page.text) == 20
    assert has_link(page.text, "Previous page") and not has_link(page.text, "Next page")
    assert "search for something more precise" in page.text

    # The longest search there is, on its last page: 255 emoji, a custom key of 64 characters
    # and the cursors of every page before.
    longest = last_page(agent_pages.SearchRequest(EMOJI * 255, "custom", "k" * 64))
    url = agent_pages.search_url(ui, "acme", longest, user=AGENT)
    # Well within what servers accept of a request line (8 KiB for many).
    assert len(url) < 7000
    sealed = parse_qs(urlsplit(url).query)["s"][0]
    assert agent_pages.open_search(ui, "acme", sealed, user=AGENT) == longest
    assert agent.get(url).status_code == 200


# ------------------------------------------------- 3. 255 characters in any script, like the API


def search_answer(client: TestClient, text: str, **fields: str) -> tuple[int, str]:
    page = client.get("/agent/domains/acme")
    response = client.post(
        "/agent/domains/acme",
        data={"csrf_token": csrf_of(page.text), "q": text, "key": "auto", **fields},
    )
    if response.status_code != 303:
        return response.status_code, response.text
    found = client.get(response.headers["location"])
    return found.status_code, found.text


def search_value(html: str) -> str:
    match = re.search(r'<input id="q" name="q" type="search" value="([^"]*)"', html)
    assert match, "no search box"
    return match.group(1)


@pytest.mark.parametrize(
    "text", [ARABIC * 240, ARABIC * 255, HAN * 255, EMOJI * 255, "é" * 255, "x" * 255]
)
def test_a_search_of_255_characters_in_any_script_is_searched(
    agent: TestClient,  # noqa: F811
    text: str,
) -> None:
    """SearchProfiles takes values of 1 to 255 characters; the page refused 240 Arabic ones as
    "too long" (its sealed address had room for about 110: JSON writes them 6 bytes each)."""
    (found,) = add_profiles(agent, 1, AccountNumber=text)
    status, html = search_answer(agent, text, key="_account")
    assert status == 200
    assert profile_ids(html) == [found]
    assert search_value(html) == text
    # With the longest custom key name too.
    status, html = search_answer(agent, text, key="custom", custom_key="_account" + "k" * 56)
    assert status == 200 and "No profile found" in html


@pytest.mark.parametrize("text", [ARABIC * 256, EMOJI * 256, "x" * 256])
def test_a_search_of_256_characters_is_refused_as_the_api_would(
    agent: TestClient,  # noqa: F811
    text: str,
) -> None:
    status, html = search_answer(agent, text)
    assert status == 400
    assert "Search for at most 255 characters." in html


def test_a_long_right_to_left_name_pages_both_ways(agent: TestClient) -> None:  # noqa: F811
    first_name, last_name = ARABIC * 120, "\u0627" * 120  # ب… ا…: 241 characters in all
    add_profiles(agent, 21, FirstName=first_name, LastName=last_name)
    status, first = search_answer(agent, f"{first_name} {last_name}")
    assert status == 200 and heading(first) == "20+ results"
    second = agent.get(link_named(first, "Next page")).text
    assert heading(second) == "Results 21–21 of 21"
    assert search_value(second) == f"{first_name} {last_name}"
    back = agent.get(link_named(second, "Previous page")).text
    assert profile_ids(back) == profile_ids(first)


def test_a_search_sealed_in_several_parts_opens_only_whole(agent: TestClient) -> None:  # noqa: F811
    ui = UI(agent.app.state.services)  # type: ignore[attr-defined]
    one = agent_pages.seal_search(ui, "acme", agent_pages.SearchRequest(EMOJI * 255), user=AGENT)
    other = agent_pages.seal_search(
        ui, "acme", agent_pages.SearchRequest("\U0001f601" * 255), user=AGENT
    )
    parts, others = one.split("."), other.split(".")
    assert len(parts) > 1 and len(others) == len(parts)
    assert agent_pages.open_search(ui, "acme", one, user=AGENT).text == EMOJI * 255
    for broken in (
        ".".join(parts[:-1]),  # a part missing
        ".".join(reversed(parts)),  # out of order
        ".".join([parts[0], *others[1:]]),  # another search's parts
        ".".join([*parts, parts[-1]]),  # a part twice
    ):
        response = agent.get("/agent/domains/acme", params={"s": broken})
        assert response.status_code == 400
        assert "Search again" in response.text
    # Nor in another domain.
    assert agent.get("/agent/domains/other", params={"s": one}).status_code == 400


# ------------------------------------------------- 2. a name is searched whole


def test_the_search_says_a_name_is_searched_whole_with_its_middle_name(
    agent: TestClient,  # noqa: F811
) -> None:
    """The box finds a full name as SearchProfiles' _fullName does ("FirstName MiddleName
    LastName"), a first name alone no more than a middle one. Its hint used to ask for "first
    and last", which never finds a customer with a middle name."""
    (ana,) = add_profiles(agent, 1, FirstName="Ana", MiddleName="Sofia", LastName="Perez")
    page = agent.get("/agent/domains/acme").text
    assert "middle name if any" in page and "(first and last)" not in page
    status, html = search_answer(agent, "ana sofia PEREZ")
    assert status == 200 and profile_ids(html) == [ana]
    for partial in ("Ana Perez", "Sofia", "Ana"):
        status, html = search_answer(agent, partial)
        assert status == 200 and "No profile found" in html
        assert "with the customer’s middle name, if they have one" in html
    # Not said of a search that was not by name.
    status, html = search_answer(agent, "nobody@example.com")
    assert "No profile found" in html and "customer’s middle name" not in html


# ------------------------------------------------- 4. customers' values isolated (bidi)

RTL = re.compile("[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufeff]")
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}


class _Unisolated(HTMLParser):
    """Right-to-left text on a page outside an element that isolates it: a <bdi> or an element
    with a dir attribute (text), or a field with none (a value attribute)."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[tuple[str, dict[str, str | None]]] = []
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        value = named.get("value") or ""
        if RTL.search(value) and named.get("type") != "hidden" and "dir" not in named:
            self.found.append(f"<{tag} value={value!r}>")
        if tag not in VOID:
            self.open.append((tag, named))

    def handle_endtag(self, tag: str) -> None:
        while self.open and self.open.pop()[0] != tag:
            pass

    def handle_data(self, data: str) -> None:
        if not RTL.search(data):
            return
        tag, named = self.open[-1]
        if tag != "bdi" and "dir" not in named:
            self.found.append(f"<{tag}>{data.strip()!r}")


def unisolated(html: str) -> list[str]:
    parser = _Unisolated()
    parser.feed(html)
    return parser.found


def test_customers_values_are_isolated_from_the_text_around_them(
    agent: TestClient,  # noqa: F811
) -> None:
    names = ("\u0633\u0627\u0631\u0629", "\u0646\u0648\u0631", "\u062d\u062f\u0627\u062f")
    arabic = {
        **dict(zip(("FirstName", "MiddleName", "LastName"), names, strict=True)),
        "BusinessName": "\u0634\u0631\u0643\u0629",
        "AccountNumber": "\u062d\u0633\u0627\u0628-7",
        "EmailAddress": "\u0633\u0627\u0631\u0629@example.com",
        "AdditionalInformation": "\u0645\u0644\u0627\u062d\u0638\u0629",
        "Address": {
            "Address1": "\u0634\u0627\u0631\u0639 1",
            "City": "\u0639\u0645\u0627\u0646",
            "Country": "JO",
        },
        "Attributes": {"\u0644\u0648\u0646": "\u0623\u0632\u0631\u0642"},
    }
    first, second = add_profiles(agent, 2, **arabic)
    services = agent.app.state.services  # type: ignore[attr-defined]
    with services.write() as tx:
        for profile_id in (first, second):
            profiles.add_profile_key(
                tx,
                domain_name="acme",
                profile_id=profile_id,
                key_name="_ctrContactId",
                values=["c-1"],
            )
    status, results = search_answer(agent, " ".join(names))
    assert status == 200 and sorted(profile_ids(results)) == sorted([first, second])
    pages = {
        "search results": results,
        "profile": agent.get(f"/agent/domains/acme/profiles/{first}").text,
        "edit form": agent.get(f"/agent/domains/acme/profiles/{first}/edit").text,
        "contact with two profiles": agent.get("/agent/contacts/c-1").text,
    }
    for name, html in pages.items():
        assert RTL.search(html), f"{name}: the values are not on the page"
        assert unisolated(html) == [], name


def test_a_search_address_sealed_for_no_user_no_longer_opens(agent: TestClient) -> None:  # noqa: F811
    """Addresses sealed before searches were bound to their user (one token, the search's state
    in it, or parts), which anyone could open, answer as an address too old would: the agent
    searches again, once, the day after the upgrade at most."""
    ui = UI(agent.app.state.services)  # type: ignore[attr-defined]
    first = agent.get(post_search(agent, "acme", NAME)).text
    cursor = profile_ids(first)[-1]
    whole = ui.services.tokens.encode(
        "ui/agent-search\x00acme", {"q": NAME, "k": "auto", "a": cursor}
    )
    plain = json.dumps({"q": NAME, "k": "auto"}, separators=(",", ":")).encode()
    parted = ui.services.tokens.encode(
        "ui/agent-search\x00acme",
        {"d": base64.b64encode(plain).decode(), "i": 0, "n": 1, "r": "0" * 16},
    )
    for sealed in (whole, parted):
        page = agent.get("/agent/domains/acme", params={"s": sealed})
        assert page.status_code == 400
        assert agent_pages.INVALID_SEARCH in page.text
        assert result_count(page.text) == 0


@pytest.mark.parametrize(
    ("key", "custom_key", "message"),
    [
        ("custom", "x" * 65, "A key name is 1 to 64 letters"),
        ("custom", "_email OR 1", "A key name is 1 to 64 letters"),
        ("no-such-choice", "", "Choose a key to search from the list."),
    ],
)
def test_a_custom_key_or_key_choice_the_api_would_refuse_is_a_form_error(
    agent: TestClient,  # noqa: F811
    key: str,
    custom_key: str,
    message: str,
) -> None:
    """The custom key was bounded by nothing but the form's size: a 20,000-character key was
    sealed into a 41 KB results address, which proxies refuse (review)."""
    page = agent.get("/agent/domains/acme")
    response = agent.post(
        "/agent/domains/acme",
        data={"csrf_token": csrf_of(page.text), "q": NAME, "key": key, "custom_key": custom_key},
    )
    assert response.status_code == 400
    assert message in response.text
    # A key name the API takes still searches.
    location = post_search(agent, "acme", NAME, key="_fullName")
    assert len(location) < 2048
