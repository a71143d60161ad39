"""The API credential form creates one key, however often it is sent. The page answers the
form directly (the secret is shown once and never stored), and Reload with "resend" used to
create a second live key without a word (UI review). The form now carries a one-time token
(ui.submissions): sent again, it creates no key and shows neither secret again, only which key
it created, by its id. And the role offered first is agent, the one that may do less, as on the
users page (it was admin). On SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from tests.unit.ui.test_ui_pages import _FormFields
from tests.unit.ui.test_ui_user_pages import PASSWORD, signed_in

from openprofiles.app import create_app
from openprofiles.auth import credentials as creds
from openprofiles.settings import Settings
from openprofiles.users import service as users


@pytest.fixture
def app(settings: Settings) -> Iterator[Any]:
    built = create_app(settings)
    with built.state.services.write() as tx:
        users.create_user(tx, username="boss", password=PASSWORD, role="admin")
    yield built
    built.state.services.database.dispose()


def _stored(app: Any) -> list[creds.CredentialInfo]:
    with app.state.services.read() as tx:
        return creds.list_credentials(tx)


def _form(html: str) -> dict[str, str]:
    parser = _FormFields()
    parser.feed(html)
    return parser.fields


def _secret(html: str) -> str:
    match = re.search(r'<code id="new-secret">([^<]+)</code>', html)
    assert match, html
    return match.group(1)


def test_the_credential_form_sent_again_creates_no_second_key(app: Any) -> None:
    boss = signed_in(app, "boss")
    form = {
        **_form(boss.get("/admin/credentials").text),
        "role": "agent",
        "scope": "all",
        "your_password": PASSWORD,
    }
    first = boss.post("/admin/credentials", data=form)
    assert first.status_code == 200
    secret = _secret(first.text)
    [created] = _stored(app)

    # Reload and resend: the very same form again.
    again = boss.post("/admin/credentials", data=form)

    assert again.status_code == 200
    assert [c.access_key_id for c in _stored(app)] == [created.access_key_id]
    assert secret not in again.text and 'id="new-secret"' not in again.text
    assert "Credential already created" in again.text
    assert f'<code id="created-before">{created.access_key_id}</code>' in again.text
    # The page's new form makes a new key.
    fresh = {**form, "submission": _form(again.text)["submission"]}
    assert fresh["submission"] != form["submission"]
    assert boss.post("/admin/credentials", data=fresh).status_code == 200
    assert len(_stored(app)) == 2


def test_a_credential_form_refused_keeps_its_token_and_creates_once(app: Any) -> None:
    boss = signed_in(app, "boss")
    form = {**_form(boss.get("/admin/credentials").text), "role": "agent", "scope": "all"}
    refused = boss.post("/admin/credentials", data={**form, "your_password": "wrong"})
    assert refused.status_code != 200 and _stored(app) == []
    corrected = {**_form(refused.text), "role": "agent", "scope": "all"}
    assert corrected["submission"] == form["submission"]
    corrected["your_password"] = PASSWORD
    assert boss.post("/admin/credentials", data=corrected).status_code == 200
    assert boss.post("/admin/credentials", data=corrected).status_code == 200
    assert len(_stored(app)) == 1


def test_the_role_offered_first_is_agent(app: Any) -> None:
    page = signed_in(app, "boss").get("/admin/credentials").text
    assert re.search(r'<option value="agent" selected>', page), page
    assert not re.search(r'<option value="admin" selected>', page)
