"""The users service: creating users, checking passwords, and sign-in sessions."""

from __future__ import annotations

from datetime import timedelta

import pytest

from openprofiles.context import Services
from openprofiles.errors import BadRequest
from openprofiles.store.schema import web_session, web_user
from openprofiles.users import service as users


def test_create_user_stores_only_an_argon2_hash(services: Services) -> None:
    with services.write() as tx:
        user = users.create_user(tx, username="ana", password="correct horse", role="agent")
    assert user.role == "agent"
    with services.read() as tx:
        row = tx.conn.execute(web_user.select()).one()
    assert row.password_hash.startswith("$argon2id$")
    assert "correct horse" not in row.password_hash


def test_verify_password(services: Services) -> None:
    with services.write() as tx:
        users.create_user(tx, username="ana", password="correct horse", role="admin")
    with services.write() as tx:
        assert users.verify_password(tx, username="ana", password="correct horse") is not None
        assert users.verify_password(tx, username="ana", password="wrong horse!") is None
        assert users.verify_password(tx, username="bob", password="correct horse") is None


@pytest.mark.parametrize(
    ("username", "password", "role", "message"),
    [
        ("ana", "short", "agent", "at least 8"),
        ("has space", "long enough", "agent", "username is not valid"),
        ("", "long enough", "agent", "username is not valid"),
        ("ana", "long enough", "root", "role must be one of admin, agent"),
    ],
)
def test_create_user_refuses_bad_input(
    services: Services, username: str, password: str, role: str, message: str
) -> None:
    with services.write() as tx, pytest.raises(BadRequest) as exc:
        users.create_user(tx, username=username, password=password, role=role)
    assert message in exc.value.message
    with services.read() as tx:
        assert users.list_users(tx) == []


def test_duplicate_username_is_refused(services: Services) -> None:
    with services.write() as tx:
        users.create_user(tx, username="ana", password="long enough", role="agent")
    with services.write() as tx, pytest.raises(BadRequest, match="already exists"):
        users.create_user(tx, username="ana", password="long enough", role="admin")


def test_session_lifecycle(services: Services) -> None:
    with services.write() as tx:
        users.create_user(tx, username="ana", password="long enough", role="agent")
        created = users.create_session(tx, username="ana")
    with services.read() as tx:
        session = users.get_session(tx, token=created.token)
        stored = tx.conn.execute(web_session.select()).one()
    assert session is not None
    assert (session.username, session.role) == ("ana", "agent")
    assert session.csrf_token == created.session.csrf_token
    # Only a digest of the cookie value is stored.
    assert created.token.encode() not in bytes(stored.id_digest)
    with services.write() as tx:
        users.delete_session(tx, token=created.token)
    with services.read() as tx:
        assert users.get_session(tx, token=created.token) is None
        assert users.get_session(tx, token="not-a-session") is None


def test_expired_session_is_not_returned(services: Services) -> None:
    with services.write() as tx:
        users.create_user(tx, username="ana", password="long enough", role="agent")
        created = users.create_session(tx, username="ana")
    with services.read() as tx:
        tx.now = tx.now + users.SESSION_LIFETIME + timedelta(seconds=1)
        assert users.get_session(tx, token=created.token) is None


def test_usernames_are_stored_only_sealed_and_listed_opened(services: Services) -> None:
    """A username (often an e-mail address) is personal data: the rows hold its digest and the
    name sealed, never the name; users are still listed by name, and a session knows its user."""
    with services.write() as tx:
        users.create_user(tx, username="zoe.hart@example.org", password="long enough", role="admin")
        users.create_user(tx, username="Ana", password="long enough", role="agent")
        created = users.create_session(tx, username="zoe.hart@example.org")
    with services.read() as tx:
        stored = [
            *tx.conn.execute(web_user.select()).all(),
            *tx.conn.execute(web_session.select()).all(),
        ]
        listed = [(u.username, u.role) for u in users.list_users(tx)]
        session = users.get_session(tx, token=created.token)
    dump = repr(stored).encode()
    for name in (b"zoe.hart", b"Ana"):
        assert name not in dump
    assert listed == [("Ana", "agent"), ("zoe.hart@example.org", "admin")]
    assert session is not None and session.username == "zoe.hart@example.org"
    with services.write() as tx:
        # The exact name signs in; the digest is of the name as typed.
        assert users.verify_password(tx, username="Ana", password="long enough") is not None
        assert users.verify_password(tx, username="ana", password="long enough") is None


def test_a_database_with_web_users_needs_its_keyring(settings) -> None:
    """Users are found by digests under the system key: a server must not start with a new
    keyring (where nobody could sign in any more) on a database that has users."""
    from openprofiles.app import build_services
    from openprofiles.crypto.errors import KeyringError

    built = build_services(settings)
    try:
        with built.write() as tx:
            users.create_user(tx, username="ana", password="long enough", role="admin")
    finally:
        built.database.dispose()
    settings.keyring_path.unlink()
    with pytest.raises(KeyringError, match="does not exist"):
        build_services(settings)
