"""The audit log of who looked at a customer (openprofiles.audit.page_get, written by
ui.web.UI.page for the pages declared `shows_personal_data`): a signed-in user's GET of such a
page writes one line, `ui GET <the route's path> user=<audit name> status=N`, with the profile
id but no personal value and never the query; a page of names and counts writes none.

Before, only POSTs were logged: nothing said which agent had opened a customer's profile."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient
from tests.unit.integrations.integ_helpers import make_domain
from tests.unit.ui.test_ui_sessions import PASSWORD, sign_in

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
    line = f"ui GET /agent/domains/{DOMAIN}/profiles/{profile_id} user={ana} status=200"
    assert page_lines() == [
        line,
        line,
        f"ui GET /agent/domains/{DOMAIN}/profiles/(not%20valid) user={ana} status=404",
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
        f"ui GET /agent/contacts/{contact} user={boss} status=200",
        f"ui GET /agent/domains/{DOMAIN}/profiles/{profile_id}/edit user={boss} status=200",
        f"ui GET /admin/domains/{DOMAIN}/dlq user={boss} status=200",
    ]
