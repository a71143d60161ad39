"""`openprofiles users set-password | set-role | delete`, on a real data dir and database (both
backends): passwords only from a prompt or stdin, sessions ended, the last admin kept."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result

from openprofiles.app import build_services
from openprofiles.cli import main
from openprofiles.context import Services
from openprofiles.settings import Settings
from openprofiles.users import service as users

PASSWORD = "long enough"
NEW_PASSWORD = "a new long password"


@pytest.fixture
def built(settings: Settings) -> Iterator[Services]:
    services = build_services(settings)
    with services.write() as tx:
        users.create_user(tx, username="boss", password=PASSWORD, role="admin")
        users.create_user(tx, username="ana", password=PASSWORD, role="agent")
    try:
        yield services
    finally:
        services.database.dispose()


def run(settings: Settings, *args: str, stdin: str | None = None) -> Result:
    common = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        common += ["--database-url", settings.database_url]
    return CliRunner().invoke(main, ["users", *args, *common], input=stdin)


def session(services: Services, username: str) -> str:
    with services.write() as tx:
        return users.create_session(tx, username=username).token


def alive(services: Services, token: str) -> bool:
    with services.read() as tx:
        return users.get_session(tx, token=token) is not None


def signs_in(services: Services, username: str, password: str) -> bool:
    with services.write() as tx:
        return users.verify_password(tx, username=username, password=password) is not None


def test_set_password_from_stdin_ends_the_users_sessions(
    settings: Settings, built: Services
) -> None:
    token = session(built, "ana")
    result = run(settings, "set-password", "ana", "--password-stdin", stdin=NEW_PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert "Set a new password for ana; ended 1 session(s)." in result.output
    assert not alive(built, token)
    assert signs_in(built, "ana", NEW_PASSWORD)
    assert not signs_in(built, "ana", PASSWORD)


def test_set_password_prompts_twice_without_echo(settings: Settings, built: Services) -> None:
    result = run(settings, "set-password", "boss", stdin=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n")
    assert result.exit_code == 0, result.output
    # Prompted for, and not echoed back.
    assert "Password" in result.output and NEW_PASSWORD not in result.output
    assert signs_in(built, "boss", NEW_PASSWORD)


def test_set_password_refuses_spaces_an_unknown_user_and_argv(
    settings: Settings, built: Services
) -> None:
    spaces = run(settings, "set-password", "ana", "--password-stdin", stdin=" " * 8 + "\n")
    assert spaces.exit_code != 0 and "not only spaces" in spaces.output
    unknown = run(settings, "set-password", "nobody", "--password-stdin", stdin=NEW_PASSWORD)
    assert unknown.exit_code != 0 and "There is no user named nobody" in unknown.output
    on_argv = run(settings, "set-password", "ana", "--password", NEW_PASSWORD)
    assert on_argv.exit_code != 0 and "No such option" in on_argv.output
    assert signs_in(built, "ana", PASSWORD)


def test_delete_ends_the_sessions_and_never_removes_the_last_admin(
    settings: Settings, built: Services
) -> None:
    token = session(built, "ana")
    declined = run(settings, "delete", "ana", stdin="n\n")
    assert declined.exit_code != 0 and alive(built, token)
    result = run(settings, "delete", "ana", "--yes")
    assert result.exit_code == 0, result.output
    assert not alive(built, token)
    assert not signs_in(built, "ana", PASSWORD)
    last = run(settings, "delete", "boss", "--yes")
    assert last.exit_code != 0 and "boss is the last administrator" in last.output
    demote = run(settings, "set-role", "boss", "agent")
    assert demote.exit_code != 0 and "last administrator" in demote.output
    with built.read() as tx:
        assert [(u.username, u.role) for u in users.list_users(tx)] == [("boss", "admin")]


def test_list_heads_its_columns(settings: Settings, built: Services) -> None:
    """A newcomer review: the list had no header, and its last column (the audit log's name
    of the user, a digest) meant nothing without one."""
    listed = run(settings, "list")
    assert listed.exit_code == 0, listed.output
    header, *rows = listed.output.splitlines()
    assert header.split() == ["USERNAME", "ROLE", "CREATED", "AUDIT", "NAME"]
    assert sorted(row.split()[:2] for row in rows) == [["ana", "agent"], ["boss", "admin"]]
    # Each column starts under its heading.
    for row in rows:
        assert row.index(row.split()[-1]) == header.index("AUDIT NAME")
        assert row.split()[-1].startswith("user-")


def test_set_role(settings: Settings, built: Services) -> None:
    result = run(settings, "set-role", "ana", "admin")
    assert result.exit_code == 0, result.output
    assert "ana is now an admin." in result.output
    with built.read() as tx:
        assert users.find_user(tx, username="ana").role == "admin"  # type: ignore[union-attr]


def test_unlock_ends_a_users_sign_in_locks_or_all(settings: Settings, built: Services) -> None:
    """How an administrator locked out by someone guessing gets back in (README)."""
    from openprofiles.errors import Throttling
    from openprofiles.users import throttle

    def sign_in(password: str, address: str, username: str = "boss") -> object:
        with built.write() as tx:
            return users.sign_in(tx, username=username, password=password, address=address)

    for n in range(throttle.USER_GLOBAL_LIMIT):
        sign_in("not the password", f"198.51.100.{n}")
    with pytest.raises(Throttling):
        sign_in(PASSWORD, "203.0.113.1")
    result = run(settings, "unlock", "boss")
    assert result.exit_code == 0, result.output
    assert sign_in(PASSWORD, "203.0.113.1") is not None
    for n in range(throttle.ADDRESS_LIMIT):
        sign_in("not the password", "192.0.2.9", username=f"guess-{n}")
    with pytest.raises(Throttling):
        sign_in(PASSWORD, "192.0.2.9")
    assert run(settings, "unlock", "--all").exit_code == 0
    assert sign_in(PASSWORD, "192.0.2.9") is not None
    refused = run(settings, "unlock")
    assert refused.exit_code != 0 and "Give a USERNAME or --all" in refused.output


def test_a_deleted_users_sealed_name_leaves_the_sqlite_log(sqlite_settings: Settings) -> None:
    """`users delete` (and `credentials delete`) never disposed of their services, so the
    log truncation their erasure asked for died with the command while a server (here: other
    services) held the database open: the sealed name stayed in the -wal file."""
    from pathlib import Path

    from sqlalchemy import select

    from openprofiles.store.schema import web_user

    server = build_services(sqlite_settings)
    try:
        with server.write() as tx:
            users.create_user(tx, username="boss", password=PASSWORD, role="admin")
            users.create_user(tx, username="bob.jones@example.org", password=PASSWORD, role="agent")
        with server.read() as tx:
            sealed = {
                bytes(b) for b in tx.conn.execute(select(web_user.c.username_sealed)).scalars()
            }
        wal = Path(f"{sqlite_settings.sqlite_path}-wal")
        assert any(blob in wal.read_bytes() for blob in sealed)
        result = run(sqlite_settings, "delete", "bob.jones@example.org", "--yes")
        assert result.exit_code == 0, result.output
        with server.read() as tx:
            left = {bytes(b) for b in tx.conn.execute(select(web_user.c.username_sealed)).scalars()}
        gone = sealed - left
        assert len(gone) == 1
        files = wal.read_bytes() + sqlite_settings.sqlite_path.read_bytes()
        assert not any(blob in files for blob in gone)
    finally:
        server.database.dispose()
