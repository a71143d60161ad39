"""The pages' cookies over HTTPS are named with the `__Host-` prefix (ui.web.browser_name): Secure,
Path=/ and no Domain, so that no sibling subdomain nor another port of the host can plant one
(cookie tossing). Over HTTPS only the prefixed name is read: an unprefixed cookie, which anyone
under the domain could have set, opens no session and vouches for no sign-in form. Over plain
HTTP (development on 127.0.0.1), where browsers refuse the prefix, the names stay plain.

The names used to be plain over HTTPS too, and a session or sign-in cookie planted by a sibling
subdomain was taken as the browser's own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from http.cookies import SimpleCookie
from typing import Any, Protocol

import httpx
import pytest
from starlette.testclient import TestClient
from tests.unit.ui.test_ui_hsts import live
from tests.unit.ui.test_ui_sessions import PASSWORD, csrf_of

from openprofiles.app import create_app
from openprofiles.settings import Settings
from openprofiles.ui.flash import FLASH_COOKIE
from openprofiles.ui.web import SESSION_COOKIE, SIGNIN_COOKIE, cookie_name
from openprofiles.users import service as users

HTTPS = "https://testserver"
HTTP = "http://testserver"
NEW_PASSWORD = "another long enough password"


@contextmanager
def app_client(settings: Settings, base_url: str) -> Iterator[TestClient]:
    app = create_app(settings)
    with app.state.services.write() as tx:
        users.create_user(tx, username="boss", password=PASSWORD, role="admin")
    with TestClient(app, base_url=base_url, follow_redirects=False) as client:
        yield client
    app.state.services.database.dispose()


def plain_name(client: TestClient, name: str) -> str:
    """This installation's name of the cookie `name` as set over plain HTTP."""
    return cookie_name(client.app.state.services, name)  # type: ignore[attr-defined]


class Answer(Protocol):
    """A response of httpx's or of Starlette's TestClient (whose httpx may be another copy)."""

    @property
    def headers(self) -> Any: ...


def set_cookies(response: Answer) -> dict[str, dict[str, str]]:
    """The cookies `response` sets, by name: each one's attributes (lower-case names; a flag's
    value is "true"), and its "value"."""
    found: dict[str, dict[str, str]] = {}
    for header in response.headers.get_list("set-cookie"):
        parsed: SimpleCookie = SimpleCookie()
        parsed.load(header)
        for name, morsel in parsed.items():
            attributes = {k: "true" if v is True else str(v) for k, v in morsel.items() if v}
            found[name] = {**attributes, "value": morsel.value}
    return found


def sign_in(client: TestClient) -> Answer:
    page = client.get("/ui/sign-in")
    response = client.post(
        "/ui/sign-in",
        data={"username": "boss", "password": PASSWORD, "csrf_token": csrf_of(page.text)},
    )
    assert response.status_code == 303, response.text
    return response


def assert_host_only(cookie: dict[str, str]) -> None:
    """What a browser requires of a `__Host-` cookie (else it drops it)."""
    assert cookie.get("secure") == "true", cookie
    assert cookie.get("path") == "/", cookie
    assert "domain" not in cookie, cookie
    assert cookie.get("httponly") == "true", cookie
    assert cookie.get("samesite", "").lower() == "lax", cookie


def test_over_https_every_cookie_is_named_host_only(settings: Settings) -> None:
    with app_client(settings, HTTPS) as client:
        names = {n: "__Host-" + plain_name(client, n) for n in (SESSION_COOKIE, SIGNIN_COOKIE)}
        flash_name = "__Host-" + plain_name(client, FLASH_COOKIE)

        page = client.get("/ui/sign-in")
        assert list(set_cookies(page)) == [names[SIGNIN_COOKIE]]
        assert_host_only(set_cookies(page)[names[SIGNIN_COOKIE]])

        signed_in = client.post(
            "/ui/sign-in",
            data={"username": "boss", "password": PASSWORD, "csrf_token": csrf_of(page.text)},
        )
        assert signed_in.status_code == 303, signed_in.text
        cookies = set_cookies(signed_in)
        # The session set, the sign-in token cleared: both under the prefixed names only.
        assert sorted(cookies) == sorted(names.values())
        for cookie in cookies.values():
            assert_host_only(cookie)
        assert cookies[names[SESSION_COOKIE]]["value"]
        assert cookies[names[SIGNIN_COOKIE]]["max-age"] == "0"
        assert client.get("/admin/domains").status_code == 200

        # A one-shot confirmation (ui.flash): its cookie too, set and then cleared.
        form = client.get("/ui/password")
        changed = client.post(
            "/ui/password",
            data={
                "csrf_token": csrf_of(form.text),
                "current_password": PASSWORD,
                "new_password": NEW_PASSWORD,
                "new_password_confirm": NEW_PASSWORD,
            },
        )
        assert changed.status_code == 303, changed.text
        assert list(set_cookies(changed)) == [flash_name]
        assert_host_only(set_cookies(changed)[flash_name])
        shown = client.get("/ui/password")
        assert "Your password has been changed" in shown.text
        assert list(set_cookies(shown)) == [flash_name]
        assert_host_only(set_cookies(shown)[flash_name])

        signed_out = client.post("/ui/sign-out", data={"csrf_token": csrf_of(shown.text)})
        assert signed_out.status_code == 303
        assert list(set_cookies(signed_out)) == [names[SESSION_COOKIE]]
        assert_host_only(set_cookies(signed_out)[names[SESSION_COOKIE]])


