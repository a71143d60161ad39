"""Page addresses carry no customer's personal values: access logs, proxies and the browser's
history keep addresses. A search is posted and its results, pages and "create a profile" link
carry only a sealed token; the sign-in page carries no query of the page it returns to. Links to
a profile's records carry their key's digest only sealed, and page titles (kept in the
history too) name no customer."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape
from html.parser import HTMLParser
from urllib.parse import parse_qs, unquote_plus, urlsplit

import pytest
from starlette.testclient import TestClient

from openprofiles.app import create_app
from openprofiles.profiles import service as profiles
from openprofiles.settings import Settings
from openprofiles.users import service as users

PASSWORD = "long enough password"
EMAIL = "maria.garcia@example.com"
PHONE = "+1 206-555-0142"
NAME = "Maria Garcia"
# More than a page of results (agent_pages.SEARCH_PAGE is 20).
NAMESAKES = 21


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match
    return match.group(1)


def hidden_value(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no {name} field"
    return match.group(1)


def sign_in(client: TestClient, username: str, **extra: str) -> str:
    page = client.get("/ui/sign-in")
    response = client.post(
        "/ui/sign-in",
        data={
            "username": username,
            "password": PASSWORD,
            "csrf_token": csrf_of(page.text),
            **extra,
        },
    )
    assert response.status_code == 303, response.text
    return response.headers["location"]


@pytest.fixture
def app_client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    with app.state.services.write() as tx:
        users.create_user(tx, username="boss", password=PASSWORD, role="admin")
        users.create_user(tx, username="ana", password=PASSWORD, role="agent")
    with TestClient(app, follow_redirects=False) as client:
        yield client
    app.state.services.database.dispose()


def create_domain(client: TestClient, name: str) -> None:
    page = client.get("/admin/enable")
    response = client.post(
        "/admin/enable",
        data={
            "csrf_token": csrf_of(page.text),
            "domain_choice": "new",
            "domain_name": name,
            "retention_days": "366",
            "dlq_choice": "none",
            "key_choice": "default",
            "action": "submit",
        },
    )
    assert response.status_code == 303, response.text


@pytest.fixture
def agent(app_client: TestClient) -> TestClient:
    """An agent signed in, with domains `acme` (21 namesakes sharing a phone and an email) and
    `other`."""
    sign_in(app_client, "boss")
    create_domain(app_client, "acme")
    create_domain(app_client, "other")
    services = app_client.app.state.services  # type: ignore[attr-defined]
    with services.write() as tx:
        for _ in range(NAMESAKES):
            profiles.create_profile(
                tx,
                domain_name="acme",
                fields={
                    "FirstName": "Maria",
                    "LastName": "Garcia",
                    "PhoneNumber": PHONE,
                    "EmailAddress": EMAIL,
                },
            )
    app_client.cookies.clear()
    sign_in(app_client, "ana")
    return app_client


def forms_of(value: str) -> list[str]:
    """The ways a value could be written in an address, once decoded."""
    digits = "".join(ch for ch in value if ch.isdigit())
    forms = {value, " ".join(value.split())}
    if len(digits) >= 7:
        forms |= {digits, digits[-10:]}
    return sorted(forms)


def decoded(url: str) -> list[str]:
    """The address as written and decoded as often as it was encoded (a next= parameter holds
    an encoded address)."""
    seen = [url]
    while (plain := unquote_plus(seen[-1])) != seen[-1]:
        seen.append(plain)
    return seen


def assert_clean(url: str, *values: str) -> None:
    for text in decoded(url):
        for value in values:
            for form in forms_of(value):
                assert form.lower() not in text.lower(), f"{form!r} in {url!r}"


class _Links(HTMLParser):
    """Every address a page links to or submits to."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "action", "src", "formaction") and value is not None:
                self.urls.append(value)


def links_of(html: str) -> list[str]:
    parser = _Links()
    parser.feed(html)
    return parser.urls


def link_named(html: str, text: str) -> str:
    match = re.search(rf'<a href="([^"]+)"[^>]*>{re.escape(text)}</a>', html)
    assert match, f"no link {text!r}"
    return match.group(1).replace("&amp;", "&")


def post_search(client: TestClient, domain: str, text: str, key: str = "auto") -> str:
    page = client.get(f"/agent/domains/{domain}")
    response = client.post(
        f"/agent/domains/{domain}",
        data={"csrf_token": csrf_of(page.text), "q": text, "key": key, "custom_key": ""},
    )
    assert response.status_code == 303, response.text
    return response.headers["location"]


