"""The users service: deleting a user, a new password, another role; never without an admin;
no password of spaces only. On SQLite and PostgreSQL (the `services` fixture)."""

from __future__ import annotations

import pytest
from tests.support.lock_waits import second_writer_meets_first

from openprofiles.context import Services
from openprofiles.errors import BadRequest, NotFound
from openprofiles.store.schema import web_session
from openprofiles.users import service as users

PASSWORD = "long enough"
NEW_PASSWORD = "another long one"


def make(services: Services, *names_roles: tuple[str, str]) -> None:
    with services.write() as tx:
        for name, role in names_roles:
            users.create_user(tx, username=name, password=PASSWORD, role=role)


def session_for(services: Services, username: str) -> str:
    with services.write() as tx:
        return users.create_session(tx, username=username).token


def alive(services: Services, token: str) -> bool:
    with services.read() as tx:
        return users.get_session(tx, token=token) is not None


def test_deleting_a_user_ends_their_sessions_at_once(services: Services) -> None:
    make(services, ("boss", "admin"), ("ana", "agent"))
    ana, boss = session_for(services, "ana"), session_for(services, "boss")
    with services.write() as tx:
        users.delete_user(tx, username="ana")
    assert not alive(services, ana)
    assert alive(services, boss)
    with services.write() as tx:
        assert users.find_user(tx, username="ana") is None
        assert users.verify_password(tx, username="ana", password=PASSWORD) is None
        assert [u.username for u in users.list_users(tx)] == ["boss"]
        remaining = tx.conn.execute(web_session.select()).all()
    assert len(remaining) == 1
    with services.write() as tx, pytest.raises(NotFound, match="no user named ana"):
        users.delete_user(tx, username="ana")


def test_the_last_admin_can_be_neither_deleted_nor_made_an_agent(services: Services) -> None:
    make(services, ("boss", "admin"), ("ana", "agent"))
    with services.write() as tx, pytest.raises(BadRequest, match="boss is the last administrator"):
        users.delete_user(tx, username="boss")
    with services.write() as tx, pytest.raises(BadRequest, match="last administrator"):
        users.set_role(tx, username="boss", role="agent")
    with services.read() as tx:
        assert users.find_user(tx, username="boss").role == "admin"  # type: ignore[union-attr]
    # With a second admin, either may go.
    with services.write() as tx:
        assert users.set_role(tx, username="ana", role="admin").is_admin
    with services.write() as tx:
        users.set_role(tx, username="boss", role="agent")
    with services.write() as tx, pytest.raises(BadRequest, match="ana is the last administrator"):
        users.delete_user(tx, username="ana")
    with services.write() as tx:
        users.delete_user(tx, username="boss")  # an agent now: no admin check
    with services.read() as tx:
        assert [(u.username, u.role) for u in users.list_users(tx)] == [("ana", "admin")]


def test_a_role_change_applies_to_open_sessions(services: Services) -> None:
    make(services, ("boss", "admin"), ("ana", "agent"))
    ana = session_for(services, "ana")
    with services.write() as tx:
        users.set_role(tx, username="ana", role="admin")
    with services.read() as tx:
        assert users.get_session(tx, token=ana).role == "admin"  # type: ignore[union-attr]
    with services.write() as tx, pytest.raises(BadRequest, match="role must be one of"):
        users.set_role(tx, username="ana", role="root")


def test_a_new_password_ends_the_users_sessions_but_the_one_kept(services: Services) -> None:
    make(services, ("boss", "admin"), ("ana", "agent"))
    first, second, third = (session_for(services, "ana") for _ in range(3))
    boss = session_for(services, "boss")
    with services.write() as tx:
        ended = users.set_password(tx, username="ana", password=NEW_PASSWORD, keep_session=first)
    assert ended == 2
    assert alive(services, first)
    assert not alive(services, second) and not alive(services, third)
    assert alive(services, boss)
    with services.write() as tx:
        assert users.verify_password(tx, username="ana", password=PASSWORD) is None
        assert users.verify_password(tx, username="ana", password=NEW_PASSWORD) is not None
        # Set by an administrator (or the CLI): every session ends.
        assert users.set_password(tx, username="ana", password=PASSWORD) == 1
    assert not alive(services, first)
    with services.write() as tx, pytest.raises(NotFound):
        users.set_password(tx, username="nobody", password=NEW_PASSWORD)


def test_own_password_change_needs_the_current_password(services: Services) -> None:
    make(services, ("ana", "agent"))
    here, elsewhere = session_for(services, "ana"), session_for(services, "ana")
    with services.write() as tx:
        changed = users.change_own_password(
            tx,
            username="ana",
            current="not it at all",
            new=NEW_PASSWORD,
            session=here,
            address=None,
        )
    assert changed is False
    assert alive(services, elsewhere)
    with services.write() as tx:
        assert users.verify_password(tx, username="ana", password=PASSWORD) is not None
        changed = users.change_own_password(
            tx, username="ana", current=PASSWORD, new=NEW_PASSWORD, session=here, address=None
        )
    assert changed is True
    assert alive(services, here)
    assert not alive(services, elsewhere)
    with services.write() as tx:
        assert users.verify_password(tx, username="ana", password=NEW_PASSWORD) is not None


@pytest.mark.parametrize("blank", [" " * 8, " " * 20, "\t" * 4 + " " * 4, "\u00a0" * 8])
def test_a_password_of_spaces_only_is_refused(services: Services, blank: str) -> None:
    assert users.check_password(blank, username="ana") == "Use a password that is not only spaces."
    with services.write() as tx, pytest.raises(BadRequest, match="not only spaces"):
        users.create_user(tx, username="ana", password=blank, role="agent")
    make(services, ("ana", "agent"))
    with services.write() as tx, pytest.raises(BadRequest, match="not only spaces"):
        users.set_password(tx, username="ana", password=blank)
    # Spaces inside a password are fine, and the 8-character minimum stays.
    assert users.check_password(" a b c d ", username="ana") is None
    assert users.check_password("  ab  ", username="ana") == "Use at least 8 characters."


# PostgreSQL only: SQLite has one writer, so the two cannot overlap there.
@pytest.mark.postgres
@pytest.mark.parametrize("settings", ["postgres"], indirect=True)
def test_two_admins_deleting_each_other_at_once_leave_one(services: Services) -> None:
    """On PostgreSQL the second deletion waits for the first (the admin rows are locked), then
    finds that its user is the last admin. Without the lock both would count two admins and
    both would go."""
    make(services, ("boss", "admin"), ("chief", "admin"))

    def second() -> None:
        with services.write() as tx:
            users.delete_user(tx, username="chief")

    outcome = second_writer_meets_first(
        services, lambda tx: users.delete_user(tx, username="boss"), second
    )
    assert isinstance(outcome, BadRequest), outcome
    assert "chief is the last administrator" in outcome.message
    with services.read() as tx:
        assert [(u.username, u.role) for u in users.list_users(tx)] == [("chief", "admin")]
