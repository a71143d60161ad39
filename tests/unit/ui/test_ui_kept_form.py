"""An edit (or create) form sent after its session ended is not lost: the sign-in page that
answers it keeps it sealed, and after signing in again as the same user the agent is taken
back to the form with what they typed, to review and save; nothing is saved by itself. It used
to be a redirect to sign in, and the typed changes were gone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import update
from starlette.datastructures import FormData
from starlette.testclient import TestClient
from tests.unit.ingest.conftest import DOMAIN, make_domain
from tests.unit.ui.test_ui_admin_ops import PASSWORD, csrf_of, services_of
from tests.unit.ui.test_ui_pages import _FormFields

from openprofiles.app import create_app
from openprofiles.profiles import service as profiles
from openprofiles.settings import Settings
from openprofiles.store.schema import web_session
from openprofiles.ui import submissions
from openprofiles.ui.web import SESSION_COOKIE, cookie_name
from openprofiles.users import service as users

# What a browser says of a form sent from one of the site's own pages.
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}
TYPED = "Typed before the session ended"


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    with app.state.services.write() as tx:
        users.create_user(tx, username="ana", password=PASSWORD, role="agent")
        users.create_user(tx, username="bob", password=PASSWORD, role="agent")
    make_domain(app.state.services)
    with TestClient(app, follow_redirects=False) as test_client:
        yield test_client
    app.state.services.database.dispose()


def _sign_in(client: TestClient, page: str, username: str, password: str = PASSWORD) -> Any:
    """Sign in through `page` (a sign-in page, with whatever it carries); the response."""
    return client.post(
        "/ui/sign-in", data={**_fields(page), "username": username, "password": password}
    )


def _fields(html: str) -> dict[str, str]:
    parser = _FormFields()
    parser.feed(html)
    return parser.fields


def _end_sessions(client: TestClient) -> None:
    with services_of(client).write() as tx:
        tx.conn.execute(
            update(web_session).values(
                last_seen_at=tx.now - users.SESSION_IDLE - timedelta(minutes=1)
            )
        )


def _profile(client: TestClient) -> tuple[str, str]:
    with services_of(client).write() as tx:
        profile_id = profiles.create_profile(
            tx, domain_name=DOMAIN, fields={"FirstName": "Ada"}
        ).profile_id
    return profile_id, f"/agent/domains/{DOMAIN}/profiles/{profile_id}/edit"


def _first_name(client: TestClient, profile_id: str) -> object:
    with services_of(client).read() as tx:
        return profiles.get_profile(tx, domain_name=DOMAIN, profile_id=profile_id).fields.get(
            "FirstName"
        )


def _sent_after_the_session_ended(client: TestClient, username: str = "ana") -> tuple[str, str]:
    """(profile id, the sign-in page that answers ana's edit form sent after her session
    ended; she changed the first name to TYPED)."""
    profile_id, url = _profile(client)
    signed = _sign_in(client, client.get("/ui/sign-in").text, username)
    assert signed.status_code == 303
    form = _fields(client.get(url).text)
    _end_sessions(client)
    answer = client.post(url, data={**form, "FirstName": TYPED}, headers=SAME_ORIGIN)
    assert answer.status_code == 200 and "Your session has ended" in answer.text
    return profile_id, answer.text


def test_an_edit_sent_after_the_session_ended_comes_back_after_sign_in(
    client: TestClient,
) -> None:
    profile_id, page = _sent_after_the_session_ended(client)
    old_csrf = csrf_of(client.get("/ui/sign-in").text)
    # Kept sealed: not in clear in the page, and not in its address.
    assert TYPED not in page and "kept_form" in _fields(page)
    assert _first_name(client, profile_id) == "Ada"

    back = _sign_in(client, page, "ana")

    assert back.status_code == 200 and "Back to the form" in back.text
    url = f"/agent/domains/{DOMAIN}/profiles/{profile_id}/edit"
    assert f'action="{url}"' in back.text
    carried = _fields(back.text)
    restored = client.post(url, data=carried)

    assert restored.status_code == 200
    assert "Your session had ended; your changes were kept — review them and save." in (
        restored.text
    )
    form = _fields(restored.text)
    assert form["FirstName"] == TYPED
    # Not saved by itself, and the form carries the new session's CSRF token.
    assert _first_name(client, profile_id) == "Ada"
    assert form["csrf_token"] == carried["csrf_token"] != old_csrf
    assert "kept_form" not in form

    assert client.post(url, data=form).status_code == 303
    assert _first_name(client, profile_id) == TYPED


def test_a_failed_sign_in_carries_the_kept_form_on(client: TestClient) -> None:
    _, page = _sent_after_the_session_ended(client)
    failed = _sign_in(client, page, "ana", "not the password")
    assert failed.status_code == 401
    assert _fields(failed.text)["kept_form"] == _fields(page)["kept_form"]
    assert "Your session has ended" in failed.text


def test_the_kept_form_goes_back_to_its_user_only(client: TestClient) -> None:
    profile_id, page = _sent_after_the_session_ended(client)
    url = f"/agent/domains/{DOMAIN}/profiles/{profile_id}/edit"

    other = _sign_in(client, page, "bob")

    # Bob is taken to the form as it is now, without Ana's changes.
    assert other.status_code == 303 and other.headers["location"] == url
    refused = client.post(
        url,
        data={"csrf_token": csrf_of(client.get(url).text), "kept_form": _fields(page)["kept_form"]},
    )
    assert refused.status_code == 400 and TYPED not in refused.text
    assert submissions.KEPT_FORM_GONE in refused.text.replace("&#39;", "'")


def test_a_kept_form_opens_for_its_page_and_half_an_hour_only(client: TestClient) -> None:
    services = services_of(client)
    path = "/agent/domains/x/profiles/p/edit"
    now = datetime.now(UTC)
    sealed = submissions.keep_form(
        services, path=path, username="ana", form=FormData([("FirstName", "Bea")]), now=now
    )
    assert sealed is not None

    def reopen(at: datetime, where: str = path, who: str = "ana") -> FormData | None:
        return submissions.reopen_form(services, path=where, sealed=sealed, username=who, now=at)

    opened = reopen(now + submissions.KEPT_FORM_FOR)
    assert opened is not None and opened.get("FirstName") == "Bea"
    assert reopen(now + submissions.KEPT_FORM_FOR + timedelta(seconds=1)) is None
    assert reopen(now, where="/agent/domains/x/profiles/q/edit") is None
    assert reopen(now, who="bob") is None
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    assert (
        submissions.reopen_form(services, path=path, sealed=tampered, username="ana", now=now)
        is None
    )


def test_a_form_another_site_sends_is_not_kept(client: TestClient) -> None:
    """With no session there is no CSRF token to check: only a form the browser says came from
    this site is kept, so another site cannot put values in an agent's form."""
    _, url = _profile(client)
    _sign_in(client, client.get("/ui/sign-in").text, "ana")
    form = _fields(client.get(url).text)
    _end_sessions(client)
    for headers in ({}, {"Sec-Fetch-Site": "cross-site"}):
        answer = client.post(url, data={**form, "FirstName": TYPED}, headers=headers)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/ui/sign-in?next=")


