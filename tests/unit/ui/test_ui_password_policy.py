"""The password policy (users.password_policy, NIST SP 800-63B) wherever a password is set: a user
created on the users page or with `openprofiles users create`, a new password set by an
administrator (page or `users set-password`), and a user changing their own. Weak passwords used
to pass anywhere as long as they had 8 characters: "password1", the username itself."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient
from tests.unit.ui.test_ui_sessions import csrf_of, sign_in

from openprofiles.app import create_app
from openprofiles.cli import main
from openprofiles.context import Services
from openprofiles.errors import BadRequest
from openprofiles.settings import Settings
from openprofiles.users import service as users

# users.password_policy.MAX_LENGTH
MAX_LENGTH = 256
GOOD = "violet kettle orbit"

# (username, refused password, what the refusal says)
REFUSED = [
    ("ana", "password1", "most commonly used"),
    # Case changed, and a year and "!" added to meet a composition rule: still the list's.
    ("ana", "Password2024!", "most commonly used"),
    ("ana", "MONKEY123", "most commonly used"),
    ("ana", "qwertyuiop", "most commonly used"),
    ("ana.lopez", "ana.lopez", "not the username"),
    # A short name is not looked for inside a password, but with digits added it is refused.
    ("ana", "Ana12345", "not the username"),
    ("ana.lopez", "my-Ana.Lopez-2024", "not the username"),
    # An e-mail address's local part is the name too.
    ("mark@example.com", "markmarkmark!", "not the username"),
    ("ana", "openprofiles-2024", "name of this service"),
    ("ana", "x" * (MAX_LENGTH + 1), f"at most {MAX_LENGTH}"),
    ("ana", "short", "at least 8"),
    ("ana", "zzzzzzzzzzzz", "one character repeated"),
]


@pytest.mark.parametrize(("username", "password", "says"), REFUSED)
def test_the_policy_refuses_weak_passwords_everywhere_a_password_is_set(
    services: Services, username: str, password: str, says: str
) -> None:
    with services.write() as tx, pytest.raises(BadRequest, match=says):
        users.create_user(tx, username=username, password=password, role="agent")
    problem = users.check_password(password, username=username)
    assert problem is not None and says in problem
    with pytest.raises(BadRequest, match=says):
        users.new_password(password, username=username)
    with services.write() as tx:
        users.create_user(tx, username=username, password=GOOD, role="agent")
    with services.write() as tx, pytest.raises(BadRequest, match=says):
        users.set_password(tx, username=username, password=password)
    with services.write() as tx, pytest.raises(BadRequest, match=says):
        users.change_own_password(
            tx, username=username, current=GOOD, new=password, session="s", address=None
        )
    with services.write() as tx:  # nothing changed
        assert users.verify_password(tx, username=username, password=GOOD) is not None


@pytest.mark.parametrize(
    "password",
    [
        GOOD,
        "correct horse battery staple",
        "Tr0ub4dor&3x",
        # The longest taken: a pass phrase of several sentences.
        (GOOD + ", ") * (MAX_LENGTH // len(GOOD + ", ")) + "!" * (MAX_LENGTH % len(GOOD + ", ")),
        # A short name is in countless words: not looked for inside one.
        "alas, poor yorick",
        "banana split sundae",
    ],
)
def test_the_policy_takes_passwords_nobody_commonly_uses(services: Services, password: str) -> None:
    for name in ("al", "ana"):
        assert users.check_password(password, username=name) is None
    with services.write() as tx:
        users.create_user(tx, username="ana", password=password, role="agent")
    with services.write() as tx:
        assert users.verify_password(tx, username="ana", password=password) is not None


@pytest.fixture
def admin(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    with app.state.services.write() as tx:
        users.create_user(tx, username="boss", password=GOOD, role="admin")
    with TestClient(app, follow_redirects=False) as client:
        sign_in(client, "boss", GOOD)
        yield client
    app.state.services.database.dispose()


def field_error(html: str, field: str) -> str:
    match = re.search(rf'id="{field}-error"[^>]*>(.*?)</', html, re.S)
    assert match, f"no error shown for {field}"
    return match.group(1)


def test_the_pages_refuse_a_common_password_with_a_clear_message(admin: TestClient) -> None:
    page = admin.get("/admin/users")
    created = admin.post(
        "/admin/users",
        data={
            "csrf_token": csrf_of(page.text),
            "username": "ana",
            "role": "agent",
            "password": "iloveyou1",
            "password_confirm": "iloveyou1",
        },
    )
    assert created.status_code == 400
    assert "most commonly used" in field_error(created.text, "password")
    with admin.app.state.services.read() as tx:  # type: ignore[attr-defined]
        assert users.find_user(tx, username="ana") is None

    own = admin.get("/ui/password")
    changed = admin.post(
        "/ui/password",
        data={
            "csrf_token": csrf_of(own.text),
            "current_password": GOOD,
            "new_password": "boss-of-all",
            "new_password_confirm": "boss-of-all",
        },
    )
    assert changed.status_code == 400
    assert "not the username" in field_error(changed.text, "new_password")


def test_the_users_commands_refuse_a_common_password(
    settings: Settings, services: Services
) -> None:
    # `services`: the installation the commands act on.
    common = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        common += ["--database-url", settings.database_url]

    def run(*args: str, stdin: str) -> tuple[int, str]:
        result = CliRunner().invoke(main, ["users", *args, *common], input=stdin)
        return result.exit_code, result.output

    code, output = run(
        "create", "--username", "ana", "--role", "agent", "--password-stdin", stdin="letmein123\n"
    )
    assert code != 0 and "This password is one of the most commonly used" in output
    code, output = run(
        "create", "--username", "ana", "--role", "agent", "--password-stdin", stdin=GOOD + "\n"
    )
    assert code == 0, output
    code, output = run("set-password", "ana", "--password-stdin", stdin="Ana12345\n")
    assert code != 0 and "not the username" in output
