"""The audit log of who looked at a customer (openprofiles.audit.page_get, written by
ui.web.UI.page for the pages declared `shows_personal_data`): a signed-in user's GET of such a
page writes one line, `ui GET <the route's path> user=<audit name> status=N answered=<ids>`,
with the profile ids of the profiles it showed (ui.web.show_profiles) but no personal value and
never the query; a page of names and counts writes none. Each parameter of the path is written
as it is only in its strict form (audit._PAGE_PARAMETER_FORMS), a sealed token "(sealed)".

Before, only POSTs were logged: nothing said which agent had opened a customer's profile. Then
a search's or a contact's page named no profile (an agent who saw a customer's values in the
results was not found by the customer's id), a contact id that was a phone number was written
as it is, and every record page's sealed link was written "(not valid)"."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient
from tests.unit.integrations.integ_helpers import make_domain
from tests.unit.ui.test_ui_private_urls import ORDERS
from tests.unit.ui.test_ui_sessions import PASSWORD, csrf_of, sign_in

from openprofiles import audit
from openprofiles.app import create_app
from openprofiles.profiles import service as profiles
from openprofiles.settings import Settings
from openprofiles.users import service as users

DOMAIN = "shop"
NAME = "Zenobia"
EMAIL = "zenobia.quist@example.com"
PHONE = "+14155550123"


@pytest.fixture
def app(sqlite_settings: Settings) -> Iterator[Any]:
    built = create_app(sqlite_settings)
    services = built.state.services
    with services.write() as tx:
        users.create_user(tx, username="boss", password=PASSWORD, role="admin")
        users.create_user(tx, username="ana", password=PASSWORD, role="agent")
    make_domain(services, DOMAIN)
    yield built
    services.database.dispose()


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app, follow_redirects=False) as test_client:
        yield test_client


@pytest.fixture
def profile_id(app: Any) -> str:
    with app.state.services.write() as tx:
        return str(
            profiles.create_profile(
                tx,
                domain_name=DOMAIN,
                fields={"FirstName": NAME, "EmailAddress": EMAIL, "PhoneNumber": PHONE},
            ).profile_id
        )


@pytest.fixture
def page_lines(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """The audit lines of page views written so far (sign-ins are POSTs, left out)."""
    caplog.set_level(logging.INFO, logger=audit.logger.name)
    return lambda: [
        r.getMessage()
        for r in caplog.records
        if r.name == audit.logger.name and r.getMessage().startswith("ui GET ")
    ]


def audit_name(app: Any, username: str) -> str:
    return users.audit_name(app.state.services.keys.system_cipher(), username)


def test_an_agent_opening_a_profile_is_logged_once_without_its_values(
    app: Any, client: TestClient, profile_id: str, page_lines: Callable[[], list[str]]
) -> None:
    sign_in(client, "ana")
    page = client.get(f"/agent/domains/{DOMAIN}/profiles/{profile_id}")
    assert page.status_code == 200
    assert NAME in page.text  # the page does show the customer
    # A query (here a contact carried along, any text) is never written.
    with_query = client.get(
        f"/agent/domains/{DOMAIN}/profiles/{profile_id}", params={"contact": EMAIL}
    )
    assert with_query.status_code == 200
    # A value typed where the profile id goes is written "(not valid)", as a POST's is.
    typed = client.get(f"/agent/domains/{DOMAIN}/profiles/{EMAIL}")
    assert typed.status_code == 404

    ana = audit_name(app, "ana")
    line = (
        f"ui GET /agent/domains/{DOMAIN}/profiles/{profile_id} user={ana} status=200 "
        f"answered={profile_id}"
    )
    assert page_lines() == [
        line,
        line,
        f"ui GET /agent/domains/{DOMAIN}/profiles/(not%20valid) user={ana} status=404 answered=-",
    ]
    text = "\n".join(page_lines())
    for personal in (NAME, EMAIL, PHONE, "zenobia", "ana"):
        assert personal not in text


def test_pages_of_names_and_counts_write_no_line_and_the_others_do(
    app: Any, client: TestClient, profile_id: str, page_lines: Callable[[], list[str]]
) -> None:
    """The home pages, the lists of domains, merges and matches and the dead letters' counts
    show no customer's value: no line for them. A page declared to show one, in the same session,
    does write its line (so the logging is on, not merely silent)."""
    sign_in(client, "boss")
    for path in (
        "/agent/",
        "/admin/",
        "/admin/domains",
        f"/admin/domains/{DOMAIN}",
        "/admin/merges",
        "/admin/matches",
        "/admin/dlq",
    ):
        assert client.get(path).status_code in (200, 303), path
    assert page_lines() == []
    contact = "9f1c2e4a-7b1d-4c55-a0e2-3c5d8f9e1a07"
    assert client.get(f"/agent/contacts/{contact}").status_code == 200
    assert client.get(f"/agent/domains/{DOMAIN}/profiles/{profile_id}/edit").status_code == 200
    assert client.get(f"/admin/domains/{DOMAIN}/dlq").status_code == 200
    boss = audit_name(app, "boss")
    assert page_lines() == [
        f"ui GET /agent/contacts/{contact} user={boss} status=200 answered=-",
        f"ui GET /agent/domains/{DOMAIN}/profiles/{profile_id}/edit user={boss} status=200 "
        f"answered={profile_id}",
        f"ui GET /admin/domains/{DOMAIN}/dlq user={boss} status=200 answered=-",
    ]


def new_profile(app: Any, **fields: str) -> str:
    with app.state.services.write() as tx:
        return str(profiles.create_profile(tx, domain_name=DOMAIN, fields=fields).profile_id)


def answered_of(line: str) -> list[str]:
    """The profile ids a line's `answered=` names (its last field)."""
    name, _, ids = line.rpartition(" ")[2].partition("=")
    assert name == "answered", line
    return [] if ids == "-" else ids.split(",")


