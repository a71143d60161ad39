"""A sign-in attempt whose form is refused unread (web.UI.read_form: 413 too large, 415 a file
upload, 400 the browser left or a form not in UTF-8) is audit-logged like every other attempt
(ui.auth_pages), with why and under no name: nothing of the form, which was not (or only
partly) read, is in the line. Such attempts used to leave no line at all, so a flood of them
did not show in the audit log."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from urllib.parse import quote_from_bytes, urlencode

import pytest
from starlette.testclient import TestClient
from tests.unit.ui.test_ui_client_disconnect import _post_then_leave
from tests.unit.ui.test_ui_form_limits import CHUNK, FORM, send
from tests.unit.ui.test_ui_pages import signed_in_admin

from openprofiles import audit
from openprofiles.settings import Settings
from openprofiles.ui.web import MAX_FORM_BYTES, MAX_FORM_FIELDS

SIGN_IN = "/ui/sign-in"
NAME = "someone.private@example.com"
SECRET = "a private password"


@pytest.fixture
def admin(sqlite_settings: Settings) -> Iterator[TestClient]:
    with signed_in_admin(sqlite_settings) as client:
        yield client


@pytest.fixture
def audit_lines(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    caplog.set_level(logging.INFO, logger=audit.logger.name)
    return lambda: [r.getMessage() for r in caplog.records if r.name == audit.logger.name]


def personal_fields(total: int) -> bytes:
    """A sign-in form that carries a name and a password, padded with fields to `total` bytes."""
    head = urlencode({"username": NAME, "password": SECRET}).encode()
    return head + b"&pad=" + b"a" * max(0, total - len(head) - 5)


def test_a_sign_in_form_refused_unread_is_logged_with_why_and_no_name(
    admin: TestClient, audit_lines: Callable[[], list[str]]
) -> None:
    big = personal_fields(MAX_FORM_BYTES + 1)
    declared = {"content-type": FORM, "content-length": str(len(big))}
    assert send(admin.app, SIGN_IN, declared, iter([big])).status == 413
    # Sent in chunks, declaring no length: read up to the limit, then refused.
    chunks = [big[i : i + CHUNK] for i in range(0, len(big), CHUNK)]
    assert send(admin.app, SIGN_IN, {"content-type": FORM}, iter(chunks)).status == 413
    fields = urlencode(
        [("username", NAME), ("password", SECRET)]
        + [(f"f{n}", "x") for n in range(MAX_FORM_FIELDS)]
    ).encode()
    assert send(admin.app, SIGN_IN, {"content-type": FORM}, iter([fields])).status == 413
    boundary = "b0undary"
    multipart = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="username"\r\n\r\n{NAME}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="password"\r\n\r\n{SECRET}\r\n'
        f"--{boundary}--\r\n"
    ).encode()
    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    assert send(admin.app, SIGN_IN, headers, iter([multipart])).status == 415
    sent = _post_then_leave(admin.app, SIGN_IN, cookie="")
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [400]
    # Not UTF-8 (a script's form): a 400 too, told apart from the browser that left.
    not_utf8 = b"username=" + quote_from_bytes(NAME.encode()).encode() + b"&password=%FF"
    assert send(admin.app, SIGN_IN, {"content-type": FORM}, iter([not_utf8])).status == 400

    assert audit_lines() == [
        "ui POST /ui/sign-in user=- status=413 result=form-too-large",
        "ui POST /ui/sign-in user=- status=413 result=form-too-large",
        "ui POST /ui/sign-in user=- status=413 result=form-too-large",
        "ui POST /ui/sign-in user=- status=415 result=form-multipart",
        "ui POST /ui/sign-in user=- status=400 result=form-incomplete",
        "ui POST /ui/sign-in user=- status=400 result=form-not-utf8",
    ]


def test_a_signed_in_pages_form_refused_unread_is_still_logged_once(
    admin: TestClient, audit_lines: Callable[[], list[str]]
) -> None:
    """A signed-in page's refused form was logged already, under its user (ui.web.UI.page): the
    sign-in's line is for sign-in only."""
    page = "/admin/users"
    response = admin.post(
        page, content=b"x" * 10, headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert response.status_code == 415
    lines = audit_lines()
    assert len(lines) == 1 and lines[0].startswith(f"ui POST {page} user=user-")
    assert lines[0].endswith("status=415")
