"""The pages read a form within limits (web.UI.read_form): a body declared or sent larger than
MAX_FORM_BYTES is refused with 413 before (or as soon as) it passes the limit, a multipart form
with 415 unread, and a form of too many fields with 413; a form of no known session is not
read at all. Starlette's defaults read a thousand fields of 1 MB each before any check, with no
account needed (the sign-in form), and spooled a multipart form's files to disk unbounded. The
largest forms the pages make still go through.

The app is driven directly over ASGI here, so each test sees how much of the body the app
asked for: a refusal must come without reading it."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import update
from starlette.testclient import TestClient
from tests.unit.ingest.conftest import DOMAIN, make_domain
from tests.unit.ui.test_ui_pages import PASSWORD, _FormFields, csrf_of, signed_in_admin

from openprofiles.profiles import service as profiles
from openprofiles.settings import Settings
from openprofiles.store.schema import web_session
from openprofiles.ui import profile_form as pf
from openprofiles.ui import web
from openprofiles.ui.web import (
    MAX_FORM_BYTES,
    MAX_FORM_FIELDS,
    SESSION_COOKIE,
    cookie_name,
)
from openprofiles.users import service as users

CHUNK = 64 * 1024
FORM = "application/x-www-form-urlencoded"
NEW_PROFILE = f"/agent/domains/{DOMAIN}/profiles/new"
# A character that takes the most bytes url-encoded: 4 UTF-8 bytes, each as %XX.
WIDEST = "\U0001f600"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: str
    # How much of the request's body the app asked for.
    read_bytes: int = 0
    read_messages: int = 0
    cookies: list[str] = field(default_factory=list)


def send(app: Any, path: str, headers: dict[str, str], chunks: Iterator[bytes]) -> Answer:
    """POST `chunks` as the body (each an ASGI message, the last with more_body False) to `app`,
    with `headers`; the answer and how much of the body the app read."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")]
        + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    answer = Answer(0, {}, "")
    pending = list(chunks)
    body = bytearray()

    async def receive() -> dict[str, Any]:
        if not pending:
            return {"type": "http.disconnect"}
        chunk = pending.pop(0)
        answer.read_messages += 1
        answer.read_bytes += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    async def reply(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            for name, value in message["headers"]:
                if name == b"set-cookie":
                    answer.cookies.append(value.decode())
                answer.headers[name.decode()] = value.decode()
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    # In a thread of its own: the test's thread may already run an event loop.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, app(scope, receive, reply)).result()
    answer.body = body.decode()
    return answer


def many_fields(total: int) -> Iterator[bytes]:
    """A form of `total` bytes, one field a chunk (none near a field's own limit)."""
    sent = 0
    n = 0
    while sent < total:
        chunk = f"&f{n}=".encode() + b"a" * (CHUNK - 16)
        n += 1
        sent += len(chunk)
        yield chunk


def session_cookie(client: TestClient) -> str:
    name = cookie_name(client.app.state.services, SESSION_COOKIE)  # type: ignore[attr-defined]
    return f"{name}={client.cookies.get(name)}"


@pytest.fixture
def admin(sqlite_settings: Settings) -> Iterator[TestClient]:
    with signed_in_admin(sqlite_settings) as client:
        make_domain(client.app.state.services)  # type: ignore[attr-defined]
        yield client


def assert_refused_page(answer: Answer, status: int, title: str) -> None:
    assert answer.status == status
    assert title in answer.body and "Nothing was saved." in answer.body
    # Nothing set or kept for later, and the rest of the body is not awaited.
    assert answer.cookies == []
    assert answer.headers["connection"] == "close"


@pytest.mark.parametrize("signed_in", [False, True], ids=["sign-in", "signed-in page"])
def test_a_form_declared_too_large_is_refused_unread(admin: TestClient, signed_in: bool) -> None:
    path, headers = "/ui/sign-in", {"content-type": FORM}
    if signed_in:
        path, headers = NEW_PROFILE, {**headers, "cookie": session_cookie(admin)}
    declared = {**headers, "content-length": str(MAX_FORM_BYTES + 1)}

    answer = send(admin.app, path, declared, many_fields(MAX_FORM_BYTES + 1))

    assert_refused_page(answer, 413, "This form is too large")
    assert answer.read_messages == 0
    # At the limit itself, the form is read (and then refused for its CSRF token).
    at_limit = send(admin.app, path, headers, many_fields(MAX_FORM_BYTES - CHUNK))
    assert at_limit.status == 403 and at_limit.read_bytes > MAX_FORM_BYTES - 2 * CHUNK


@pytest.mark.parametrize("path", ["/ui/sign-in", NEW_PROFILE])
def test_a_form_sent_in_chunks_is_read_only_to_the_limit(admin: TestClient, path: str) -> None:
    """A chunked body declares no length: the bytes are counted as they come, and reading stops
    once they pass the limit (it used to read 1000 fields of up to 1 MB each: 8 MB here)."""
    headers = {"content-type": FORM, "cookie": session_cookie(admin)}

    answer = send(admin.app, path, headers, many_fields(8 * 1024 * 1024))

    assert_refused_page(answer, 413, "This form is too large")
    assert MAX_FORM_BYTES < answer.read_bytes <= MAX_FORM_BYTES + CHUNK


def test_a_multipart_form_is_refused_unread(admin: TestClient) -> None:
    """No page sends a file; Starlette spooled a multipart form's file parts to disk, unbounded."""
    boundary = "x-boundary"
    part = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="upload"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + b"\0" * CHUNK
    headers = {"content-type": f"Multipart/Form-Data; boundary={boundary}"}
    for path in ("/ui/sign-in", NEW_PROFILE):
        headers["cookie"] = session_cookie(admin)

        answer = send(admin.app, path, headers, iter([part] * 8))

        assert_refused_page(answer, 415, "This form cannot be read")
        assert answer.read_messages == 0


def test_a_form_of_too_many_fields_is_refused(admin: TestClient) -> None:
    body = urlencode([(f"f{n}", "x") for n in range(MAX_FORM_FIELDS + 1)]).encode()

    answer = send(admin.app, "/ui/sign-in", {"content-type": FORM}, iter([body]))

    assert_refused_page(answer, 413, "This form is too large")


def test_a_form_of_no_known_session_is_not_read(admin: TestClient) -> None:
    """A form sent after a session ended is kept for its user (web.UI.keep_form); with no known
    session it is not kept, and now not read either: anyone could send one."""
    headers = {"content-type": FORM, "sec-fetch-site": "same-origin"}
    name = cookie_name(admin.app.state.services, SESSION_COOKIE)  # type: ignore[attr-defined]
    for cookie in ({}, {"cookie": f"{name}=not-a-session"}):
        answer = send(admin.app, NEW_PROFILE, {**headers, **cookie}, many_fields(4 * CHUNK))

        assert answer.status == 303 and answer.headers["location"].startswith("/ui/sign-in?")
        assert answer.read_messages == 0


def test_a_form_too_large_sent_after_the_session_ended_is_not_kept(admin: TestClient) -> None:
    cookie = session_cookie(admin)
    end_sessions(admin)
    headers = {
        "content-type": FORM,
        "sec-fetch-site": "same-origin",
        "cookie": cookie,
    }

    answer = send(admin.app, NEW_PROFILE, headers, many_fields(8 * 1024 * 1024))

    assert_refused_page(answer, 413, "This form is too large")
    assert "kept_form" not in answer.body
    assert answer.read_bytes <= MAX_FORM_BYTES + CHUNK


def end_sessions(client: TestClient) -> None:
    with client.app.state.services.write() as tx:  # type: ignore[attr-defined]
        tx.conn.execute(
            update(web_session).values(
                last_seen_at=tx.now - users.SESSION_IDLE - timedelta(minutes=1)
            )
        )


def widest_profile() -> dict[str, Any]:
    """A profile at every limit of the profile form, in characters that take the most bytes."""
    fields: dict[str, Any] = {
        name: WIDEST * (pf.MAX_ADDITIONAL_INFORMATION if name == "AdditionalInformation" else 255)
        for name in pf.STRING_FORM_FIELDS
    }
    fields.update(Gender="UNSPECIFIED", PartyType="INDIVIDUAL")
    fields["Address"] = {part: WIDEST * pf.MAX_LENGTH for part, _ in pf.ADDRESS_FORM_PARTS}
    fields["Attributes"] = {
        chr(0x1F300 + n) + WIDEST * (pf.MAX_LENGTH - 1): WIDEST * pf.MAX_LENGTH
        for n in range(pf.MAX_ATTRIBUTES)
    }
    return fields


def fields_of(html: str) -> dict[str, str]:
    parser = _FormFields()
    parser.feed(html)
    return parser.fields


def test_the_largest_forms_of_the_pages_go_through(admin: TestClient) -> None:
    """The edit form of a profile at the form's limits (every field twice: as typed and as
    shown), saved; then, sent after its session ended, kept in the sign-in form, signed in with
    and taken back to its page. The limits' comment in ui.web gives these sizes."""
    with admin.app.state.services.write() as tx:  # type: ignore[attr-defined]
        profile_id = profiles.create_profile(
            tx, domain_name=DOMAIN, fields=widest_profile()
        ).profile_id
    url = f"/agent/domains/{DOMAIN}/profiles/{profile_id}/edit"
    form = fields_of(admin.get(url).text)
    edited = {**form, "FirstName": "Ada"}
    assert 1024 * 1024 < len(urlencode(edited)) <= MAX_FORM_BYTES
    assert len(edited) <= MAX_FORM_FIELDS

    assert admin.post(url, data=edited).status_code == 303

    form = fields_of(admin.get(url).text)
    end_sessions(admin)
    kept = admin.post(
        url, data={**form, "FirstName": WIDEST * 255}, headers={"Sec-Fetch-Site": "same-origin"}
    )
    assert kept.status_code == 200 and "kept_form" in fields_of(kept.text)
    sign_in = {**fields_of(kept.text), "username": "boss", "password": PASSWORD}
    back = admin.post("/ui/sign-in", data=sign_in)
    assert back.status_code == 200 and "Back to the form" in back.text
    reopened = admin.post(url, data=fields_of(back.text))
    assert reopened.status_code == 200
    assert fields_of(reopened.text)["FirstName"] == WIDEST * 255
    assert csrf_of(reopened.text)


def test_every_form_the_pages_read_goes_through_the_limits() -> None:
    """Starlette's request.form() (or body(), json(), stream()) anywhere else in the pages would
    read a form with its defaults again."""
    readers = re.compile(r"\.(form|body|json|stream)\(")
    found = {
        f"{path.name}:{number}"
        for path in Path(web.__file__).parent.glob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if readers.search(line)
    }
    assert len(found) == 1 and next(iter(found)).startswith("web.py:")