def test_a_search_results_line_names_the_profiles_found(
    app: Any, client: TestClient, page_lines: Callable[[], list[str]]
) -> None:
    """Each result shows its phone, email and account number: the line names whose, so that
    grepping the log for a customer's id finds the agent who saw them in a search."""
    first = new_profile(app, FirstName=NAME, EmailAddress=EMAIL, PhoneNumber=PHONE)
    second = new_profile(app, FirstName="Quentin", EmailAddress=EMAIL)
    other = new_profile(app, FirstName="Olga", EmailAddress="olga@example.com")
    sign_in(client, "ana")
    search_page = client.get(f"/agent/domains/{DOMAIN}")
    sent = client.post(
        f"/agent/domains/{DOMAIN}",
        data={"csrf_token": csrf_of(search_page.text), "q": EMAIL, "key": "auto"},
    )
    assert sent.status_code == 303
    results = client.get(sent.headers["location"])
    assert results.status_code == 200 and PHONE in results.text

    ana = audit_name(app, "ana")
    empty, found = page_lines()
    assert found.startswith(f"ui GET /agent/domains/{DOMAIN} user={ana} status=200 answered=")
    assert sorted(answered_of(found)) == sorted([first, second])
    assert empty == f"ui GET /agent/domains/{DOMAIN} user={ana} status=200 answered=-"
    assert other not in found
    for personal in (NAME, EMAIL, PHONE, "zenobia"):
        assert personal not in found


def test_a_contact_pages_line_names_its_linked_profiles(
    app: Any, client: TestClient, page_lines: Callable[[], list[str]]
) -> None:
    """The screen pop shows the profiles linked to the contact (their names, phones, emails)."""
    linked = [new_profile(app, FirstName=NAME, PhoneNumber=PHONE), new_profile(app, FirstName="Q")]
    contact = "9f1c2e4a-7b1d-4c55-a0e2-3c5d8f9e1a07"
    with app.state.services.write() as tx:
        for profile_id in linked:
            profiles.add_profile_key(
                tx,
                domain_name=DOMAIN,
                profile_id=profile_id,
                key_name="_ctrContactId",
                values=[contact],
            )
    sign_in(client, "ana")
    page = client.get(f"/agent/contacts/{contact}")
    assert page.status_code == 200 and NAME in page.text

    (line,) = page_lines()
    ana = audit_name(app, "ana")
    assert line.startswith(f"ui GET /agent/contacts/{contact} user={ana} status=200 answered=")
    assert sorted(answered_of(line)) == sorted(linked)


def test_a_phone_number_typed_as_a_contact_id_is_not_written(
    app: Any, client: TestClient, page_lines: Callable[[], list[str]]
) -> None:
    """The contact page opens any contact id, and its address is the user's to type: only an
    Amazon Connect ContactId's form (a UUID) is written as it is."""
    sign_in(client, "ana")
    for typed in ("4155550123", "+14155550123", "zenobia_quist"):
        assert client.get(f"/agent/contacts/{typed}").status_code == 200
    ana = audit_name(app, "ana")
    line = f"ui GET /agent/contacts/(not%20valid) user={ana} status=200 answered=-"
    assert page_lines() == [line] * 3


