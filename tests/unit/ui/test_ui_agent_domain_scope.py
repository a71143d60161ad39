"""Web users limited to domains (users.service, ui.agent_pages.in_scope), through Starlette's
TestClient on both backends: an agent limited to `care` is offered `care` only, and every agent
page whose address names `sales` (search, its results, a profile, its records, the create and
edit forms, linking a contact, the screen pop's `?domain=`) answers exactly as a domain that does
not exist, shows no customer of `sales`, and changes nothing there. An agent with no scope still
sees both domains. A change of scope applies from the agent's next request, without signing in
again. The admin pages show each user's domains.

Before, every agent saw every domain: the pages had no scope to look at."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from httpx import Response
from starlette.testclient import TestClient
from tests.unit.integrations.integ_helpers import make_domain
from tests.unit.ui.test_ui_user_pages import PASSWORD, csrf_of, signed_in, user_link

from openprofiles.app import create_app
from openprofiles.context import Services
from openprofiles.profiles import service as profiles
from openprofiles.settings import Settings
from openprofiles.ui.agent_pages import SearchRequest, object_url, search_url
from openprofiles.ui.web import UI
from openprofiles.users import service as users

IN_SCOPE = "care"
OUTSIDE = "sales"
MISSING = "nosuch"
# The customer of `sales`: none of these may show on a page of the agent limited to `care`.
SALES_NAME = "Zenobia"
SALES_PHONE = "+14155550123"
CARE_NAME = "Ignatius"
CONTACT = "9f1c2e4a-7b1d-4c55-a0e2-3c5d8f9e1a07"


def services_of(app: Any) -> Services:
    return app.state.services  # type: ignore[no-any-return]


@pytest.fixture
def app(settings: Settings) -> Iterator[Any]:
    built = create_app(settings)
    services = services_of(built)
    with services.write() as tx:
        users.create_user(tx, username="boss", password=PASSWORD, role="admin")
        users.create_user(tx, username="carla", password=PASSWORD, role="agent", domains=["care"])
        users.create_user(tx, username="una", password=PASSWORD, role="agent")
    for name in (IN_SCOPE, OUTSIDE):
        make_domain(services, name)
    yield built
    services.database.dispose()


def new_profile(app: Any, domain: str, first_name: str, phone: str) -> str:
    with services_of(app).write() as tx:
        return profiles.create_profile(
            tx, domain_name=domain, fields={"FirstName": first_name, "PhoneNumber": phone}
        ).profile_id


def stored(app: Any, domain: str, profile_id: str) -> dict[str, Any]:
    with services_of(app).read() as tx:
        return profiles.get_profile(tx, domain_name=domain, profile_id=profile_id).fields


def count(app: Any, domain: str) -> int:
    with services_of(app).read() as tx:
        page, _ = profiles.search_profiles(
            tx, domain_name=domain, criteria=[profiles.SearchCriterion("_phone", (SALES_PHONE,))]
        )
    return len(page)


def requests_naming(app: Any, client: TestClient, domain: str, profile_id: str) -> list[Any]:
    """Every agent page's request for `domain`: (method, path, form), the forms with the
    session's CSRF token and what the page would take."""
    ui = UI(services_of(app))
    token = csrf_of(client.get("/ui/password").text)
    profile = f"/agent/domains/{domain}/profiles/{profile_id}"
    form = {"csrf_token": token, "FirstName": "Changed", "PhoneNumber": "+14155550999"}
    sealed = search_url(ui, domain, SearchRequest(SALES_PHONE), user="carla").partition("?")[2]
    record = object_url(ui, domain, profile_id, "CTR", "some-key").rpartition("/objects/")[2]
    return [
        ("GET", f"/agent/domains/{domain}", None),
        ("GET", f"/agent/domains/{domain}?{sealed}", None),
        ("GET", f"/agent/domains/{domain}?q={SALES_PHONE}", None),
        ("GET", f"/agent/domains/{domain}?s=not-a-token", None),
        ("POST", f"/agent/domains/{domain}", {"csrf_token": token, "q": SALES_PHONE}),
        ("GET", profile, None),
        ("GET", f"{profile}?type=CTR&after=not-a-token", None),
        ("GET", f"{profile}/objects/{record}", None),
        ("GET", f"{profile}/edit", None),
        ("POST", f"{profile}/edit", form),
        ("POST", f"{profile}/link-contact", {"csrf_token": token, "contact": CONTACT}),
        ("GET", f"/agent/domains/{domain}/profiles/new", None),
        ("POST", f"/agent/domains/{domain}/profiles/new", form),
        ("GET", f"/agent/contacts/{CONTACT}?domain={domain}", None),
    ]


def send(client: TestClient, method: str, path: str, form: dict[str, str] | None) -> Response:
    return client.request(method, path, data=form)


