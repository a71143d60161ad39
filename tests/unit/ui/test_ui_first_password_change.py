"""The first run's generated admin password is changed at first sign-in: `serve
--first-run-admin` makes the web user `admin` with its password in DATA_DIR/admin-password and
marks it must-change (users.service `must_change_password`). Signed in with it, the pages offer
only the password page (every other, GET or POST, redirects there; signing out still works);
the change clears the mark and deletes the file, whose secret no longer opens anything. A
user with a password of their own is not affected; `users set-password --temporary` marks a user
the same way."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from sqlalchemy import update
from starlette.testclient import TestClient
from tests.unit.ui.test_ui_user_pages import (
    AGENT,
    NEW_PASSWORD,
    PASSWORD,
    client_of,
    csrf_of,
    sign_in_answer,
    signed_in,
)

from openprofiles.app import create_app
from openprofiles.auth.credentials import list_credentials
from openprofiles.cli import main
from openprofiles.first_run import ADMIN_PASSWORD_FILE, WEB_ADMIN, ensure_first_web_admin
from openprofiles.settings import Settings
from openprofiles.store.schema import web_user
from openprofiles.users import service as users

ENDPOINT = "http://127.0.0.1:8000"
NOTICE = "Choose a password of your own before going on"
CURRENT_HINT = "The password you signed in with"
FIRST_PASSWORD_LINE = "(the first password is in"


@pytest.fixture
def app(settings: Settings) -> Iterator[object]:
    """A server whose first start made `admin` (the real first-run path), and an agent with a
    password of their own."""
    built = create_app(settings)
    services = built.state.services
    list(ensure_first_web_admin(services, ENDPOINT))
    with services.write() as tx:
        users.create_user(tx, username=AGENT, password=PASSWORD, role="agent")
    yield built
    services.database.dispose()


def first_password(settings: Settings) -> str:
    return (settings.data_dir / ADMIN_PASSWORD_FILE).read_text().strip()


def first_admin(app: object, settings: Settings) -> TestClient:
    client = client_of(app)
    answer = sign_in_answer(client, WEB_ADMIN, first_password(settings))
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/password"
    return client


def change_password(client: TestClient, current: str) -> None:
    page = client.get("/ui/password")
    answer = client.post(
        "/ui/password",
        data={
            "csrf_token": csrf_of(page.text),
            "current_password": current,
            "new_password": NEW_PASSWORD,
            "new_password_confirm": NEW_PASSWORD,
        },
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/password"


def test_the_first_admin_signs_in_to_the_password_page_and_others_do_not(
    app: object, settings: Settings
) -> None:
    admin = first_admin(app, settings)
    page = admin.get("/ui/password")
    assert page.status_code == 200
    assert NOTICE in page.text
    # Asked for the chosen password again, and told which it is.
    assert CURRENT_HINT in page.text
    # No way round it offered: the main navigation is left out until the change.
    assert 'aria-label="Main"' not in page.text
    with app.state.services.read() as tx:  # type: ignore[attr-defined]
        found = users.find_user(tx, username=WEB_ADMIN)
    assert found is not None and found.must_change_password
    # A user with a password of their own is not affected, meanwhile.
    agent = client_of(app)
    answer = sign_in_answer(agent, AGENT)
    assert answer.status_code == 303 and answer.headers["location"] == "/agent/"
    assert agent.get("/agent/").status_code == 200
    own = agent.get("/ui/password")
    assert own.status_code == 200 and NOTICE not in own.text and CURRENT_HINT not in own.text


@pytest.mark.parametrize(
    "path", ["/admin/", "/agent/", "/admin/users", "/admin/credentials", "/admin/domains"]
)
def test_every_other_page_redirects_to_the_password_page(
    app: object, settings: Settings, path: str
) -> None:
    admin = first_admin(app, settings)
    answer = admin.get(path)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/password"
    # The landing page sends there too.
    home = admin.get("/ui/")
    assert home.status_code == 303 and home.headers["location"] == "/ui/password"


def test_a_form_sent_elsewhere_is_not_acted_on(app: object, settings: Settings) -> None:
    admin = first_admin(app, settings)
    token = csrf_of(admin.get("/ui/password").text)
    made = admin.post(
        "/admin/users",
        data={
            "csrf_token": token,
            "username": "mallory",
            "role": "admin",
            "password": NEW_PASSWORD,
            "password_confirm": NEW_PASSWORD,
            "your_password": first_password(settings),
        },
    )
    assert made.status_code == 303 and made.headers["location"] == "/ui/password"
    key = admin.post(
        "/admin/credentials",
        data={"csrf_token": token, "role": "admin", "your_password": first_password(settings)},
    )
    assert key.status_code == 303 and key.headers["location"] == "/ui/password"
    services = app.state.services  # type: ignore[attr-defined]
    with services.read() as tx:
        assert users.find_user(tx, username="mallory") is None
        assert list_credentials(tx) == []


def test_sign_out_still_works(app: object, settings: Settings) -> None:
    admin = first_admin(app, settings)
    token = csrf_of(admin.get("/ui/password").text)
    out = admin.post("/ui/sign-out", data={"csrf_token": token})
    assert out.status_code == 303 and out.headers["location"] == "/ui/sign-in"
    assert admin.get("/ui/password").headers["location"].startswith("/ui/sign-in")


def test_after_the_change_the_pages_open_and_the_file_is_gone(
    app: object, settings: Settings
) -> None:
    path = settings.data_dir / ADMIN_PASSWORD_FILE
    admin = first_admin(app, settings)
    change_password(admin, first_password(settings))

    done = admin.get("/ui/password")
    assert "Your password has been changed" in done.text and NOTICE not in done.text
    assert admin.get("/admin/").headers["location"] == "/admin/domains"
    assert admin.get("/admin/domains").status_code == 200
    assert admin.get("/admin/users").status_code == 200
    assert admin.get("/agent/").status_code == 200
    # The file held a secret that opens nothing now.
    assert not path.exists()
    services = app.state.services  # type: ignore[attr-defined]
    with services.read() as tx:
        found = users.find_user(tx, username=WEB_ADMIN)
    assert found is not None and not found.must_change_password
    # A new sign-in with the new password lands on the admin pages.
    fresh = client_of(app)
    answer = sign_in_answer(fresh, WEB_ADMIN, NEW_PASSWORD)
    assert answer.status_code == 303 and answer.headers["location"] == "/admin/"
    assert fresh.get("/admin/users").status_code == 200
    # A later start no longer points at the file, and still says how to sign in.
    lines = list(ensure_first_web_admin(services, ENDPOINT))
    assert not any(FIRST_PASSWORD_LINE in line for line in lines)
    assert any(f"{ENDPOINT}/ui/ as {WEB_ADMIN}" in line for line in lines)


def test_an_admin_made_before_the_mark_is_marked_while_the_file_opens_it(
    app: object, settings: Settings
) -> None:
    # Upgraded from before migration 0047: `admin` unmarked, its file's password still works.
    services = app.state.services  # type: ignore[attr-defined]
    with services.write() as tx:
        tx.conn.execute(update(web_user).values(must_change_password=False))
    assert (
        signed_in(app, WEB_ADMIN, first_password(settings)).get("/admin/users").status_code == 200
    )

    lines = list(ensure_first_web_admin(services, ENDPOINT))

    assert any(FIRST_PASSWORD_LINE in line and "deleted" in line for line in lines)
    first_admin(app, settings)


def _users_cli(settings: Settings, *args: str, stdin: str) -> str:
    common = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        common += ["--database-url", settings.database_url]
    result = CliRunner().invoke(main, ["users", *args, *common], input=stdin)
    assert result.exit_code == 0, result.output
    return result.output


def test_set_password_temporary_makes_the_user_choose_their_own(
    app: object, settings: Settings
) -> None:
    output = _users_cli(
        settings, "set-password", AGENT, "--temporary", "--password-stdin", stdin=NEW_PASSWORD
    )
    assert "must choose a password of their own" in output
    agent = client_of(app)
    answer = sign_in_answer(agent, AGENT, NEW_PASSWORD)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/password"
    assert agent.get("/agent/").headers["location"] == "/ui/password"
    page = agent.get("/ui/password")
    answer = agent.post(
        "/ui/password",
        data={
            "csrf_token": csrf_of(page.text),
            "current_password": NEW_PASSWORD,
            "new_password": "yet another password",
            "new_password_confirm": "yet another password",
        },
    )
    assert answer.status_code == 303
    assert agent.get("/agent/").status_code == 200


def test_set_password_of_the_first_admin_deletes_the_file(app: object, settings: Settings) -> None:
    path = settings.data_dir / ADMIN_PASSWORD_FILE
    output = _users_cli(settings, "set-password", WEB_ADMIN, "--password-stdin", stdin=NEW_PASSWORD)
    assert not path.exists() and "Deleted" in output
    # Not --temporary: the password set is the admin's own from now on.
    admin = client_of(app)
    answer = sign_in_answer(admin, WEB_ADMIN, NEW_PASSWORD)
    assert answer.status_code == 303 and answer.headers["location"] == "/admin/"