def test_a_record_pages_line_writes_its_sealed_link_as_sealed(
    app: Any, client: TestClient, page_lines: Callable[[], list[str]]
) -> None:
    """A record's address carries its key sealed: a valid link is "(sealed)", not "(not
    valid)", and never written as it is."""
    from openprofiles.ingest.pipeline import ingest_object
    from openprofiles.object_types.service import put_object_type

    order = {"ref": f"{EMAIL}/order-1", "email": EMAIL}
    with app.state.services.write() as tx:
        put_object_type(tx, domain_name=DOMAIN, name="Orders", params=ORDERS)
        ingest_object(
            tx, domain_name=DOMAIN, object_type_name="Orders", source=order, raw=json.dumps(order)
        )
    with app.state.services.read() as tx:
        (found,), _ = profiles.search_profiles(
            tx, domain_name=DOMAIN, criteria=[profiles.SearchCriterion("_email", (EMAIL,))]
        )
    profile_id = found[0].profile_id
    sign_in(client, "ana")
    page = client.get(f"/agent/domains/{DOMAIN}/profiles/{profile_id}")
    links = re.findall(
        rf'href="(/agent/domains/{DOMAIN}/profiles/{profile_id}/objects/[^"]+)"', page.text
    )
    assert len(links) == 1
    record = client.get(links[0])
    assert record.status_code == 200 and "order-1" in record.text

    ana = audit_name(app, "ana")
    token = links[0].rsplit("/", 1)[1]
    assert page_lines()[1:] == [
        f"ui GET /agent/domains/{DOMAIN}/profiles/{profile_id}/objects/Orders/(sealed) "
        f"user={ana} status=200 answered={profile_id}"
    ]
    assert token not in "\n".join(page_lines())


def test_a_merges_line_names_its_profiles(
    app: Any, client: TestClient, page_lines: Callable[[], list[str]]
) -> None:
    """A merge's page shows its keys' values, which came from its profiles."""
    from openprofiles.identity import service as identity

    main = new_profile(app, FirstName=NAME, EmailAddress=EMAIL)
    merged = new_profile(app, FirstName=NAME, PhoneNumber=PHONE)
    with app.state.services.write() as tx:
        merge_id = identity.merge_profiles(
            tx, domain_name=DOMAIN, main_profile_id=main, profile_ids=[merged]
        ).merge_id
    sign_in(client, "boss")
    assert client.get(f"/admin/merges/{DOMAIN}/{merge_id}").status_code == 200
    assert page_lines() == [
        f"ui GET /admin/merges/{DOMAIN}/{merge_id} user={audit_name(app, 'boss')} status=200 "
        f"answered={main},{merged}"
    ]


# Values a user could type into an address: none is written where an id goes.
TYPED = ("4155550123", "+14155550123", "zenobia_quist", "ada.lovelace@example.com")


@pytest.mark.parametrize(
    ("route", "name", "valid", "typed"),
    [
        (
            "/agent/contacts/{contact_id:path}",
            "contact_id",
            "9F1C2E4A-7B1D-4C55-A0E2-3C5D8F9E1A07",
            TYPED,
        ),
        ("/admin/merges/{domain}/{merge_id}", "merge_id", "0123456789abcdef" * 2, TYPED),
        ("/admin/domains/{name}/dlq/{message_id}", "message_id", "18a2b3c4d5e6f708" * 2, TYPED),
        ("/admin/matches/{domain}/rule/{match_id}", "match_id", "03" + "ab" * 16, TYPED),
        ("/admin/matches/{domain}/ml/{match_id}", "match_id", "cd" * 16, TYPED),
        ("/admin/matches/{domain}/{kind}/{match_id}/merge", "kind", "rule", TYPED),
        (
            "/admin/credentials/{access_key_id}/delete",
            "access_key_id",
            "OPAB12CD34EF56GH78IJ",
            TYPED,
        ),
        # An object type's name is an identifier an administrator chose, as a domain's is:
        # written in the model's form, which a number or an email address is not.
        (
            "/agent/domains/{domain}/profiles/{profile_id}/objects/{object_type}/{object_link}",
            "object_type",
            "Orders",
            ("4155550123", "+14155550123", "ada.lovelace@example.com"),
        ),
    ],
)
def test_each_ids_form_is_the_form_the_code_makes_it_in(
    route: str, name: str, valid: str, typed: tuple[str, ...]
) -> None:
    """Each parameter has the strict form of the ids it stands for: a phone number, a word or
    an email address typed there is "(not valid)" (the domain name's form, which each had
    before, took the first and the third)."""
    others = {"domain": "shop", "name": "shop", "profile_id": "ab" * 16, "kind": "ml"}
    others |= {"match_id": "cd" * 16, "object_link": "x"}
    # The names as the store holds them (UI.page looks them up): the form alone is tested here.
    held = audit.NAMED_PAGE_PARAMETERS
    assert valid in audit.page_path("", route, {**others, name: valid}, held)
    for value in typed:
        written = audit.page_path("", route, {**others, name: value}, held)
        assert value not in written and "(not%20valid)" in written, (name, value)