def test_a_scoped_agent_meets_another_domain_as_one_that_does_not_exist(app: Any) -> None:
    sales_id = new_profile(app, OUTSIDE, SALES_NAME, SALES_PHONE)
    carla = signed_in(app, "carla")
    outside = requests_naming(app, carla, OUTSIDE, sales_id)
    missing = requests_naming(app, carla, MISSING, sales_id)
    for (method, path, form), (_, missing_path, missing_form) in zip(outside, missing, strict=True):
        answer = send(carla, method, path, form)
        assert answer.status_code == 404, (method, path, answer.text)
        assert f"The domain {OUTSIDE} does not exist." in answer.text, (method, path)
        assert SALES_NAME not in answer.text and SALES_PHONE not in answer.text
        # Word for word what a domain that does not exist answers, but for its name.
        absent = send(carla, method, missing_path, missing_form)
        assert absent.status_code == 404
        assert answer.text.replace(OUTSIDE, MISSING) == absent.text, (method, path)
    # Nothing was changed in `sales`: no profile made, the profile as it was, no contact linked.
    assert count(app, OUTSIDE) == 1
    fields = stored(app, OUTSIDE, sales_id)
    assert fields["FirstName"] == SALES_NAME and "_ctrContactId" not in str(fields)

    # And to an agent with no scope, a domain that does not exist answers the same.
    una = signed_in(app, "una")
    unscoped = una.get(f"/agent/domains/{MISSING}")
    scoped = carla.get(f"/agent/domains/{OUTSIDE}")
    assert unscoped.status_code == scoped.status_code == 404
    assert re.sub(r'value="[^"]+"', "", unscoped.text).replace(MISSING, OUTSIDE) == re.sub(
        r'value="[^"]+"', "", scoped.text
    ).replace("carla", "una")


def test_a_scoped_agent_is_offered_and_finds_only_its_domains(app: Any) -> None:
    care_id = new_profile(app, IN_SCOPE, CARE_NAME, "+14155550100")
    sales_id = new_profile(app, OUTSIDE, SALES_NAME, SALES_PHONE)
    with services_of(app).write() as tx:
        profiles.add_profile_key(
            tx,
            domain_name=OUTSIDE,
            profile_id=sales_id,
            key_name="_ctrContactId",
            values=[CONTACT],
        )
    carla, una = signed_in(app, "carla"), signed_in(app, "una")

    # Home: the one domain of the scope (its search page at once); every domain without one.
    home = carla.get("/agent/")
    assert home.status_code == 303 and home.headers["location"] == f"/agent/domains/{IN_SCOPE}"
    both = una.get("/agent/")
    assert both.status_code == 200
    assert f'href="/agent/domains/{IN_SCOPE}"' in both.text
    assert f'href="/agent/domains/{OUTSIDE}"' in both.text

    # Its own domain works as before: search, profile, edit, create.
    token = csrf_of(carla.get(f"/agent/domains/{IN_SCOPE}").text)
    results = carla.post(f"/agent/domains/{IN_SCOPE}", data={"csrf_token": token, "q": CARE_NAME})
    assert results.status_code == 303
    assert CARE_NAME in carla.get(results.headers["location"]).text
    assert CARE_NAME in carla.get(f"/agent/domains/{IN_SCOPE}/profiles/{care_id}").text
    assert carla.get(f"/agent/domains/{IN_SCOPE}/profiles/{care_id}/edit").status_code == 200
    made = carla.post(
        f"/agent/domains/{IN_SCOPE}/profiles/new", data={"csrf_token": token, "FirstName": "New"}
    )
    assert made.status_code == 303, made.text

    # The screen pop with no domain searches only the scope: the contact linked in `sales`
    # is not found (nor named); the unscoped agent is taken to that profile.
    pop = carla.get(f"/agent/contacts/{CONTACT}")
    assert pop.status_code == 200
    assert SALES_NAME not in pop.text and OUTSIDE not in pop.text and sales_id not in pop.text
    found = una.get(f"/agent/contacts/{CONTACT}")
    assert found.status_code == 303
    assert found.headers["location"].startswith(f"/agent/domains/{OUTSIDE}/profiles/{sales_id}")

    # The unscoped agent opens both domains' profiles.
    assert SALES_NAME in una.get(f"/agent/domains/{OUTSIDE}/profiles/{sales_id}").text
    assert CARE_NAME in una.get(f"/agent/domains/{IN_SCOPE}/profiles/{care_id}").text


def test_a_scope_with_no_existing_domain_offers_none(app: Any) -> None:
    with services_of(app).write() as tx:
        users.set_scope(tx, username="carla", domains=["billing"])
    home = signed_in(app, "carla").get("/agent/")
    assert home.status_code == 200
    assert "None of the domains you may see exists yet." in home.text
    assert IN_SCOPE not in home.text and OUTSIDE not in home.text


