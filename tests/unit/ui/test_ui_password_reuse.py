"""Changing one's own password to the one it already is: refused, on the page and in the
service, with the other sessions left alone (a "change" that ended them and kept the password
would look done while doing nothing)."""

from __future__ import annotations

import re

import pytest
from tests.unit.ui.test_ui_user_pages import (
    AGENT,
    PASSWORD,
    app,  # noqa: F401  (the fixture)
    client_of,
    csrf_of,
    signed_in,
    try_sign_in,
)

from openprofiles.errors import BadRequest
from openprofiles.users import service as users


def test_the_page_refuses_the_current_password_as_the_new_one(app: object) -> None:  # noqa: F811
    here, elsewhere = signed_in(app, AGENT), signed_in(app, AGENT)
    page = here.get("/ui/password")
    answer = here.post(
        "/ui/password",
        data={
            "csrf_token": csrf_of(page.text),
            "current_password": PASSWORD,
            "new_password": PASSWORD,
            "new_password_confirm": PASSWORD,
        },
    )
    assert answer.status_code == 400
    error = re.search(r'<p class="error" id="new_password-error">([^<]*)</p>', answer.text)
    assert error and "differs from your current one" in error.group(1)
    assert "Your password was not changed." in answer.text
    # Nothing happened: the other session goes on, and the password still signs in.
    assert elsewhere.get("/agent/").status_code == 200
    assert try_sign_in(client_of(app), AGENT, PASSWORD) == 303


def test_the_service_refuses_it_too(app: object) -> None:  # noqa: F811
    services = app.state.services  # type: ignore[attr-defined]
    with services.write() as tx, pytest.raises(BadRequest, match="differs from your current"):
        users.change_own_password(
            tx, username=AGENT, current=PASSWORD, new=PASSWORD, session="s", address=None
        )
    with services.read() as tx:
        assert users.verify_password(tx, username=AGENT, password=PASSWORD) is not None
