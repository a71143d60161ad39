"""Sign-in, sessions, CSRF and role checks of the web pages, through Starlette's TestClient."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from openprofiles.app import create_app
from openprofiles.settings import Settings
from openprofiles.ui.web import SESSION_COOKIE, SIGNIN_COOKIE, cookie_name
from openprofiles.users import service as users

PASSWORD = "long enough password"


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    with app.state.services.write() as tx:
        users.create_user(tx, username="boss", password=PASSWORD, role="admin")
        users.create_user(tx, username="ana", password=PASSWORD, role="agent")
    with TestClient(app, follow_redirects=False) as test_client:
        yield test_client
    app.state.services.database.dispose()


def cookie_of(client: TestClient, name: str) -> str:
    """The client's server's name of the cookie `name` (SESSION_COOKIE, ...)."""
    return cookie_name(client.app.state.services, name)  # type: ignore[attr-defined]


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def sign_in(client: TestClient, username: str, password: str = PASSWORD) -> str:
    page = client.get("/ui/sign-in")
    response = client.post(
        "/ui/sign-in",
        data={"username": username, "password": password, "csrf_token": csrf_of(page.text)},
    )
    assert response.status_code == 303, response.text
    return response.headers["location"]


def test_pages_need_sign_in(client: TestClient) -> None:
    response = client.get("/admin/domains")
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/sign-in?next=%2Fadmin%2Fdomains"
    assert client.get("/", follow_redirects=False).headers["location"] == "/ui/"


def test_session_cookie_flags(client: TestClient) -> None:
    page = client.get("/ui/sign-in")
    response = client.post(
        "/ui/sign-in",
        data={"username": "boss", "password": PASSWORD, "csrf_token": csrf_of(page.text)},
    )
    cookie = next(
        h
        for h in response.headers.get_list("set-cookie")
        if h.startswith(f"{cookie_of(client, SESSION_COOKIE)}=")
    )
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    # Served over plain http here: a Secure cookie would never come back.
    assert "Secure" not in cookie


def test_session_cookie_is_secure_over_https(settings: Settings) -> None:
    app = create_app(settings)
    with app.state.services.write() as tx:
        users.create_user(tx, username="boss", password=PASSWORD, role="admin")
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        page = client.get("/ui/sign-in")
        response = client.post(
            "/ui/sign-in",
            data={"username": "boss", "password": PASSWORD, "csrf_token": csrf_of(page.text)},
        )
        # Named with the __Host- prefix too (ui.web.browser_name: test_ui_cookie_prefix).
        name = cookie_name(app.state.services, SESSION_COOKIE, https=True)
        cookie = next(
            h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")
        )
        assert "Secure" in cookie
    app.state.services.database.dispose()


def test_sign_in_redirects_by_role_and_to_next(client: TestClient) -> None:
    assert sign_in(client, "boss") == "/admin/"
    client.cookies.clear()
    assert sign_in(client, "ana") == "/agent/"


def test_sign_in_never_redirects_off_site(client: TestClient) -> None:
    page = client.get("/ui/sign-in")
    response = client.post(
        "/ui/sign-in",
        data={
            "username": "ana",
            "password": PASSWORD,
            "csrf_token": csrf_of(page.text),
            "next": "//evil.example/",
        },
    )
    assert response.headers["location"] == "/agent/"


def test_wrong_password_keeps_username_and_says_what_to_do(client: TestClient) -> None:
    page = client.get("/ui/sign-in")
    response = client.post(
        "/ui/sign-in",
        data={"username": "ana", "password": "nope nope", "csrf_token": csrf_of(page.text)},
    )
    assert response.status_code == 401
    assert "username or password is not right" in response.text
    assert 'value="ana"' in response.text
    assert cookie_of(client, SESSION_COOKIE) not in client.cookies


def test_sign_in_form_needs_its_token(client: TestClient) -> None:
    client.get("/ui/sign-in")
    response = client.post(
        "/ui/sign-in", data={"username": "ana", "password": PASSWORD, "csrf_token": "forged"}
    )
    assert response.status_code == 403
    assert cookie_of(client, SESSION_COOKIE) not in client.cookies


def test_post_without_csrf_token_is_refused(client: TestClient) -> None:
    sign_in(client, "boss")
    response = client.post("/admin/credentials", data={"role": "agent"})
    assert response.status_code == 403
    assert "This form has expired" in response.text
    response = client.post("/admin/credentials", data={"role": "agent", "csrf_token": "x" * 43})
    assert response.status_code == 403
    with client.app.state.services.read() as tx:  # type: ignore[attr-defined]
        from openprofiles.auth.credentials import list_credentials

        assert list_credentials(tx) == []


def test_post_with_csrf_token_works(client: TestClient) -> None:
    sign_in(client, "boss")
    page = client.get("/admin/credentials")
    response = client.post(
        "/admin/credentials",
        data={"role": "agent", "csrf_token": csrf_of(page.text), "your_password": PASSWORD},
    )
    assert response.status_code == 200
    assert "shown only this once" in response.text


def test_agent_gets_a_friendly_403_on_admin_pages(client: TestClient) -> None:
    sign_in(client, "ana")
    for path in ("/admin/domains", "/admin/users", "/admin/credentials", "/admin/enable"):
        response = client.get(path)
        assert response.status_code == 403, path
        assert "for administrators" in response.text
    assert client.get("/agent/").status_code == 200


def test_sign_out_ends_the_session(client: TestClient) -> None:
    sign_in(client, "ana")
    token = client.cookies[cookie_of(client, SESSION_COOKIE)]
    page = client.get("/agent/")
    response = client.post("/ui/sign-out", data={"csrf_token": csrf_of(page.text)})
    assert response.status_code == 303
    with client.app.state.services.read() as tx:  # type: ignore[attr-defined]
        assert users.get_session(tx, token=token) is None
    client.cookies.set(cookie_of(client, SESSION_COOKIE), token)
    assert client.get("/agent/").status_code == 303


def test_api_still_answers_at_the_root(client: TestClient) -> None:
    # Unsigned API requests still reach the AWS API, not the web pages.
    response = client.get("/domains")
    assert response.status_code == 403
    assert response.headers.get("x-amzn-ErrorType", "").startswith("MissingAuthenticationToken")


def test_a_second_sign_in_tab_does_not_expire_the_first(client: TestClient) -> None:
    """A screen pop opening while another tab shows the sign-in page replaced the sign-in
    token's cookie: the first tab's sign-in failed as an expired form, losing its address."""
    first = client.get("/ui/sign-in?next=%2Fagent%2Fcontacts%2Flive-1")
    client.get("/ui/sign-in")  # the second tab
    response = client.post(
        "/ui/sign-in",
        data={
            "username": "ana",
            "password": PASSWORD,
            "csrf_token": csrf_of(first.text),
            "next": "/agent/contacts/live-1",
        },
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/agent/contacts/live-1"


def test_a_sign_in_cookie_that_is_not_a_token_is_not_reused(client: TestClient) -> None:
    client.cookies.set(cookie_of(client, SIGNIN_COOKIE), '"><script>')
    page = client.get("/ui/sign-in")
    assert "<script>" not in page.text and len(csrf_of(page.text)) == 43


def test_sign_out_clears_this_servers_session_cookie_with_its_flags(client: TestClient) -> None:
    sign_in(client, "ana")
    name = cookie_of(client, SESSION_COOKIE)
    assert name in client.cookies
    page = client.get("/agent/")
    response = client.post("/ui/sign-out", data={"csrf_token": csrf_of(page.text)})
    cleared = next(h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}="))
    for flag in ("Max-Age=0", "Path=/", "HttpOnly", "SameSite=lax"):
        assert flag in cleared, cleared
    assert name not in client.cookies


def test_cookie_names_are_the_installations_own(settings: Settings, tmp_path: Path) -> None:
    """Cookies ignore ports: two servers on one host share a browser's cookies. Each
    installation's names are its own; the processes of one (sharing its keyring and database,
    behind one address) use the same, so a session goes on from one process to the next."""
    one, same = create_app(settings), create_app(settings)
    other = create_app(Settings(data_dir=tmp_path / "another"))
    try:
        names = {
            app: [cookie_name(app.state.services, n) for n in (SESSION_COOKIE, SIGNIN_COOKIE)]
            for app in (one, same, other)
        }
        assert names[one] == names[same]
        assert not set(names[one]) & set(names[other])
        assert all(n.startswith(("op_session-", "op_signin-")) for n in names[one] + names[other])
        with one.state.services.write() as tx:
            users.create_user(tx, username="ana", password=PASSWORD, role="agent")
        with TestClient(one, follow_redirects=False) as first:
            sign_in(first, "ana")
            with TestClient(same, follow_redirects=False, cookies=first.cookies) as second:
                assert second.get("/agent/").status_code == 200
    finally:
        for app in (one, same, other):
            app.state.services.database.dispose()
