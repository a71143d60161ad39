"""What `serve` says about signing in is true when it says it.

A newcomer review: every restart with --first-run-admin printed "Sign in to the web pages at
.../ui/ as admin" after the web user admin had been deleted, and "Use it from a shell with:
... AWS_SHARED_CREDENTIALS_FILE=.../credentials" after the key in that file had been revoked;
and a fresh server without --first-run-admin, which nobody could sign in to nor call, said
nothing of it. Each runs on SQLite and PostgreSQL, through the commands an operator types."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from tests.support.ports import free_port

from openprofiles import serving
from openprofiles.cli import main
from openprofiles.cli_support import storage_options_given
from openprofiles.settings import Settings

pytestmark = pytest.mark.usefixtures("logging_as_it_was")

SIGN_IN_AS_ADMIN = "/ui/ as admin\n"
FIRST_PASSWORD = "(the first password is in"
USE_THE_FILE = "AWS_SHARED_CREDENTIALS_FILE="
NOBODY = "No one can sign in or call the API yet"


def _storage(settings: Settings) -> list[str]:
    options = ["--data-dir", str(settings.data_dir)]
    if settings.database_url is not None:
        options += ["--database-url", settings.database_url]
    return options


def _given(settings: Settings) -> str:
    """The storage options `_serve` gives, as the commands serve names must repeat them."""
    return storage_options_given(settings.data_dir, settings.database_url)


def _serve(settings: Settings, monkeypatch: pytest.MonkeyPatch, *options: str) -> str:
    """What `serve` prints before it serves (it listens, and stops there)."""
    monkeypatch.setattr(serving, "run", lambda settings, listeners: None)
    arguments = ["serve", "--port", str(free_port()), *_storage(settings), *options]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    return result.stdout


def _run(settings: Settings, *arguments: str, stdin: str | None = None) -> str:
    result = CliRunner().invoke(main, [*arguments, *_storage(settings)], input=stdin)
    assert result.exit_code == 0, result.output
    return result.stdout


def _another_web_admin(settings: Settings) -> None:
    _run(
        settings,
        *("users", "create", "--username", "boss", "--role", "admin", "--password-stdin"),
        stdin="another good password\n",
    )


def _saved_key_id(settings: Settings) -> str:
    written = (settings.data_dir / "credentials").read_text()
    return written.split("aws_access_key_id = ")[1].split()[0]


def test_a_deleted_web_admin_is_not_offered_to_sign_in_as(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _serve(settings, monkeypatch, "--first-run-admin")
    assert SIGN_IN_AS_ADMIN in first and FIRST_PASSWORD in first
    _another_web_admin(settings)
    _run(settings, "users", "delete", "admin", "--yes")

    again = _serve(settings, monkeypatch, "--first-run-admin")

    assert SIGN_IN_AS_ADMIN not in again and FIRST_PASSWORD not in again
    assert "/ui/ as an administrator (openprofiles users list names them)." in again
    # Nor made again: an administrator is left.
    assert "Created the web user" not in again


def test_an_admin_made_an_agent_is_not_offered_to_sign_in_as(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _serve(settings, monkeypatch, "--first-run-admin")
    _another_web_admin(settings)
    _run(settings, "users", "set-role", "admin", "agent")

    again = _serve(settings, monkeypatch, "--first-run-admin")

    assert SIGN_IN_AS_ADMIN not in again and FIRST_PASSWORD not in again
    assert "/ui/ as an administrator" in again


def test_a_changed_first_password_is_no_longer_pointed_to(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _serve(settings, monkeypatch, "--first-run-admin")
    again = _serve(settings, monkeypatch, "--first-run-admin")
    # Still the password: still said where it is.
    assert SIGN_IN_AS_ADMIN in again and FIRST_PASSWORD in again
    _run(
        settings,
        *("users", "set-password", "admin", "--password-stdin"),
        stdin="a password of my own\n",
    )

    changed = _serve(settings, monkeypatch, "--first-run-admin")

    assert SIGN_IN_AS_ADMIN in changed
    assert FIRST_PASSWORD not in changed


def test_a_revoked_key_in_the_credentials_file_is_not_offered(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _serve(settings, monkeypatch, "--first-run-admin")
    assert USE_THE_FILE in first
    revoked = _saved_key_id(settings)
    assert revoked in _run(settings, "credentials", "list")
    again = _serve(settings, monkeypatch, "--first-run-admin")
    assert USE_THE_FILE in again and "Created an admin credential" not in again
    _run(settings, "credentials", "create", "--role", "admin")
    _run(settings, "credentials", "delete", revoked)

    after = _serve(settings, monkeypatch, "--first-run-admin")

    assert USE_THE_FILE not in after and "customer-profiles list-domains" not in after
    path = (settings.data_dir / "credentials").resolve()
    assert (
        f"The access key in {path} is no longer one of this server's (deleted?): use another "
        f"admin key, or create one with: openprofiles credentials create{_given(settings)} "
        "--role admin"
    ) in after
    # Another admin key exists: none is made, and the file is left as it is.
    assert "Created an admin credential" not in after
    assert _saved_key_id(settings) == revoked


def test_a_non_ascii_secret_in_the_credentials_file_is_not_offered(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A review: compare_digest on str raised TypeError for a non-ASCII character, and the server
    # did not start.
    _serve(settings, monkeypatch, "--first-run-admin")
    path = settings.data_dir / "credentials"
    written = path.read_text()
    secret = written.split("aws_secret_access_key = ")[1].split()[0]
    path.write_text(written.replace(secret, secret[:-1] + "é"), encoding="utf-8")

    after = _serve(settings, monkeypatch, "--first-run-admin")

    assert USE_THE_FILE not in after
    assert f"The access key in {path.resolve()} is no longer one of this server's" in after


def test_the_last_admin_key_revoked_a_new_one_is_made_and_offered(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _serve(settings, monkeypatch, "--first-run-admin")
    revoked = _saved_key_id(settings)
    _run(settings, "credentials", "delete", revoked)

    after = _serve(settings, monkeypatch, "--first-run-admin")

    made = _saved_key_id(settings)
    assert made != revoked
    assert f"Created an admin credential {made}" in after and USE_THE_FILE in after


def test_a_server_nobody_can_use_says_how_to_make_the_first_admin(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh = _serve(settings, monkeypatch)

    hint = [line for line in fresh.splitlines() if NOBODY in line]
    # With the storage options serve was given: from another directory the commands would
    # find no installation (an operator walk).
    given = _given(settings)
    assert hint == [
        "No one can sign in or call the API yet: start once with --first-run-admin, or create "
        f"an administrator with: openprofiles users create{given} --username NAME --role admin; "
        f"and an access key with: openprofiles credentials create{given} --role admin"
    ]
    assert " --data-dir " in given
    # Said before the server says it listens, with what it says about itself.
    listening = next(n for n, line in enumerate(fresh.splitlines()) if "listening on" in line)
    assert fresh.splitlines().index(hint[0]) < listening


def test_a_server_with_a_user_or_a_key_gives_no_such_hint(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first run makes both, and says how to use them instead.
    assert NOBODY not in _serve(settings, monkeypatch, "--first-run-admin")
    _run(settings, "credentials", "delete", _saved_key_id(settings))
    # A web user alone: someone can sign in.
    assert NOBODY not in _serve(settings, monkeypatch)


def test_a_server_with_only_a_key_gives_no_such_hint(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert NOBODY in _serve(settings, monkeypatch)
    _run(settings, "credentials", "create", "--role", "agent")
    assert NOBODY not in _serve(settings, monkeypatch)


def test_the_first_admin_key_and_web_user_are_audit_logged_without_secrets(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A review: `serve --first-run-admin` made an admin API key and the web user admin, and the
    # audit log, which has a line for each `credentials create` and `users create`, had none.
    _serve(settings, monkeypatch, "--first-run-admin")

    made = _saved_key_id(settings)
    log = (settings.data_dir / "audit.log").read_text()
    lines = [line for line in log.splitlines() if "first-run-admin created" in line]
    assert len(lines) == 2, log
    assert f"first-run-admin created credential={made} role=admin uid=" in lines[0]
    assert re.search(
        r"first-run-admin created web-user=user-[0-9a-f]{12} role=admin uid=", lines[1]
    )
    written = (settings.data_dir / "credentials").read_text()
    secret = written.split("aws_secret_access_key = ")[1].split()[0]
    password = (settings.data_dir / "admin-password").read_text().strip()
    assert secret not in log and password not in log
    # Made once: a restart that makes nothing writes no such line.
    _serve(settings, monkeypatch, "--first-run-admin")
    again = (settings.data_dir / "audit.log").read_text()
    assert again.count("first-run-admin created") == 2


def test_a_deleted_credentials_file_with_an_admin_key_left_is_said_so(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A review: the restart said "Create credentials with: ..." though an admin key existed.
    _serve(settings, monkeypatch, "--first-run-admin")
    kept = _saved_key_id(settings)
    (settings.data_dir / "credentials").unlink()

    after = _serve(settings, monkeypatch, "--first-run-admin")

    path = (settings.data_dir / "credentials").resolve()
    assert "Create credentials with" not in after and USE_THE_FILE not in after
    assert (
        f"An admin access key exists, but {path} does not hold its secret: use an admin key "
        "you keep elsewhere (openprofiles credentials list names them), or create another "
        f"with: openprofiles credentials create{_given(settings)} --role admin"
    ) in after
    # Nothing is made: the admin key left is the server's.
    assert "Created an admin credential" not in after and not path.exists()
    assert kept in _run(settings, "credentials", "list")
