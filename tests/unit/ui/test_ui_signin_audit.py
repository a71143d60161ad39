"""Sign-in attempts in the audit log (openprofiles.audit.sign_in, written by ui.auth_pages):
succeeded, failed (a wrong password and an unknown name alike) and refused by the throttle,
each under the keyed audit name of the name typed, never the name or the password; signing out
is logged as every signed-in POST is. Sign-ins used to leave no line at all."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator

import pytest
from starlette.testclient import TestClient
from tests.unit.ui.test_ui_sessions import PASSWORD, csrf_of

from openprofiles import audit
from openprofiles.app import create_app
from openprofiles.settings import Settings
from openprofiles.users import service as users
from openprofiles.users import throttle

WRONG = "wrong password 123"


@pytest.fixture
def client(sqlite_settings: Settings) -> Iterator[TestClient]:
    app = create_app(sqlite_settings)
    with app.state.services.write() as tx:
        users.create_user(tx, username="ana", password=PASSWORD, role="agent")
    with TestClient(app, follow_redirects=False) as test_client:
        yield test_client
    app.state.services.database.dispose()


@pytest.fixture
def audit_lines(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    caplog.set_level(logging.INFO, logger=audit.logger.name)
    return lambda: [r.getMessage() for r in caplog.records if r.name == audit.logger.name]


def attempt(client: TestClient, username: str, password: str) -> int:
    page = client.get("/ui/sign-in")
    data = {"username": username, "password": password, "csrf_token": csrf_of(page.text)}
    return client.post("/ui/sign-in", data=data).status_code


def audit_name(client: TestClient, username: str) -> str:
    cipher = client.app.state.services.keys.system_cipher()  # type: ignore[attr-defined]
    return users.audit_name(cipher, username)


def test_sign_ins_and_sign_out_are_logged_without_names_or_passwords(
    client: TestClient, audit_lines: Callable[[], list[str]]
) -> None:
    assert attempt(client, "ana", PASSWORD) == 303
    home = client.get("/agent/")
    assert client.post("/ui/sign-out", data={"csrf_token": csrf_of(home.text)}).status_code == 303
    assert attempt(client, "ana", WRONG) == 401
    assert attempt(client, "nobody@example.com", WRONG) == 401
    # A sign-in form failing its own token check is no attempt (no password is checked, and
    # anyone can post one, to no effect): not logged.
    forged = {"username": "ana", "password": PASSWORD, "csrf_token": "forged"}
    assert client.post("/ui/sign-in", data=forged).status_code == 403

    ana, nobody = audit_name(client, "ana"), audit_name(client, "nobody@example.com")
    assert audit_lines() == [
        f"ui POST /ui/sign-in user={ana} status=303 result=signed-in",
        f"ui POST /ui/sign-out user={ana} status=303",
        f"ui POST /ui/sign-in user={ana} status=401 result=failed",
        # An unknown name reads as a wrong password does: the line does not say which.
        f"ui POST /ui/sign-in user={nobody} status=401 result=failed",
    ]
    assert re.fullmatch(r"user-[0-9a-f]{12}", nobody) and nobody != ana
    logged = "\n".join(audit_lines())
    for secret in ("ana", "nobody", "example.com", PASSWORD, WRONG, "testclient"):
        assert secret not in logged


def test_a_sign_in_the_throttle_refuses_is_logged_as_locked(
    client: TestClient, audit_lines: Callable[[], list[str]]
) -> None:
    for _ in range(throttle.USER_LIMIT):
        assert attempt(client, "ana", WRONG) == 401
    # Locked now: refused without checking the password, even the right one.
    assert attempt(client, "ana", PASSWORD) == 429

    ana = audit_name(client, "ana")
    assert audit_lines() == [f"ui POST /ui/sign-in user={ana} status=401 result=failed"] * (
        throttle.USER_LIMIT
    ) + [f"ui POST /ui/sign-in user={ana} status=429 result=locked"]
    assert PASSWORD not in "\n".join(audit_lines())