def result_count(html: str) -> int:
    return len(re.findall(r'<th scope="row"><a href="/agent/domains/acme/profiles/', html))


@pytest.mark.parametrize("text", [EMAIL, PHONE, NAME, "(206) 555 0142", "MARIA.garcia@Example.com"])
def test_search_results_and_their_pages_carry_no_searched_value(
    agent: TestClient, text: str
) -> None:
    location = post_search(agent, "acme", text)
    assert urlsplit(location).path == "/agent/domains/acme"
    assert list(parse_qs(urlsplit(location).query)) == ["s"]
    assert_clean(location, text, EMAIL, PHONE, NAME)

    first = agent.get(location)
    assert first.status_code == 200
    assert result_count(first.text) == 20
    # The page itself shows what was searched (the page, unlike its address, is not logged).
    assert "20+ results" in first.text
    for url in links_of(first.text):
        assert_clean(url, text, EMAIL, PHONE, NAME)

    second = agent.get(link_named(first.text, "Next page"))
    assert second.status_code == 200
    assert result_count(second.text) == NAMESAKES - 20
    for url in links_of(second.text):
        assert_clean(url, text, EMAIL, PHONE, NAME)
    again = agent.get(link_named(second.text, "First page"))
    assert result_count(again.text) == 20


def test_no_result_offers_a_prefilled_creation_without_the_value_in_its_address(
    agent: TestClient,
) -> None:
    email = "kofi.mensah@example.com"
    found = agent.get(post_search(agent, "acme", email))
    assert "No profile found" in found.text
    # Not found says every key it tried, not only the last.
    nobody = agent.get(post_search(agent, "acme", "Nobody Atall"))
    assert "by _fullName or _account" in nobody.text
    for url in links_of(found.text):
        assert_clean(url, email)
    form = agent.get(link_named(found.text, "create a profile"))
    assert form.status_code == 200
    assert re.search(rf'name="EmailAddress"[^>]*value="{re.escape(email)}"', form.text)

    phone = "+44 20 7946 0958"
    found = agent.get(post_search(agent, "acme", phone))
    form = agent.get(link_named(found.text, "create a profile"))
    assert_clean(link_named(found.text, "create a profile"), phone)
    assert re.search(r'name="PhoneNumber"[^>]*value="\+44 20 7946 0958"', form.text)
    # The old way no longer fills the form from the address.
    legacy = agent.get("/agent/domains/acme/profiles/new", params={"q": email})
    assert email not in legacy.text


def test_search_keeps_the_chosen_key_across_pages(agent: TestClient) -> None:
    page = agent.get(post_search(agent, "acme", NAME, key="_fullName"))
    assert re.search(r'<option value="_fullName" selected>', page.text)
    assert "by _fullName" in page.text
    page = agent.get(link_named(page.text, "Next page"))
    assert re.search(r'<option value="_fullName" selected>', page.text)
    assert result_count(page.text) == NAMESAKES - 20


def test_the_screen_pop_search_box_posts_too(agent: TestClient) -> None:
    page = agent.get("/agent/contacts/c-unknown", params={"domain": "acme"})
    assert page.status_code == 200
    assert '<form method="post" action="/agent/domains/acme"' in page.text
    response = agent.post(
        "/agent/domains/acme", data={"csrf_token": csrf_of(page.text), "q": EMAIL, "key": "auto"}
    )
    assert response.status_code == 303
    assert_clean(response.headers["location"], EMAIL)


def test_a_search_is_a_csrf_checked_post(agent: TestClient) -> None:
    response = agent.post("/agent/domains/acme", data={"q": EMAIL, "key": "auto"})
    assert response.status_code == 403
    assert "This form has expired" in response.text


def test_a_search_form_error_is_shown_without_redirect(agent: TestClient) -> None:
    page = agent.get("/agent/domains/acme")
    response = agent.post(
        "/agent/domains/acme",
        data={"csrf_token": csrf_of(page.text), "q": "x", "key": "custom", "custom_key": ""},
    )
    assert response.status_code == 400
    assert "Enter the name of the key" in response.text
    response = agent.post(
        "/agent/domains/acme",
        data={"csrf_token": csrf_of(page.text), "q": "x" * 256, "key": "auto"},
    )
    assert response.status_code == 400
    assert "at most 255 characters" in response.text
    # An empty search says so (test_ui_agent_page_polish).
    response = agent.post(
        "/agent/domains/acme", data={"csrf_token": csrf_of(page.text), "q": " ", "key": "auto"}
    )
    assert response.status_code == 400
    assert (
        "Type a phone number, email address, name, account number or profile id to search."
        in response.text
    )