def test_a_form_of_no_known_session_is_not_kept(client: TestClient) -> None:
    """Anyone can send Sec-Fetch-Site: same-origin from an HTTP client. A form kept with no known
    owner would open for whoever signs in next: planted in an agent's sign-in page, it came back
    as the agent's own typing, and the agent saved an attacker's values (review)."""
    _, url = _profile(client)
    form = {"FirstName": "Mallory", "EmailAddress": "attacker@evil.example"}
    session_cookie = cookie_name(services_of(client), SESSION_COOKIE)
    for cookies in ({}, {session_cookie: "not-a-session"}):
        client.cookies.clear()
        for name, value in cookies.items():
            client.cookies.set(name, value)
        answer = client.post(url, data=form, headers=SAME_ORIGIN)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/ui/sign-in?next=")


def test_a_sign_in_form_that_fails_its_csrf_check_carries_no_kept_form(
    client: TestClient,
) -> None:
    """A sign-in form another site posts cannot carry its token: what it carries (a kept form)
    is dropped, so it cannot put values in front of the agent who then signs in (review)."""
    _, page = _sent_after_the_session_ended(client)
    planted = _fields(page)["kept_form"]
    client.cookies.clear()
    forged = client.post(
        "/ui/sign-in",
        data={
            "csrf_token": "forged",
            "username": "ana",
            "password": PASSWORD,
            "kept_form": planted,
        },
    )
    assert forged.status_code == 403
    assert "kept_form" not in _fields(forged.text)


def test_a_create_form_sent_after_the_session_ended_comes_back_with_its_token(
    client: TestClient,
) -> None:
    url = f"/agent/domains/{DOMAIN}/profiles/new"
    _sign_in(client, client.get("/ui/sign-in").text, "ana")
    form = _fields(client.get(url).text)
    _end_sessions(client)
    page = client.post(url, data={**form, "FirstName": TYPED}, headers=SAME_ORIGIN)
    assert page.status_code == 200 and TYPED not in page.text

    back = _sign_in(client, page.text, "ana")
    restored = client.post(url, data=_fields(back.text))

    assert restored.status_code == 200
    again = _fields(restored.text)
    assert again["FirstName"] == TYPED
    assert again["submission"] == form["submission"], "still guarded against a second profile"
    assert _named_typed(client) == 0, "not created by itself"
    created = client.post(url, data=again)
    assert created.status_code == 303 and _named_typed(client) == 1
    # The same form sent again shows that profile instead of making a second one.
    assert client.post(url, data=again).status_code == 303 and _named_typed(client) == 1


def _named_typed(client: TestClient) -> int:
    with services_of(client).read() as tx:
        found, _ = profiles.search_profiles(
            tx,
            domain_name=DOMAIN,
            criteria=[profiles.SearchCriterion("_fullName", (TYPED,))],
            limit=5,
        )
    return len(found)


def test_an_edit_that_is_not_utf8_sent_after_the_session_ended_is_refused_not_kept(
    client: TestClient,
) -> None:
    """It was kept with U+FFFD in place of what could not be decoded, and brought back so to
    the agent after signing in. Refused as a signed-in user's form is (test_ui_nul_in_requests).
    """
    profile_id, url = _profile(client)
    assert _sign_in(client, client.get("/ui/sign-in").text, "ana").status_code == 303
    form = _fields(client.get(url).text)
    _end_sessions(client)
    body = urlencode({**form, "LastName": "Lovelace"}).encode() + b"&FirstName=Ad%FF"

    answer = client.post(
        url,
        content=body,
        headers={**SAME_ORIGIN, "content-type": "application/x-www-form-urlencoded"},
    )

    assert answer.status_code == 400, answer.text
    assert "not valid UTF-8" in answer.text and "kept_form" not in _fields(answer.text)
    assert _first_name(client, profile_id) == "Ada"