def test_a_name_typed_where_a_domain_or_an_object_type_goes_is_not_written(
    app: Any, client: TestClient, profile_id: str, page_lines: Callable[[], list[str]]
) -> None:
    """A domain's and an object type's names have a name's form, which a customer's name or
    number typed there has too: written as they are only when the store holds them (the domain
    exists; the type is the domain's). Before, each was written as typed, the page's refusal
    (404, 400) notwithstanding."""
    from openprofiles.object_types.service import put_object_type

    with app.state.services.write() as tx:
        put_object_type(tx, domain_name=DOMAIN, name="Orders", params=ORDERS)
    sign_in(client, "ana")
    profile = f"/profiles/{profile_id}"
    assert client.get(f"/agent/domains/4155550123{profile}").status_code == 404
    objects = f"/agent/domains/{DOMAIN}{profile}/objects"
    assert client.get(f"{objects}/Zenobia_Quist/x").status_code == 400
    # The same refusal (a link not sealed here) for a type the domain has: its name is written.
    assert client.get(f"{objects}/Orders/x").status_code == 400

    ana = audit_name(app, "ana")
    assert page_lines() == [
        f"ui GET /agent/domains/(not%20valid){profile} user={ana} status=404 answered=-",
        f"ui GET /agent/domains/{DOMAIN}{profile}/objects/(not%20valid)/(sealed) user={ana} "
        "status=400 answered=-",
        f"ui GET /agent/domains/{DOMAIN}{profile}/objects/Orders/(sealed) user={ana} "
        "status=400 answered=-",
    ]
    assert "4155550123" not in "\n".join(page_lines())
    assert "Zenobia" not in "\n".join(page_lines())


def test_a_users_reference_is_written_sealed() -> None:
    written = audit.page_path("", "/admin/users/{ref}/role", {"ref": "a" * 150})
    assert written == "/admin/users/(sealed)/role"


def test_every_route_parameter_of_the_pages_has_a_form(app: Any) -> None:
    """A parameter with none is never written; one added to a route is given its form."""
    from starlette.routing import Route

    names = {
        placeholder
        for route in app.routes
        # The pages (UI.page writes their lines), not the catch-all 404 of the prefixes.
        if isinstance(route, Route) and "UI.page." in route.endpoint.__qualname__
        for placeholder in re.findall(r"\{(\w+)(?::\w+)?\}", route.path)
    }
    assert {"domain", "profile_id", "contact_id", "object_link", "ref"} <= names
    declared = set(audit._PAGE_PARAMETER_FORMS) | audit._SEALED_PAGE_PARAMETERS
    assert names <= declared, names - declared


def test_a_pages_answered_is_written_as_an_api_reads(caplog: pytest.LogCaptureFixture) -> None:
    """One form for both (audit.answered_field): ids of the model's form, each once; "-" for
    none."""
    caplog.set_level(logging.INFO, logger=audit.logger.name)
    shown = ["a" * 32, EMAIL, "a" * 32, "b" * 32]
    audit.page_get(
        user="user-0a1b", path="/p", status=200, route=None, parameters={}, answered=shown
    )
    audit.page_get(user="user-0a1b", path="/p", status=404, route=None, parameters={})
    audit.api_request(
        "SearchProfiles",
        domain_name="shop",
        access_key_id="OPAB12CD34EF56GH78IJ",
        status=200,
        error=None,
        profile_id=None,
        answered=audit.profiles_answered({"Items": [{"ProfileId": p} for p in shown]}),
    )
    lines = [r.getMessage() for r in caplog.records if r.name == audit.logger.name]
    ids = f"answered={'a' * 32},{'b' * 32}"
    assert lines[0] == f"ui GET /p user=user-0a1b status=200 {ids}"
    assert lines[1] == "ui GET /p user=user-0a1b status=404 answered=-"
    assert lines[2].endswith(f" {ids}")