# A search of 255 characters in any script is sealed (in several tokens if need be), not refused
# as too long: test_ui_agent_search_review.


def test_an_old_search_address_is_sent_to_the_sealed_one(agent: TestClient) -> None:
    response = agent.get("/agent/domains/acme", params={"q": EMAIL})
    assert response.status_code == 303
    location = response.headers["location"]
    assert_clean(location, EMAIL)
    assert result_count(agent.get(location).text) == 20


def tampered(token: str) -> str:
    middle = len(token) // 2
    return token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]


def test_a_changed_or_foreign_search_token_is_a_clear_400(agent: TestClient) -> None:
    token = parse_qs(urlsplit(post_search(agent, "acme", EMAIL)).query)["s"][0]
    services = agent.app.state.services  # type: ignore[attr-defined]
    api_token = services.tokens.encode("ListDomains", {"after": "acme"})
    for url in (
        f"/agent/domains/acme?s={tampered(token)}",
        "/agent/domains/acme?s=garbage",
        "/agent/domains/acme?s=",
        f"/agent/domains/acme?s={api_token}",
        # A token of one domain does not open a search of another.
        f"/agent/domains/other?s={token}",
        f"/agent/domains/acme/profiles/new?s={tampered(token)}",
        f"/agent/domains/other/profiles/new?s={token}",
    ):
        response = agent.get(url)
        assert response.status_code == 400, url
        assert "search again" in response.text.lower(), url
        assert EMAIL not in response.text


def test_sign_in_address_carries_no_query_of_the_page(app_client: TestClient) -> None:
    response = app_client.get("/agent/domains/acme", params={"q": EMAIL})
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith("/ui/sign-in?next=%2Fagent%2Fdomains%2Facme")
    assert_clean(location, EMAIL)
    page = app_client.get(location)
    assert EMAIL not in page.text
    for url in links_of(page.text):
        assert_clean(url, EMAIL)


def test_sign_in_returns_to_the_page_with_its_query(app_client: TestClient) -> None:
    target = "/agent/contacts/c-123?domain=acme"
    location = app_client.get(target).headers["location"]
    assert "domain" not in parse_qs(urlsplit(location).query).get("next", [""])[0]
    page = app_client.get(location)
    returned = sign_in(
        app_client,
        "ana",
        next=hidden_value(page.text, "next"),
        next_query=hidden_value(page.text, "next_query"),
    )
    assert returned == target


def test_sign_in_drops_a_query_it_did_not_seal(app_client: TestClient) -> None:
    returned = sign_in(app_client, "ana", next=f"/agent/domains/acme?q={EMAIL}")
    assert returned == "/agent/domains/acme"
    app_client.cookies.clear()
    # A sealed query belongs to its page: moved to another page, it is dropped.
    page = app_client.get(app_client.get("/agent/contacts/c-1?domain=acme").headers["location"])
    returned = sign_in(
        app_client, "ana", next="/agent/", next_query=hidden_value(page.text, "next_query")
    )
    assert returned == "/agent/"


def test_created_user_notice_carries_no_username_in_the_address(app_client: TestClient) -> None:
    sign_in(app_client, "boss")
    page = app_client.get("/admin/users")
    username = "jane.doe@example.com"
    response = app_client.post(
        "/admin/users",
        data={
            "csrf_token": csrf_of(page.text),
            "username": username,
            "role": "agent",
            "password": PASSWORD,
            "password_confirm": PASSWORD,
            "your_password": PASSWORD,
        },
    )
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert_clean(location, username)
    assert f"Created the user {username}" in app_client.get(location).text


CUSTOMER = {"FirstName": "Kwame", "LastName": "Asante", "EmailAddress": "kwame.asante@example.net"}
ORDERS = {
    "Description": "Orders",
    "AllowProfileCreation": True,
    "Fields": {
        "ref": {"Source": "_source.ref"},
        "email": {
            "Source": "_source.email",
            "Target": "_profile.EmailAddress",
            "ContentType": "EMAIL_ADDRESS",
        },
    },
    "Keys": {
        "orderRef": [{"StandardIdentifiers": ["UNIQUE"], "FieldNames": ["ref"]}],
        "_email": [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["email"]}],
    },
}
# One more than a page of the profile page's records (history.PAGE_SIZE is 50).
ORDER_COUNT = 51


