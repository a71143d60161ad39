"""Sensitive administrator actions ask the acting administrator's own password again
(ui.password_confirm): creating or deleting an API credential, creating a user, setting another
user's password, changing a role, deleting a user. Without it, or with a wrong one, nothing
changes and the form says why; wrong ones are counted as failed sign-ins, so the form cannot be
used to guess the password. Creating a user asks too, or a stolen session would make an
administrator of its own and go round every other re-confirm.
And the user's page is titled without the username (personal data the history keeps). On SQLite
and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient
from tests.unit.ui.test_ui_user_pages import (
    PASSWORD,
    client_of,
    csrf_of,
    signed_in,
    try_sign_in,
    user_link,
)

from openprofiles.app import create_app
from openprofiles.auth import credentials as creds
from openprofiles.settings import Settings
from openprofiles.users import service as users
from openprofiles.users import throttle

AGENT = "jane.doe@example.com"
NEW_PASSWORD = "a brand new password"
WRONG = "not my password at all"
# The administrator's password field (ui.FIELD; the role form's has its own).
FIELD = "your_password"
# What the form says (the start of ui.password_confirm's MISSING and WRONG).
MISSING = "Type your own password to confirm this change"
NOT_YOURS = "This is not your password"
# A user the holder of a stolen session would make, with a password of their choosing.
MALLORY = "mallory"
CHOSEN = "attacker chosen passphrase 123"


@pytest.fixture
def app(settings: Settings) -> Iterator[Any]:
    built = create_app(settings)
    with built.state.services.write() as tx:
        users.create_user(tx, username="boss", password=PASSWORD, role="admin")
        users.create_user(tx, username=AGENT, password=PASSWORD, role="agent")
    yield built
    built.state.services.database.dispose()


def credentials_made(app: Any) -> int:
    with app.state.services.read() as tx:
        return len(creds.list_credentials(tx))


def role_of(app: Any, username: str) -> str | None:
    with app.state.services.read() as tx:
        found = users.find_user(tx, username=username)
    return found.role if found else None


def agent_role(app: Any) -> str | None:
    with app.state.services.read() as tx:
        found = users.find_user(tx, username=AGENT)
    return found.role if found else None


def agent_password_is(app: Any, password: str) -> bool:
    with app.state.services.read() as tx:
        return users.verify_password(tx, username=AGENT, password=password) is not None


# Each action: (the page its form is on, the form's action, its fields, the password field,
# whether it was done).
Action = tuple[str, str, dict[str, str], str, Callable[[Any], bool]]


def actions(boss: TestClient) -> dict[str, Action]:
    manage = user_link(boss, AGENT, "Manage")
    delete = user_link(boss, AGENT, "Delete")
    twice = {"new_password": NEW_PASSWORD, "new_password_confirm": NEW_PASSWORD}
    app = boss.app
    with app.state.services.write() as tx:  # type: ignore[attr-defined]
        kept = creds.create_credential(tx, role="agent").access_key_id
    revoke = f"/admin/credentials/{kept}/delete"
    return {
        "credential": (
            "/admin/credentials",
            "/admin/credentials",
            {"role": "admin"},
            FIELD,
            lambda app: credentials_made(app) == 2,
        ),
        "revoke": (
            revoke,
            revoke,
            {"confirm": "yes"},
            FIELD,
            lambda app: credentials_made(app) == 0,
        ),
        "create": (
            "/admin/users",
            "/admin/users",
            {"username": MALLORY, "role": "admin", "password": CHOSEN, "password_confirm": CHOSEN},
            FIELD,
            lambda app: role_of(app, MALLORY) == "admin",
        ),
        "password": (
            manage,
            f"{manage}/password",
            twice,
            FIELD,
            lambda app: agent_password_is(app, NEW_PASSWORD),
        ),
        "role": (
            manage,
            f"{manage}/role",
            {"role": "admin"},
            "role_your_password",
            lambda app: agent_role(app) == "admin",
        ),
        "delete": (
            delete,
            delete,
            {"confirm": "yes"},
            FIELD,
            lambda app: agent_role(app) is None,
        ),
    }


@pytest.mark.parametrize("action", ["credential", "revoke", "create", "password", "role", "delete"])
def test_a_sensitive_action_needs_the_administrators_own_password(app: Any, action: str) -> None:
    boss = signed_in(app, "boss")
    page, target, fields, field, done = actions(boss)[action]
    form = boss.get(page)
    assert f'name="{field}"' in form.text and 'autocomplete="current-password"' in form.text
    token = csrf_of(form.text)
    for typed, message in ((None, MISSING), (WRONG, NOT_YOURS)):
        sent = {"csrf_token": token, **fields, **({field: typed} if typed else {})}
        refused = boss.post(target, data=sent)
        assert refused.status_code == 400, (typed, refused.status_code)
        assert f'id="{field}-error"' in refused.text
        assert message in refused.text
        assert not done(app), typed
        # Nothing else was refused: only the password is asked for again.
        assert 'id="role-error"' not in refused.text and 'id="confirm-error"' not in refused.text
    answer = boss.post(target, data={"csrf_token": token, **fields, field: PASSWORD})
    assert answer.status_code in (200, 303), answer.text
    assert done(app)
    # The administrator's own session goes on.
    assert boss.get("/admin/users").status_code == 200


@pytest.mark.parametrize("action", ["credential", "create"])
def test_wrong_passwords_are_counted_as_failed_sign_ins(app: Any, action: str) -> None:
    """The form is no way to guess: after USER_LIMIT wrong ones from this address, even the
    right password is refused (429) without a check, and so is a sign-in as boss from here."""
    boss = signed_in(app, "boss")
    page, target, fields, field, done = actions(boss)[action]
    token = csrf_of(boss.get(page).text)
    for _ in range(throttle.USER_LIMIT):
        wrong = boss.post(target, data={"csrf_token": token, **fields, field: WRONG})
        assert wrong.status_code == 400
    locked = boss.post(target, data={"csrf_token": token, **fields, field: PASSWORD})
    assert locked.status_code == 429 and "Too many sign-ins" in locked.text
    assert not done(app)
    assert signed_in_status(app) == 429


def signed_in_status(app: Any) -> int:
    client = TestClient(app, follow_redirects=False)
    form = {"username": "boss", "password": PASSWORD}
    form["csrf_token"] = csrf_of(client.get("/ui/sign-in").text)
    return client.post("/ui/sign-in", data=form).status_code


def test_a_right_password_forgets_the_wrong_ones_before(app: Any) -> None:
    """As a sign-in does: the administrator who mistyped gets their full allowance back."""
    boss = signed_in(app, "boss")
    page, target, fields, field, _done = actions(boss)["role"]
    token = csrf_of(boss.get(page).text)
    for _ in range(throttle.USER_LIMIT - 1):
        boss.post(target, data={"csrf_token": token, "role": "agent", field: WRONG})
    right = boss.post(target, data={"csrf_token": token, **fields, field: PASSWORD})
    assert right.status_code == 303
    for _ in range(throttle.USER_LIMIT - 1):
        wrong = boss.post(target, data={"csrf_token": token, "role": "agent", field: WRONG})
        assert wrong.status_code == 400


def test_the_users_page_title_does_not_name_the_user(app: Any) -> None:
    boss = signed_in(app, "boss")
    page = boss.get(user_link(boss, AGENT, "Manage"))
    title = re.search(r"<title>(.*?)</title>", page.text)
    assert title is not None and title.group(1) == "User · OpenProfiles", title
    assert AGENT in page.text  # still named on the page itself


def test_a_session_alone_cannot_make_an_administrator_of_its_own(app: Any) -> None:
    """The review's reproducer, refused: a session (no password) creating an administrator whose
    password it chose, to sign in as them and create an API key with no re-confirm of boss's.
    The form comes back with what was typed, but for the passwords."""
    boss = signed_in(app, "boss")
    made = boss.post(
        "/admin/users",
        data={
            "csrf_token": csrf_of(boss.get("/admin/users").text),
            "username": MALLORY,
            "role": "admin",
            "password": CHOSEN,
            "password_confirm": CHOSEN,
        },
    )
    assert made.status_code == 400
    assert MISSING in made.text and f'id="{FIELD}-error"' in made.text
    assert role_of(app, MALLORY) is None
    assert try_sign_in(client_of(app), MALLORY, CHOSEN) == 401
    assert credentials_made(app) == 0
    # Kept: the name and the role; never a password.
    assert re.search(rf'id="username"[^>]* value="{MALLORY}"', made.text)
    assert re.search(r'<option value="admin" selected>', made.text)
    assert CHOSEN not in made.text


def test_a_user_form_refused_for_its_fields_costs_no_password_check(app: Any) -> None:
    """The fields are checked first, as on the other forms: a bad name with a wrong password of
    boss's says what is wrong with the name, and counts nothing against boss."""
    boss = signed_in(app, "boss")
    page, target, fields, field, done = actions(boss)["create"]
    token = csrf_of(boss.get(page).text)
    for _ in range(throttle.USER_LIMIT):
        bad = {**fields, "username": "bad name!", field: WRONG}
        refused = boss.post(target, data={"csrf_token": token, **bad})
        assert refused.status_code == 400
        assert 'id="username-error"' in refused.text and f'id="{field}-error"' not in refused.text
    answer = boss.post(target, data={"csrf_token": token, **fields, field: PASSWORD})
    assert answer.status_code == 303
    assert done(app)