def test_over_https_an_unprefixed_session_cookie_opens_no_session(settings: Settings) -> None:
    with app_client(settings, HTTPS) as client:
        sign_in(client)
        prefixed = "__Host-" + plain_name(client, SESSION_COOKIE)
        token = client.cookies[prefixed]
        assert client.get("/admin/domains").status_code == 200
        # The same live session's value under the plain name, as a sibling subdomain can set
        # it (Domain=.example.com): not read over HTTPS.
        client.cookies.clear()
        client.cookies.set(plain_name(client, SESSION_COOKIE), token)
        refused = client.get("/admin/domains")
        assert refused.status_code == 303
        assert refused.headers["location"].startswith("/ui/sign-in")


def test_over_https_an_unprefixed_sign_in_cookie_vouches_for_no_form(settings: Settings) -> None:
    """Login CSRF by cookie tossing: a sibling subdomain plants a sign-in token it knows, and a
    page of its own posts the sign-in form with that token and the attacker's account, to have
    the agent work (and search) in the attacker's session."""
    with app_client(settings, HTTPS) as client:
        planted = "A" * 43  # the shape of a sign-in token (auth_pages.SIGNIN_TOKEN_PATTERN)
        client.cookies.set(plain_name(client, SIGNIN_COOKIE), planted)
        response = client.post(
            "/ui/sign-in",
            data={"username": "boss", "password": PASSWORD, "csrf_token": planted},
        )
        assert response.status_code == 403
        assert "The sign-in form had expired" in response.text
        assert "__Host-" + plain_name(client, SESSION_COOKIE) not in set_cookies(response)
        # Nor does the sign-in page take the planted token up as its own.
        page = client.get("/ui/sign-in")
        assert csrf_of(page.text) != planted


def test_over_plain_http_the_names_stay_plain_and_sign_in_works(settings: Settings) -> None:
    with app_client(settings, HTTP) as client:
        page = client.get("/ui/sign-in")
        assert list(set_cookies(page)) == [plain_name(client, SIGNIN_COOKIE)]
        cookies = set_cookies(sign_in(client))
        session = cookies[plain_name(client, SESSION_COOKIE)]
        assert session["value"] and "secure" not in session
        assert session["path"] == "/" and "domain" not in session
        assert all(not name.startswith("__Host-") for name in cookies)
        assert client.get("/admin/domains").status_code == 200
        # Only the plain name is read over HTTP too (a browser sends no Secure cookie there).
        token = client.cookies[plain_name(client, SESSION_COOKIE)]
        client.cookies.clear()
        client.cookies.set("__Host-" + plain_name(client, SESSION_COOKIE), token)
        assert client.get("/admin/domains").status_code == 303


@pytest.mark.parametrize(
    ("trusted_proxy", "forwarded_proto", "prefixed"),
    [
        # Behind the TLS proxy named: its X-Forwarded-Proto says how the browser came.
        ("127.0.0.1", "https", True),
        ("127.0.0.1", "http", False),
        # No proxy trusted: a client's own X-Forwarded-Proto changes nothing.
        (None, "https", False),
    ],
)
def test_behind_a_proxy_the_name_follows_the_trusted_forwarded_proto(
    sqlite_settings: Settings, trusted_proxy: str | None, forwarded_proto: str, prefixed: bool
) -> None:
    with live(sqlite_settings, trusted_proxy=trusted_proxy) as url:
        response = httpx.get(
            url + "/ui/sign-in",
            headers={"X-Forwarded-Proto": forwarded_proto},
            follow_redirects=False,
        )
        assert response.status_code == 200
        (name,) = set_cookies(response)
        assert name.startswith("__Host-op_signin-") is prefixed
        assert name.startswith("op_signin-") is not prefixed
        assert ("secure" in set_cookies(response)[name]) is prefixed