def order_ref(n: int) -> str:
    # A unique key that is personal data: the customer's email in the order's reference.
    return f"{CUSTOMER['EmailAddress']}/order-{n}"


@pytest.fixture
def customer(agent: TestClient) -> tuple[str, list[str]]:
    """A profile of acme with ORDER_COUNT orders: its id and the hex digests of the orders'
    unique keys (how the pages used to name a record in its address)."""
    import json

    from openprofiles.ingest.pipeline import ingest_object
    from openprofiles.object_types.service import put_object_type
    from openprofiles.objects.service import list_profile_objects

    services = agent.app.state.services  # type: ignore[attr-defined]
    with services.write() as tx:
        record = profiles.create_profile(tx, domain_name="acme", fields=CUSTOMER)
        put_object_type(tx, domain_name="acme", name="Orders", params=ORDERS)
        for n in range(ORDER_COUNT):
            order = {"ref": order_ref(n), "email": CUSTOMER["EmailAddress"]}
            ingest_object(
                tx,
                domain_name="acme",
                object_type_name="Orders",
                source=order,
                raw=json.dumps(order),
            )
    with services.read() as tx:
        stored, _ = list_profile_objects(
            tx,
            domain_name="acme",
            object_type_name="Orders",
            profile_id=record.profile_id,
            limit=100,
        )
    assert len(stored) == ORDER_COUNT
    return record.profile_id, [o.unique_key for o in stored]


def title_of(html: str) -> str:
    match = re.search(r"<title>(.*?)</title>", html, re.S)
    assert match
    return match.group(1)


def assert_links_clean(html: str, digests: list[str]) -> None:
    values = [*CUSTOMER.values(), order_ref(0)]
    for url in links_of(html):
        assert_clean(url, *values)
        for digest in digests:
            assert digest not in url.lower(), f"a record's key digest in {url!r}"


def test_agent_page_titles_name_no_customer(
    agent: TestClient, customer: tuple[str, list[str]]
) -> None:
    """The browser's history keeps titles with the addresses: no name or email in them."""
    profile_id, _ = customer
    profile_page = f"/agent/domains/acme/profiles/{profile_id}"
    page = agent.get(profile_page)
    assert page.status_code == 200 and "Kwame Asante" in page.text
    record = agent.get(link_named(page.text, 'Open<span class="visually-hidden"> record 1</span>'))
    titles = {
        title_of(page.text),
        title_of(agent.get(profile_page + "/edit").text),
        title_of(record.text),
    }
    assert titles == {
        "Profile · OpenProfiles",
        "Edit profile · OpenProfiles",
        "Orders record · OpenProfiles",
    }


def test_record_links_carry_no_key_value_or_digest(
    agent: TestClient, customer: tuple[str, list[str]]
) -> None:
    profile_id, digests = customer
    page = agent.get(f"/agent/domains/acme/profiles/{profile_id}")
    assert page.text.count(">Open<") == 50
    assert_links_clean(page.text, digests)

    older = agent.get(f"/agent/domains/acme/profiles/{profile_id}" + link_named(page.text, "Older"))
    assert older.status_code == 200 and older.text.count(">Open<") == ORDER_COUNT - 50
    assert_links_clean(older.text, digests)

    link = link_named(older.text, 'Open<span class="visually-hidden"> record 1</span>')
    record = agent.get(link)
    assert record.status_code == 200
    # The last page's order, opened through its sealed link.
    assert f'"ref": "{CUSTOMER["EmailAddress"]}/order-' in unescape(record.text)
    assert_links_clean(record.text, digests)


def test_a_changed_or_foreign_record_link_is_a_clear_400(
    agent: TestClient, customer: tuple[str, list[str]]
) -> None:
    profile_id, _ = customer
    page = agent.get(f"/agent/domains/acme/profiles/{profile_id}")
    link = link_named(page.text, 'Open<span class="visually-hidden"> record 1</span>')
    token = link.rsplit("/", 1)[1]
    services = agent.app.state.services  # type: ignore[attr-defined]
    with services.write() as tx:
        other = profiles.create_profile(tx, domain_name="acme", fields={"FirstName": "Ama"})
    for url in (
        link.replace(token, tampered(token)),
        # A link opens only the record of the profile and type it was made for.
        link.replace(profile_id, other.profile_id),
        link.replace("/objects/Orders/", "/objects/CTR/"),
    ):
        response = agent.get(url)
        assert response.status_code == 400, url
        assert "Open the record again from the profile" in response.text
        assert CUSTOMER["EmailAddress"] not in response.text
