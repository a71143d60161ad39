"""A form sent after its session was ended another way than by time. Signed out in another tab
(the browser no longer sends the cookie) or the user deleted: it cannot be kept for after sign-in
(nothing says whose it was: web.UI.keep_form), but it is no longer dropped without a word: the
sign-in page it leads to says that the session had ended and what was sent was not saved,
without echoing any of it. The user's password set anew by an administrator: the session is
ended, not deleted (users.set_password), so the form is kept for that user, as after an idle
hour. Both used to lead to a plain sign-in page, and the agent found an empty form after
signing in (UI review)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from starlette.testclient import TestClient
from tests.unit.ingest.conftest import DOMAIN, make_domain
from tests.unit.ui.test_ui_admin_ops import PASSWORD, csrf_of, services_of
from tests.unit.ui.test_ui_pages import _FormFields

from openprofiles.app import create_app
from openprofiles.profiles import service as profiles
from openprofiles.settings import Settings
from openprofiles.users import service as users

SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}
TYPED = "Typed-before-sign-out"
NOT_SAVED = "Your session had ended, so what you sent was not saved."
NEW_PASSWORD = "An0ther-long-passphrase!"


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    with app.state.services.write() as tx:
        users.create_user(tx, username="ana", password=PASSWORD, role="agent")
    make_domain(app.state.services)
    with TestClient(app, follow_redirects=False) as test_client:
        yield test_client
    app.state.services.database.dispose()


def _fields(html: str) -> dict[str, str]:
    parser = _FormFields()
    parser.feed(html)
    return parser.fields


def _edit_form(client: TestClient) -> tuple[str, str, dict[str, str]]:
    """(profile id, its edit address, ana's edit form as shown to her, signed in)."""
    with services_of(client).write() as tx:
        profile_id = profiles.create_profile(
            tx, domain_name=DOMAIN, fields={"FirstName": "Ada"}
        ).profile_id
    page = client.get("/ui/sign-in").text
    signed = client.post(
        "/ui/sign-in", data={**_fields(page), "username": "ana", "password": PASSWORD}
    )
    assert signed.status_code == 303
    url = f"/agent/domains/{DOMAIN}/profiles/{profile_id}/edit"
    return profile_id, url, _fields(client.get(url).text)


def _first_name(client: TestClient, profile_id: str) -> object:
    with services_of(client).read() as tx:
        return profiles.get_profile(tx, domain_name=DOMAIN, profile_id=profile_id).fields.get(
            "FirstName"
        )


def _sent_and_followed(client: TestClient, url: str, form: dict[str, str]) -> str:
    """The sign-in page the form, sent now, leads to."""
    answer = client.post(url, data={**form, "FirstName": TYPED}, headers=SAME_ORIGIN)
    assert answer.status_code == 303
    location = answer.headers["location"]
    assert location.startswith("/ui/sign-in?next=") and TYPED not in location
    shown = client.get(location)
    assert shown.status_code == 200
    return shown.text


def test_an_edit_sent_after_signing_out_in_another_tab_says_it_was_not_saved(
    client: TestClient,
) -> None:
    profile_id, url, form = _edit_form(client)
    # The other tab signs out: the session's row and the browser's cookie are gone.
    signed_out = client.post("/ui/sign-out", data={"csrf_token": csrf_of(client.get(url).text)})
    assert signed_out.status_code == 303

    page = _sent_and_followed(client, url, form)

    assert NOT_SAVED in page
    assert TYPED not in page and "kept_form" not in _fields(page)
    assert _first_name(client, profile_id) == "Ada"
    # Said once: a reload of the sign-in page, or another visit, is a plain sign-in page.
    assert NOT_SAVED not in client.get("/ui/sign-in?next=" + url.replace("/", "%2F")).text


def test_an_edit_sent_after_the_user_was_deleted_says_it_was_not_saved(
    client: TestClient,
) -> None:
    """No row says whose the session was: nothing is kept, and the page says so."""
    profile_id, url, form = _edit_form(client)
    with services_of(client).write() as tx:
        users.delete_user(tx, username="ana")

    page = _sent_and_followed(client, url, form)

    assert NOT_SAVED in page and TYPED not in page and "kept_form" not in _fields(page)
    assert _first_name(client, profile_id) == "Ada"


def test_an_edit_sent_after_an_administrator_set_a_new_password_is_kept_for_its_user(
    client: TestClient,
) -> None:
    """A new password ends the user's sessions without deleting their rows (users.set_password):
    the form is kept for that user, and comes back once they sign in with the new password."""
    profile_id, url, form = _edit_form(client)
    with services_of(client).write() as tx:
        assert users.set_password(tx, username="ana", password=NEW_PASSWORD) == 1
    # The session is over: its pages ask to sign in.
    assert client.get(url).status_code == 303

    answer = client.post(url, data={**form, "FirstName": TYPED}, headers=SAME_ORIGIN)
    assert answer.status_code == 200 and "Your session has ended" in answer.text
    assert TYPED not in answer.text and _fields(answer.text)["kept_form"]
    # The old password no longer signs in, and the kept form stays on the page.
    refused = client.post(
        "/ui/sign-in", data={**_fields(answer.text), "username": "ana", "password": PASSWORD}
    )
    assert refused.status_code == 401
    back = client.post(
        "/ui/sign-in",
        data={**_fields(refused.text), "username": "ana", "password": NEW_PASSWORD},
    )
    assert back.status_code == 200 and "Back to the form" in back.text
    restored = client.post(url, data=_fields(back.text))
    assert restored.status_code == 200 and _fields(restored.text)["FirstName"] == TYPED
    assert _first_name(client, profile_id) == "Ada"


def test_a_plain_visit_to_the_sign_in_page_says_nothing_of_a_lost_form(
    client: TestClient,
) -> None:
    """The notice comes from the server's own sealed cookie, not from the address: a link cannot
    make the page say it."""
    for address in ("/ui/sign-in", "/ui/sign-in?next=%2Fagent%2F&ended=1"):
        assert NOT_SAVED not in client.get(address).text


def test_a_session_ended_by_a_new_password_is_not_brought_back_by_its_last_request(
    client: TestClient,
) -> None:
    """Ended, not deleted: a request that loaded the session just before the new password was
    set, and records that its browser was seen (users.touch_session), does not revive it."""
    services = services_of(client)
    with services.write() as tx:
        token = users.create_session(tx, username="ana").token
    with services.write() as tx:
        users.set_password(tx, username="ana", password=NEW_PASSWORD)
    with services.write() as tx:
        users.touch_session(tx, token=token)
    with services.read() as tx:
        assert users.get_session(tx, token=token) is None
        assert users.session_username(tx, token=token) == "ana"


@pytest.mark.parametrize("behind", [timedelta(milliseconds=500), timedelta(minutes=30)])
def test_nor_by_a_request_whose_clock_reads_earlier(client: TestClient, behind: timedelta) -> None:
    """A transaction that read the clock before set_password's (made before it, its update run
    after; or another server process whose clock is a little behind) must not see the ended
    session as live either."""
    services = services_of(client)
    with services.write() as tx:
        token = users.create_session(tx, username="ana").token
    with services.write() as tx:
        ended_at = tx.now
        users.set_password(tx, username="ana", password=NEW_PASSWORD)
    with services.write() as tx:
        tx.now = ended_at - behind
        assert users.get_session(tx, token=token) is None
        users.touch_session(tx, token=token)
    with services.read() as tx:
        assert users.get_session(tx, token=token) is None


def test_signing_out_again_in_a_second_tab_says_nothing_was_lost(client: TestClient) -> None:
    """Signing out once the session has ended (in another tab) loses nothing: the sign-in page
    it leads to has no notice of a form not saved."""
    _profile_id, url, _form = _edit_form(client)
    csrf = csrf_of(client.get(url).text)
    assert client.post("/ui/sign-out", data={"csrf_token": csrf}).status_code == 303
    again = client.post("/ui/sign-out", data={"csrf_token": csrf}, headers=SAME_ORIGIN)
    assert again.status_code == 303
    assert again.headers["location"].startswith("/ui/sign-in")
    assert NOT_SAVED not in client.get(again.headers["location"]).text
