"""The audit log of the web pages (openprofiles.audit, written by ui.web.UI.page): one line for
each POST of a signed-in user — the username, the page's path and the status, refusals
included — and none for the pages they only look at, but those that show a customer's personal
data (test_ui_audit_reads)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator

import pytest
from starlette.testclient import TestClient
from tests.unit.integrations.integ_helpers import make_domain
from tests.unit.ui.test_ui_sessions import PASSWORD, csrf_of, sign_in

from openprofiles import audit
from openprofiles.app import create_app
from openprofiles.settings import Settings
from openprofiles.users import service as users


@pytest.fixture
def client(sqlite_settings: Settings) -> Iterator[TestClient]:
    app = create_app(sqlite_settings)
    with app.state.services.write() as tx:
        users.create_user(tx, username="boss", password=PASSWORD, role="admin")
        users.create_user(tx, username="ana", password=PASSWORD, role="agent")
    with TestClient(app, follow_redirects=False) as test_client:
        yield test_client
    app.state.services.database.dispose()


@pytest.fixture
def audit_lines(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    caplog.set_level(logging.INFO, logger=audit.logger.name)
    return lambda: [r.getMessage() for r in caplog.records if r.name == audit.logger.name]


def test_signed_in_posts_are_logged_with_user_path_and_status(
    client: TestClient, audit_lines: Callable[[], list[str]]
) -> None:
    sign_in(client, "boss")
    page = client.get("/admin/credentials")
    created = client.post(
        "/admin/credentials",
        data={"role": "agent", "csrf_token": csrf_of(page.text), "your_password": PASSWORD},
    )
    assert created.status_code == 200
    # A form from no page of this session is refused, and the refusal logged.
    assert client.post("/admin/credentials", data={"role": "agent"}).status_code == 403
    assert client.post("/ui/sign-out", data={"csrf_token": csrf_of(page.text)}).status_code == 303
    # An agent posting to an administrator's page.
    sign_in(client, "ana")
    home = client.get("/agent/")
    refused = client.post(
        "/admin/credentials", data={"role": "admin", "csrf_token": csrf_of(home.text)}
    )
    assert refused.status_code == 403

    cipher = client.app.state.services.keys.system_cipher()  # type: ignore[attr-defined]
    boss, ana = users.audit_name(cipher, "boss"), users.audit_name(cipher, "ana")
    assert audit_lines() == [
        # Sign-ins are logged too (test_ui_signin_audit).
        f"ui POST /ui/sign-in user={boss} status=303 result=signed-in",
        f"ui POST /admin/credentials user={boss} status=200",
        f"ui POST /admin/credentials user={boss} status=403",
        f"ui POST /ui/sign-out user={boss} status=303",
        f"ui POST /ui/sign-in user={ana} status=303 result=signed-in",
        f"ui POST /admin/credentials user={ana} status=403",
    ]
    # Usernames are personal data: the log names users by a keyed digest, stable per user.
    assert boss != ana and re.fullmatch(r"user-[0-9a-f]{12}", boss)
    assert "boss" not in "\n".join(audit_lines()) and "ana" not in "\n".join(audit_lines())


def test_a_line_break_in_the_path_stays_out_of_the_log(
    audit_lines: Callable[[], list[str]],
) -> None:
    """A path is written percent-encoded (an HTTP client may send a decoded line break that
    Starlette passes on as it is; httpx would not send one, hence the direct call)."""
    audit.page_post(user="user-0a1b", path="/admin/domains/x\nforged line/dlq/retry", status=303)
    assert audit_lines() == [
        "ui POST /admin/domains/x%0Aforged%20line/dlq/retry user=user-0a1b status=303"
    ]


def test_users_list_shows_each_users_audit_name(client: TestClient) -> None:
    """The audit log names users by a keyed digest: the operator finds whose it is here."""
    from click.testing import CliRunner

    from openprofiles.cli import main

    settings = client.app.state.services.settings  # type: ignore[attr-defined]
    listed = CliRunner().invoke(main, ["users", "list", "--data-dir", str(settings.data_dir)])
    assert listed.exit_code == 0, listed.output
    cipher = client.app.state.services.keys.system_cipher()  # type: ignore[attr-defined]
    # Under its header (USERNAME ... AUDIT NAME).
    header, *lines = listed.output.splitlines()
    assert header.endswith("AUDIT NAME")
    rows = {line.split()[0]: line.split()[-1] for line in lines}
    assert rows == {name: users.audit_name(cipher, name) for name in ("ana", "boss")}


def test_a_value_typed_into_a_pages_address_is_not_written(
    client: TestClient, audit_lines: Callable[[], list[str]]
) -> None:
    """An email address where a profile id goes (a page's address is the user's to type) is
    written "(not valid)", as an API request's is; the domain name, in its form and existing, as
    it is."""
    make_domain(client.app.state.services, "shop")  # type: ignore[attr-defined]
    sign_in(client, "ana")
    home = client.get("/agent/", follow_redirects=True)  # to the one domain's page
    refused = client.post(
        "/agent/domains/shop/profiles/ada.lovelace@example.com/edit",
        data={"csrf_token": csrf_of(home.text)},
    )
    assert refused.status_code == 404
    refused = client.post(
        "/agent/domains/shop/profiles/0123456789abcdef0123456789abcdef/edit",
        data={"csrf_token": "not this session's"},
    )
    assert refused.status_code == 403

    cipher = client.app.state.services.keys.system_cipher()  # type: ignore[attr-defined]
    ana = users.audit_name(cipher, "ana")
    lines = audit_lines()
    assert "lovelace" not in "\n".join(lines)
    # The POSTs' (the domain's page, opened for its form, writes a GET's line).
    assert [line for line in lines if line.startswith("ui POST ")][1:] == [
        f"ui POST /agent/domains/shop/profiles/(not%20valid)/edit user={ana} status=404",
        f"ui POST /agent/domains/shop/profiles/0123456789abcdef0123456789abcdef/edit "
        f"user={ana} status=403",
    ]


def test_a_name_of_no_domain_in_a_pages_address_is_not_written(
    client: TestClient, audit_lines: Callable[[], list[str]]
) -> None:
    """A domain's name has a name's form, which a customer's surname has too: a POST whose
    address names no domain writes "(not valid)" for it, whatever the page answered (an agent
    refused an administrator's page, 403, as much as a domain not found, 404). Before, it was
    written as typed."""
    sign_in(client, "ana")
    home = client.get("/agent/")
    token = {"csrf_token": csrf_of(home.text)}
    assert client.post("/agent/domains/Quist/profiles/new", data=token).status_code == 404
    assert client.post("/admin/domains/Quist/dlq/retry", data=token).status_code == 403

    cipher = client.app.state.services.keys.system_cipher()  # type: ignore[attr-defined]
    ana = users.audit_name(cipher, "ana")
    assert audit_lines()[1:] == [
        f"ui POST /agent/domains/(not%20valid)/profiles/new user={ana} status=404",
        f"ui POST /admin/domains/(not%20valid)/dlq/retry user={ana} status=403",
    ]


def test_a_users_sealed_reference_is_written_sealed(
    client: TestClient, audit_lines: Callable[[], list[str]]
) -> None:
    """A user's page carries the username sealed in its address: a POST there writes
    "(sealed)", not "(not valid)" (it was a valid reference) and never the token."""
    sign_in(client, "boss")
    users_page = client.get("/admin/users").text
    match = re.search(r'href="(/admin/users/[^"/]+)" aria-label="Manage user ana"', users_page)
    assert match, users_page
    manage = match.group(1)
    changed = client.post(
        f"{manage}/role",
        data={
            "csrf_token": csrf_of(users_page),
            "role": "admin",
            "role_your_password": PASSWORD,
        },
    )
    assert changed.status_code == 303, changed.text

    cipher = client.app.state.services.keys.system_cipher()  # type: ignore[attr-defined]
    boss = users.audit_name(cipher, "boss")
    assert audit_lines()[1:] == [f"ui POST /admin/users/(sealed)/role user={boss} status=303"]
    assert manage.rsplit("/", 1)[1] not in "\n".join(audit_lines())