def test_a_change_of_scope_applies_from_the_next_request(app: Any) -> None:
    sales_id = new_profile(app, OUTSIDE, SALES_NAME, SALES_PHONE)
    page = f"/agent/domains/{OUTSIDE}/profiles/{sales_id}"
    una, carla = signed_in(app, "una"), signed_in(app, "carla")
    assert SALES_NAME in una.get(page).text
    assert carla.get(page).status_code == 404

    with services_of(app).write() as tx:
        users.set_scope(tx, username="una", domains=[IN_SCOPE])
        users.set_scope(tx, username="carla", domains=None)
    # The same sessions, no new sign-in.
    limited = una.get(page)
    assert limited.status_code == 404 and SALES_NAME not in limited.text
    assert SALES_NAME in carla.get(page).text


def test_the_admin_pages_show_each_users_domains(app: Any) -> None:
    boss = signed_in(app, "boss")
    listing = boss.get("/admin/users").text
    assert '<th scope="col">Domains</th>' in listing
    row = re.search(r'<th scope="row">carla</th>.*?</tr>', listing, re.S)
    assert row and f"<bdi>{IN_SCOPE}</bdi>" in row.group(0)
    row = re.search(r'<th scope="row">una</th>.*?</tr>', listing, re.S)
    assert row and "<td>Every domain</td>" in row.group(0)

    detail = boss.get(user_link(boss, "carla", "Manage")).text
    assert f'<dd id="user-scope"><bdi>{IN_SCOPE}</bdi></dd>' in detail
    # Made an admin from the page: refused with what to do, the role unchanged.
    link = user_link(boss, "carla", "Manage")
    refused = boss.post(
        f"{link}/role",
        data={"csrf_token": csrf_of(detail), "role": "admin", "role_your_password": PASSWORD},
    )
    assert refused.status_code == 400
    assert "carla is limited to some domains" in refused.text
    with services_of(app).read() as tx:
        user = users.find_user(tx, username="carla")
    assert user is not None and user.role == "agent"


def test_an_admin_changes_an_agents_domains_from_its_page(app: Any) -> None:
    care_id = new_profile(app, IN_SCOPE, CARE_NAME, "+14155550100")
    boss, carla = signed_in(app, "boss"), signed_in(app, "carla")
    care_page = f"/agent/domains/{IN_SCOPE}/profiles/{care_id}"
    assert carla.get(care_page).status_code == 200
    link = user_link(boss, "carla", "Manage")
    page = boss.get(link).text
    # Every existing domain can be ticked; the agent's own are.
    assert re.search(rf'name="domains" value="{IN_SCOPE}" checked', page)
    assert re.search(rf'name="domains" value="{OUTSIDE}">', page)
    assert re.search(r'name="scope" value="some" checked', page)

    def post(**fields: Any) -> Response:
        return boss.post(f"{link}/scope", data={"csrf_token": csrf_of(page), **fields})

    # None ticked, a name that is no domain's form, a wrong password: refused, nothing changed.
    none = post(scope="some", scope_your_password=PASSWORD)
    assert none.status_code == 400 and "Tick at least one domain" in none.text
    bad = post(scope="some", domains=["no such!"], scope_your_password=PASSWORD)
    assert bad.status_code == 400 and "is not a domain name" in bad.text
    wrong = post(scope="some", domains=[OUTSIDE], scope_your_password="not my password")
    assert wrong.status_code == 400 and 'id="scope_your_password-error"' in wrong.text
    assert re.search(rf'name="domains" value="{OUTSIDE}" checked', wrong.text)
    with services_of(app).read() as tx:
        assert users.find_user(tx, username="carla").domains == {IN_SCOPE}  # type: ignore[union-attr]

    done = post(scope="some", domains=[OUTSIDE], scope_your_password=PASSWORD)
    assert done.status_code == 303, done.text
    assert f"carla may now see: {OUTSIDE}." in boss.get(done.headers["location"]).text
    # From carla's next page on, without signing in again.
    assert carla.get(care_page).status_code == 404
    assert carla.get("/agent/").headers["location"] == f"/agent/domains/{OUTSIDE}"

    lifted = post(scope="all", domains=[OUTSIDE], scope_your_password=PASSWORD)
    assert lifted.status_code == 303
    assert carla.get(care_page).status_code == 200

    # An admin's page offers no domains form: administrators see every domain.
    admin_page = boss.get(user_link(boss, "boss", "Manage")).text
    assert "Administrators see every domain" in admin_page
    assert 'action="' not in admin_page.split("<h2>Domains</h2>")[1].split("<h2>Delete</h2>")[0]
