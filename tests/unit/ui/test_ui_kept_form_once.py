"""A form kept when its session ended is given back to one session (ui.submissions.reopened_form):
sent again in that session — a double click on "Back to the form", Back and resend, two sends at
once — it comes back the same; from another session (a second sign-in with the same sign-in page)
it is gone. It used to open as often as it was sent within its 30 minutes, and then only once, so
that a double click lost it: the page the browser showed was the second send's. On SQLite and
PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from httpx import Response
from starlette.requests import Request
from starlette.testclient import TestClient
from tests.support.concurrency import race
from tests.support.lock_waits import second_writer_meets_first
from tests.unit.ingest.conftest import DOMAIN, make_domain
from tests.unit.ui.test_ui_admin_ops import PASSWORD, services_of
from tests.unit.ui.test_ui_kept_form import (
    TYPED,
    _fields,
    _sent_after_the_session_ended,
    _sign_in,
)

from openprofiles.app import create_app
from openprofiles.context import Tx
from openprofiles.settings import Settings
from openprofiles.ui import submissions
from openprofiles.users import service as users
from openprofiles.users.models import WebSession


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    with app.state.services.write() as tx:
        users.create_user(tx, username="ana", password=PASSWORD, role="agent")
    make_domain(app.state.services)
    with TestClient(app, follow_redirects=False) as test_client:
        yield test_client
    app.state.services.database.dispose()


def _kept_back(client: TestClient) -> tuple[str, dict[str, str], str]:
    """(the edit form's address, the fields of the button that takes ana back to her kept
    form after signing in again, the sign-in page that kept it)."""
    profile_id, page = _sent_after_the_session_ended(client)
    back = _sign_in(client, page, "ana")
    assert back.status_code == 200 and "Back to the form" in back.text
    return f"/agent/domains/{DOMAIN}/profiles/{profile_id}/edit", _fields(back.text), page


def _gone(answer: Response) -> bool:
    text = answer.text.replace("&#39;", "'")
    return answer.status_code == 400 and TYPED not in text and submissions.KEPT_FORM_GONE in text


def _given_back(answer: Response) -> bool:
    return answer.status_code == 200 and _fields(answer.text).get("FirstName") == TYPED


def test_a_kept_form_is_given_back_to_one_session(client: TestClient) -> None:
    url, carried, page = _kept_back(client)

    first = client.post(url, data=carried)
    assert _given_back(first)
    # Sent again in the same session (a double click, Back and resend): the same form again.
    again = client.post(url, data=carried)
    assert _given_back(again) and _fields(again.text) == _fields(first.text)
    # Signed in again with what the same sign-in page carried: another session, no way back.
    token = _fields(client.get("/ui/sign-in").text)["csrf_token"]
    again = client.post(
        "/ui/sign-in",
        data={**_fields(page), "csrf_token": token, "username": "ana", "password": PASSWORD},
    )
    assert again.status_code == 200
    assert _gone(client.post(url, data=_fields(again.text)))


def test_two_sends_at_once_both_give_the_kept_form_back(client: TestClient) -> None:
    """A double click sends it twice at once; the browser shows the second answer."""
    url, carried, _ = _kept_back(client)

    def send() -> list[Response]:
        return [client.post(url, data=carried)]

    answers = race([send, send])
    assert all(_given_back(a) for a in answers), [a.status_code for a in answers]


@pytest.mark.parametrize(
    "settings", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_send_that_meets_the_first_one_gets_the_form_back_too(client: TestClient) -> None:
    """PostgreSQL: the second send's transaction waits on the first's record of the form given
    back, loses on its key once the first commits, and, run again, finds it given back to its
    own session: the same form again (a double click; it used to find the form gone)."""
    url, carried, _ = _kept_back(client)
    session = WebSession("ana", "agent", carried["csrf_token"], datetime.now(UTC))
    request = Request(
        {
            "type": "http",
            "method": "POST",
            "path": url,
            "headers": [],
            "query_string": b"",
            "path_params": {"domain": DOMAIN},
        }
    )
    request.state.session = session

    def first(tx: Tx) -> None:
        assert submissions.reopened_form(tx, request, carried["kept_form"]).get("FirstName") == (
            TYPED
        )

    second = second_writer_meets_first(
        services_of(client), first, lambda: client.post(url, data=carried)
    )
    assert _given_back(second)
