"""The users pages through Starlette's TestClient: an admin deletes a user (after ticking the
box), sets a password, changes a role, never leaves no admin; a user changes their own password;
the sign-in page refuses after too many failures; CSRF on every form; no name in an address."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from httpx import Response
from starlette.testclient import TestClient

from openprofiles.app import create_app
from openprofiles.settings import Settings
from openprofiles.users import service as users
from openprofiles.users import throttle

PASSWORD = "long enough password"
NEW_PASSWORD = "a brand new password"
AGENT = "jane.doe@example.com"


@pytest.fixture
def app(settings: Settings) -> Iterator[object]:
    built = create_app(settings)
    with built.state.services.write() as tx:
        users.create_user(tx, username="boss", password=PASSWORD, role="admin")
        users.create_user(tx, username=AGENT, password=PASSWORD, role="agent")
    yield built
    built.state.services.database.dispose()


def client_of(app: object) -> TestClient:
    return TestClient(app, follow_redirects=False)  # type: ignore[arg-type]


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def sign_in_answer(client: TestClient, username: str, password: str = PASSWORD) -> Response:
    page = client.get("/ui/sign-in")
    return client.post(
        "/ui/sign-in",
        data={"username": username, "password": password, "csrf_token": csrf_of(page.text)},
    )


def try_sign_in(client: TestClient, username: str, password: str = PASSWORD) -> int:
    return sign_in_answer(client, username, password).status_code


def signed_in(app: object, username: str, password: str = PASSWORD) -> TestClient:
    client = client_of(app)
    assert try_sign_in(client, username, password) == 303
    return client


def user_link(client: TestClient, username: str, label: str) -> str:
    page = client.get("/admin/users").text
    match = re.search(rf'href="([^"]+)" aria-label="{label} user {re.escape(username)}"', page)
    assert match, page
    return match.group(1)


def test_delete_needs_the_box_ticked_and_ends_the_users_sessions(app: object) -> None:
    boss, agent = signed_in(app, "boss"), signed_in(app, AGENT)
    assert agent.get("/agent/").status_code == 200
    delete = user_link(boss, AGENT, "Delete")
    assert AGENT not in delete and "jane" not in delete
    confirm = boss.get(delete)
    assert confirm.status_code == 200 and AGENT in confirm.text
    token = csrf_of(confirm.text)
    # Without the CSRF token: refused before anything happens.
    assert boss.post(delete, data={"confirm": "yes"}).status_code == 403
    # Box not ticked: the confirmation again, with the reason.
    unticked = boss.post(delete, data={"csrf_token": token})
    assert unticked.status_code == 400 and "Tick the box" in unticked.text
    assert agent.get("/agent/").status_code == 200
    done = boss.post(
        delete, data={"csrf_token": token, "confirm": "yes", "your_password": PASSWORD}
    )
    assert done.status_code == 303
    assert AGENT not in done.headers["location"]
    assert "Deleted the user jane.doe@example.com" in boss.get(done.headers["location"]).text
    # The agent's open session ended with the user.
    assert agent.get("/agent/").headers["location"].startswith("/ui/sign-in")
    assert try_sign_in(client_of(app), AGENT) == 401


def test_the_last_admin_cannot_delete_or_demote_themselves(app: object) -> None:
    boss = signed_in(app, "boss")
    delete = user_link(boss, "boss", "Delete")
    token = csrf_of(boss.get(delete).text)
    refused = boss.post(
        delete, data={"csrf_token": token, "confirm": "yes", "your_password": PASSWORD}
    )
    assert refused.status_code == 400
    assert "boss is the last administrator" in refused.text
    manage = user_link(boss, "boss", "Manage")
    demoted = boss.post(
        f"{manage}/role",
        data={"csrf_token": token, "role": "agent", "role_your_password": PASSWORD},
    )
    assert demoted.status_code == 400 and "last administrator" in demoted.text
    assert boss.get("/admin/users").status_code == 200


def test_an_admin_sets_a_password_and_the_users_sessions_end(app: object) -> None:
    boss, agent = signed_in(app, "boss"), signed_in(app, AGENT)
    manage = user_link(boss, AGENT, "Manage")
    token = csrf_of(boss.get(manage).text)
    spaces = boss.post(
        f"{manage}/password",
        data={"csrf_token": token, "new_password": " " * 8, "new_password_confirm": " " * 8},
    )
    assert spaces.status_code == 400 and "not only spaces" in spaces.text
    done = boss.post(
        f"{manage}/password",
        data={
            "csrf_token": token,
            "new_password": NEW_PASSWORD,
            "new_password_confirm": NEW_PASSWORD,
            "your_password": PASSWORD,
        },
    )
    assert done.status_code == 303
    assert "ended 1 session" in boss.get(done.headers["location"]).text
    assert agent.get("/agent/").status_code == 303
    assert try_sign_in(client_of(app), AGENT) == 401
    assert try_sign_in(client_of(app), AGENT, NEW_PASSWORD) == 303
    # The admin's own session goes on.
    assert boss.get("/admin/users").status_code == 200


def test_a_user_changes_their_own_password(app: object) -> None:
    here, elsewhere = signed_in(app, AGENT), signed_in(app, AGENT)
    page = here.get("/ui/password")
    assert page.status_code == 200
    token = csrf_of(page.text)
    wrong = here.post(
        "/ui/password",
        data={
            "csrf_token": token,
            "current_password": "not my password",
            "new_password": NEW_PASSWORD,
            "new_password_confirm": NEW_PASSWORD,
        },
    )
    assert wrong.status_code == 400 and "not your current password" in wrong.text
    done = here.post(
        "/ui/password",
        data={
            "csrf_token": token,
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "new_password_confirm": NEW_PASSWORD,
        },
    )
    assert done.status_code == 303
    assert "Your password has been changed" in here.get(done.headers["location"]).text
    assert elsewhere.get("/agent/").status_code == 303
    assert here.get("/agent/").status_code == 200
    assert try_sign_in(client_of(app), AGENT, NEW_PASSWORD) == 303


def test_sign_in_refuses_after_too_many_failures_the_same_for_unknown_names(app: object) -> None:
    client = client_of(app)
    for name in (AGENT, "nobody@example.com"):
        for _ in range(throttle.USER_LIMIT):
            assert try_sign_in(client, name, "wrong password") == 401
    answers = []
    for name, password in ((AGENT, PASSWORD), ("nobody@example.com", "wrong password")):
        response = sign_in_answer(client, name, password)
        assert response.status_code == 429
        answers.append(re.search(r'role="alert">(.*?)</p>', response.text, re.S))
    assert answers[0] and answers[1]
    assert answers[0].group(1) == answers[1].group(1)
    assert "Wait 1 minute and try again" in answers[0].group(1)


def test_the_pages_hash_new_passwords_with_no_transaction_open(
    app: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Argon2 (~0.1 s) inside a write transaction held SQLite's one writer lock, so every API
    write waited behind an administrator setting a password (users.NewPassword)."""
    engine = app.state.services.database.engine  # type: ignore[attr-defined]
    open_while_hashing: list[int] = []
    real = users._hasher

    class Watching:
        def hash(self, password: str) -> str:
            open_while_hashing.append(engine.pool.checkedout())
            return real.hash(password)

        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

    boss = signed_in(app, "boss")
    manage = user_link(boss, AGENT, "Manage")
    token = csrf_of(boss.get(manage).text)
    monkeypatch.setattr(users, "_hasher", Watching())
    twice = {"new_password": NEW_PASSWORD, "new_password_confirm": NEW_PASSWORD}
    mine = {"your_password": PASSWORD}
    answer = boss.post(f"{manage}/password", data={"csrf_token": token, **twice, **mine})
    assert answer.status_code == 303
    created = boss.post(
        "/admin/users",
        data={
            "csrf_token": token,
            "username": "newcomer",
            "role": "agent",
            "password": NEW_PASSWORD,
            "password_confirm": NEW_PASSWORD,
            **mine,
        },
    )
    assert created.status_code == 303
    own = boss.post(
        "/ui/password",
        data={"csrf_token": token, "current_password": PASSWORD, **twice},
    )
    assert own.status_code == 303
    assert open_while_hashing == [0, 0, 0]
    for name in (AGENT, "newcomer", "boss"):
        assert try_sign_in(client_of(app), name, NEW_PASSWORD) == 303
