"""Rules for web users and sessions: create and list users, check a password, and create,
read and end sign-in sessions.

Passwords are hashed with Argon2id (argon2-cffi's defaults). A session is a random token kept by
the browser in a cookie; only its SHA-256 digest is stored, with the CSRF token every form of the
session must carry.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, insert, select, update

from openprofiles.context import Tx
from openprofiles.errors import BadRequest
from openprofiles.store.schema import web_session, web_user
from openprofiles.users.models import ROLES, NewSession, WebSession, WebUser

SESSION_LIFETIME = timedelta(hours=12)
MIN_PASSWORD_LENGTH = 8
USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")

_hasher = PasswordHasher()


@functools.cache
def dummy_hash() -> str:
    """Verified against when the username is unknown, so a wrong username costs as much time
    as a wrong password and does not reveal which usernames exist. Made on first use (an
    Argon2 hash takes ~0.1 s, which every CLI command paid at import); the sign-in routes make
    it when they are built, so no sign-in pays for it."""
    return _hasher.hash(secrets.token_urlsafe(16))


def check_username(username: str) -> str | None:
    """What is wrong with a username, or None when it is acceptable."""
    if not USERNAME_PATTERN.match(username):
        return "Use 1 to 64 letters, digits, '.', '_', '-' or '@'."
    return None


def check_password(password: str) -> str | None:
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Use at least {MIN_PASSWORD_LENGTH} characters."
    if len(password) > 1024:
        return "Use at most 1024 characters."
    return None


def create_user(tx: Tx, *, username: str, password: str, role: str) -> WebUser:
    if role not in ROLES:
        raise BadRequest(f"The role must be one of {', '.join(ROLES)}.")
    if (problem := check_username(username)) is not None:
        raise BadRequest(f"The username is not valid: {problem}")
    if (problem := check_password(password)) is not None:
        raise BadRequest(f"The password is too weak: {problem}")
    if find_user(tx, username=username) is not None:
        raise BadRequest(f"A user named {username} already exists.")
    tx.conn.execute(
        insert(web_user).values(
            username=username,
            password_hash=_hasher.hash(password),
            role=role,
            created_at=tx.now,
        )
    )
    return WebUser(username=username, role=role, created_at=tx.now)


def find_user(tx: Tx, *, username: str) -> WebUser | None:
    row = tx.conn.execute(
        select(web_user.c.username, web_user.c.role, web_user.c.created_at).where(
            web_user.c.username == username
        )
    ).first()
    return WebUser(row.username, row.role, row.created_at) if row else None


def list_users(tx: Tx) -> list[WebUser]:
    rows = tx.conn.execute(
        select(web_user.c.username, web_user.c.role, web_user.c.created_at).order_by(
            web_user.c.username
        )
    )
    return [WebUser(r.username, r.role, r.created_at) for r in rows]


def count_users(tx: Tx, *, role: str) -> int:
    return int(tx.conn.execute(select(func.count()).where(web_user.c.role == role)).scalar_one())


def verify_password(tx: Tx, *, username: str, password: str) -> WebUser | None:
    """The user when the password is theirs; None otherwise (unknown user or wrong password).

    Rehashes the password when argon2's parameters have been raised since it was stored.
    """
    row = tx.conn.execute(select(web_user).where(web_user.c.username == username)).first()
    stored = row.password_hash if row else dummy_hash()
    try:
        _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None:
        return None
    if _hasher.check_needs_rehash(stored):
        tx.conn.execute(
            update(web_user)
            .where(web_user.c.username == username)
            .values(password_hash=_hasher.hash(password))
        )
    return WebUser(row.username, row.role, row.created_at)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def create_session(tx: Tx, *, username: str) -> NewSession:
    user = find_user(tx, username=username)
    if user is None:
        raise BadRequest(f"There is no user named {username}.")
    token = secrets.token_urlsafe(32)
    csrf_token = secrets.token_urlsafe(32)
    expires_at = tx.now + SESSION_LIFETIME
    # Signing in is also when ended sessions are cleared, so the table does not grow forever.
    tx.conn.execute(delete(web_session).where(web_session.c.expires_at <= tx.now))
    tx.conn.execute(
        insert(web_session).values(
            id_digest=_digest(token),
            username=username,
            csrf_token=csrf_token,
            expires_at=expires_at,
        )
    )
    return NewSession(
        token=token,
        session=WebSession(
            username=username, role=user.role, csrf_token=csrf_token, expires_at=expires_at
        ),
    )


def get_session(tx: Tx, *, token: str) -> WebSession | None:
    """The live session the cookie value names, or None (unknown, ended or expired)."""
    row = tx.conn.execute(
        select(
            web_session.c.username,
            web_session.c.csrf_token,
            web_session.c.expires_at,
            web_user.c.role,
        )
        .join(web_user, web_user.c.username == web_session.c.username)
        .where(web_session.c.id_digest == _digest(token))
    ).first()
    if row is None or row.expires_at <= tx.now:
        return None
    return WebSession(
        username=row.username, role=row.role, csrf_token=row.csrf_token, expires_at=row.expires_at
    )


def delete_session(tx: Tx, *, token: str) -> None:
    tx.conn.execute(delete(web_session).where(web_session.c.id_digest == _digest(token)))
