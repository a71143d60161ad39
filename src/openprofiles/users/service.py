"""Rules for web users and sessions: create, list and delete users, change their password or
role, check a password (sign-in, throttled by users.throttle), and create, read and end sign-in
sessions.

There is always an administrator left: the last one can be neither deleted nor made an agent.
Deleting a user ends their sessions at once; a new password ends every session of the user but
the one that set it (the user's own), so a departing agent or a leaked password is locked out.

An agent may be limited to some domains (its domain scope, `domains`; None: every domain, as
every user was before scopes existed): the agent pages offer and open only those domains'
customers (ui.agent_pages). The scope is read with the role on each request (`get_session`), so
a change applies from the user's next request, as a change of role does. An administrator has
no scope: it manages the users, its own scope included, so a scope would hold it back from
nothing. A scope is therefore refused for an admin (`create_user`, `set_scope`), and an agent
with a scope is not made an admin (`set_role`) until its scope is lifted: silently dropping it
would widen what the user sees without anyone having asked for that.

A password someone else chose (the first run's generated one, an administrator's `users
set-password --temporary`) marks the user `must_change_password`: read with the session on each
request, it keeps the pages on the password page (ui.web.UI.page) until the user sets their own
(`change_own_password`), which clears it, as any new password not marked temporary does.
Once the first run's `admin` has a new password, its password file is deleted
(first_run.retire_first_password): by `set_password`, after its commit, as every new password
passes through it (the pages' and `users set-password`), so no way of setting one forgets it.

Passwords are hashed with Argon2id (argon2-cffi's defaults). A session is a random token kept by
the browser in a cookie; only its SHA-256 digest is stored, with the CSRF token every form of the
session must carry.

A username is personal data of a member of staff (often an e-mail address), sealed at rest like
customers' data: a user is found by the blind-index digest of the exact name under the system
cipher (the name typed at sign-in gives the same digest; without the key a copy of the database
cannot confirm a guess), sessions refer to the user by that digest, and the name is stored only
sealed under the system cipher, opened to show it (the pages' header, the users list, the CLI).
The system cipher, not a domain's: users belong to no domain, and every process derives the same
one from the default local key (crypto.domain_keys).
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from math import ceil
from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import ColumnElement, and_, delete, func, insert, or_, select, update

from openprofiles.auth.scope import checked_scope, loaded_scope, stored_scope
from openprofiles.context import Tx
from openprofiles.errors import BadRequest, NotFound, Throttling
from openprofiles.store.conflicts import retrying
from openprofiles.store.schema import web_session, web_user
from openprofiles.users import password_policy, throttle
from openprofiles.users.models import ROLES, NewSession, WebSession, WebUser

if TYPE_CHECKING:
    from openprofiles.context import Services
    from openprofiles.crypto.domain_keys import DomainCipher

SESSION_LIFETIME = timedelta(hours=12)
# A session nobody used for this long ends: an agent's desk left unattended does not keep
# customers' data open until the end of the shift.
SESSION_IDLE = timedelta(hours=1)
# How stale the recorded last activity may get before a request records it again (a write).
TOUCH_EVERY = timedelta(minutes=1)
# Used with fullmatch: with `match`, a final `$` also matches before a trailing newline, which
# let `users create --username $'carol\n'` make a user nobody could ever sign in as.
USERNAME_PATTERN = re.compile(r"[A-Za-z0-9_.@-]{1,64}")

# The key name of usernames' digests and the table their sealed names are bound to (migration
# 0020 keeps its own copy of both).
USERNAME_KEY_NAME = "@webUser"
# The key name of audit_name's digests: apart from the tables' own (a log line's name is not a
# table's digest).
AUDIT_KEY_NAME = "@auditUser"
USER_TABLE = "web_user"

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
    if not USERNAME_PATTERN.fullmatch(username):
        return "Use 1 to 64 letters, digits, '.', '_', '-' or '@'."
    return None


def check_password(password: str, *, username: str) -> str | None:
    """What is wrong with `password` as `username`'s new password, or None: the one policy of
    every place that sets a password (users.password_policy)."""
    return password_policy.password_problem(password, username=username)


def check_password_change(current: str, new: str) -> str | None:
    """What is wrong with changing `current` to `new` (both as typed), or None: a "change" to
    the same password would end the user's other sessions and leave the password as it was,
    which is never what was meant (the password is usually being changed because it leaked)."""
    if new == current:
        return "Choose a new password that differs from your current one."
    return None


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise BadRequest(f"The role must be one of {', '.join(ROLES)}.")


def _check_new_password(password: str, username: str) -> None:
    if (problem := check_password(password, username=username)) is not None:
        raise BadRequest(f"The password cannot be used: {problem}")


@dataclass(frozen=True)
class NewPassword:
    """A new password checked and hashed before the write transaction that stores it
    (`new_password`), for the user it was checked for (the policy depends on the name).
    Argon2 takes ~0.1 s: inside the transaction it would hold SQLite's one writer lock, and
    every API write of every process would wait behind the pages."""

    hashed: str
    username: str


def new_password(password: str, *, username: str) -> NewPassword:
    """`password` checked as `username`'s (BadRequest when the policy refuses it) and hashed,
    outside any transaction."""
    _check_new_password(password, username)
    return NewPassword(_hasher.hash(password), username)


def _hashed(password: str | NewPassword, username: str) -> str:
    # A plain string is hashed here, inside the caller's transaction: fine for the CLI's one
    # write; the pages pass a NewPassword.
    if isinstance(password, NewPassword):
        if password.username != username:
            # A caller's mistake: it was checked against another name.
            raise ValueError("a NewPassword checked for another user")
        return password.hashed
    return new_password(password, username=username).hashed


def _checked_user_scope(
    username: str, role: str, domains: Iterable[str] | None
) -> frozenset[str] | None:
    """`domains` checked as `username`'s scope (auth.scope.checked_scope: BadRequest for none,
    or a name that is no domain name's form); BadRequest for an admin's (the module
    docstring). A scope may name a domain that does not exist yet, as a key's may."""
    scope = checked_scope(domains)
    if scope is not None and role == "admin":
        raise BadRequest(
            f"{username} is an administrator, and administrators see every domain (they manage "
            "the users, their own scope included): only an agent can be limited to domains."
        )
    return scope


def create_user(
    tx: Tx,
    *,
    username: str,
    password: str | NewPassword,
    role: str,
    domains: Iterable[str] | None = None,
    must_change_password: bool = False,
) -> WebUser:
    """A new user; `domains` limits an agent to those domains (None: every domain);
    `must_change_password`: the password is someone else's choice, for the user to replace at
    first sign-in (the module docstring)."""
    _check_role(role)
    if (problem := check_username(username)) is not None:
        raise BadRequest(f"The username is not valid: {problem}")
    scope = _checked_user_scope(username, role, domains)
    hashed = _hashed(password, username)
    if find_user(tx, username=username) is not None:
        raise BadRequest(f"A user named {username} already exists.")
    cipher = _cipher(tx)
    digest = _name_digest(cipher, username)
    tx.conn.execute(
        insert(web_user).values(
            username_digest=digest,
            username_sealed=cipher.seal_record(USER_TABLE, digest.hex(), {"username": username}),
            password_hash=hashed,
            role=role,
            created_at=tx.now,
            domain_scope=stored_scope(scope),
            must_change_password=must_change_password,
        )
    )
    return WebUser(
        username=username,
        role=role,
        created_at=tx.now,
        domains=scope,
        must_change_password=must_change_password,
    )


def _cipher(tx: Tx) -> DomainCipher:
    return tx.services.keys.system_cipher()


def _name_digest(cipher: DomainCipher, username: str) -> bytes:
    """How a user is known in the tables: the digest of the exact name (names differing only in
    case are different users, as they always were)."""
    return cipher.digest(USERNAME_KEY_NAME, username)


def _user_digest(tx: Tx, username: str) -> bytes:
    return _name_digest(_cipher(tx), username)


def audit_name(cipher: DomainCipher, username: str) -> str:
    """How the audit log names a web user (openprofiles.audit): usernames are staff's personal
    data (often an email address), sealed at rest, so the log carries a keyed digest of the
    name instead — stable, and unreadable without the keyring. `openprofiles users list` shows
    each user's, to tell who acted. `cipher` is the system cipher."""
    return "user-" + cipher.digest(AUDIT_KEY_NAME, username)[:6].hex()


def _web_user(username: str, row: Any) -> WebUser:
    """The user of a row of web_user (its role, created_at, domain_scope and
    must_change_password) named `username`."""
    return WebUser(
        username,
        row.role,
        row.created_at,
        loaded_scope(row.domain_scope),
        must_change_password=bool(row.must_change_password),
    )


def find_user(tx: Tx, *, username: str) -> WebUser | None:
    row = tx.conn.execute(
        select(
            web_user.c.role,
            web_user.c.created_at,
            web_user.c.domain_scope,
            web_user.c.must_change_password,
        ).where(web_user.c.username_digest == _user_digest(tx, username))
    ).first()
    # The digest is of this very name: nothing needs opening.
    if row is None:
        return None
    return _web_user(username, row)


def list_users(tx: Tx) -> list[WebUser]:
    """Every user, by name (the names are opened here, so they are sorted here)."""
    rows = tx.conn.execute(
        select(
            web_user.c.username_digest,
            web_user.c.username_sealed,
            web_user.c.role,
            web_user.c.created_at,
            web_user.c.domain_scope,
            web_user.c.must_change_password,
        )
    ).all()
    names = _cipher(tx).open_records(
        USER_TABLE, [(bytes(r.username_digest).hex(), bytes(r.username_sealed)) for r in rows]
    )
    return sorted(
        (_web_user(name["username"], r) for name, r in zip(names, rows, strict=True)),
        key=lambda user: user.username,
    )


def _locked_role(tx: Tx, username: str) -> tuple[bytes, str]:
    """The user's digest and role, the user's row locked until the transaction ends; NotFound
    when there is no such user."""
    digest, role, _scope = _locked_user(tx, username)
    return digest, role


def _locked_user(tx: Tx, username: str) -> tuple[bytes, str, frozenset[str] | None]:
    """`_locked_role`, and the user's domain scope."""
    digest = _user_digest(tx, username)
    row = tx.conn.execute(
        select(web_user.c.role, web_user.c.domain_scope)
        .where(web_user.c.username_digest == digest)
        .with_for_update()
    ).first()
    if row is None:
        raise NotFound(f"There is no user named {username}.")
    return digest, row.role, loaded_scope(row.domain_scope)


def _locked_with_admins(tx: Tx, username: str) -> tuple[bytes, str, set[bytes]]:
    """`_locked_role`, and the administrators' digests, every admin row locked first and in one
    order: on PostgreSQL two administrators deleting each other at once then go one after the
    other (and never wait on each other), and the second sees that only they are left."""
    digest, role, _scope, admins = _locked_scoped_with_admins(tx, username)
    return digest, role, admins


def _locked_scoped_with_admins(
    tx: Tx, username: str
) -> tuple[bytes, str, frozenset[str] | None, set[bytes]]:
    """`_locked_with_admins`, and the user's domain scope."""
    admins = {
        bytes(d)
        for d in tx.conn.execute(
            select(web_user.c.username_digest)
            .where(web_user.c.role == "admin")
            .order_by(web_user.c.username_digest)
            .with_for_update()
        ).scalars()
    }
    return (*_locked_user(tx, username), admins)


def _keep_an_admin(admins: set[bytes], digest: bytes, username: str, change: str) -> None:
    """Refuse `change` (to the admin `digest`) when no other administrator would be left."""
    if not admins - {digest}:
        raise BadRequest(
            f"{username} is the last administrator and cannot be {change}: make another user "
            "an administrator first, so that someone can still manage these pages."
        )


def delete_user(tx: Tx, *, username: str) -> None:
    """Delete the user and end their sessions (their next page asks them to sign in)."""
    tx.erased()
    digest, role, admins = _locked_with_admins(tx, username)
    if role == "admin":
        _keep_an_admin(admins, digest, username, "deleted")
    tx.conn.execute(delete(web_session).where(web_session.c.username_digest == digest))
    tx.conn.execute(delete(web_user).where(web_user.c.username_digest == digest))


def set_role(tx: Tx, *, username: str, role: str) -> WebUser:
    """Give the user another role; it applies to their open sessions at once. An agent limited
    to some domains is not made an admin (the module docstring): its scope is lifted first."""
    _check_role(role)
    digest, former, scope, admins = _locked_scoped_with_admins(tx, username)
    if role == "admin" and scope is not None:
        raise BadRequest(
            f"{username} is limited to some domains, and administrators see every domain: lift "
            f"the scope first (openprofiles users scope {username} --all-domains, or Every "
            "domain on the user's page), then make them an administrator."
        )
    if former == "admin" and role != "admin":
        _keep_an_admin(admins, digest, username, f"made an {role}")
    tx.conn.execute(update(web_user).where(web_user.c.username_digest == digest).values(role=role))
    user = find_user(tx, username=username)
    assert user is not None  # locked above
    return user


def set_scope(tx: Tx, *, username: str, domains: Iterable[str] | None) -> WebUser:
    """Limit the agent to `domains`, replacing its scope, or let it see every domain (None);
    the user as it now is. It applies from the user's next request (`get_session` reads it
    with the role); an admin is refused a scope (the module docstring)."""
    digest, role, _scope = _locked_user(tx, username)
    scope = _checked_user_scope(username, role, domains)
    tx.conn.execute(
        update(web_user)
        .where(web_user.c.username_digest == digest)
        .values(domain_scope=stored_scope(scope))
    )
    user = find_user(tx, username=username)
    assert user is not None  # locked above
    return user


def set_password(
    tx: Tx,
    *,
    username: str,
    password: str | NewPassword,
    keep_session: str | None = None,
    temporary: bool = False,
) -> int:
    """Give the user a new password and end their sessions, but the one whose cookie value is
    `keep_session` (the user changing their own password stays signed in there); the number of
    sessions ended. `temporary`: someone else chose it, so the user must change it when they
    next sign in (`must_change_password`); otherwise that mark is cleared. Failed sign-ins
    counted against the name are forgotten: a user locked out by someone guessing can sign in
    with the new password at once.

    A live session is ended, not deleted (one ended already is left as it is, and not counted):
    its row is marked as last seen a whole SESSION_LIFETIME before it would have gone idle, so
    `get_session` never takes it again, nor does `touch_session` bring it back, even for a
    request whose transaction read the clock just before this one, or a server process whose
    clock is behind (marked idle as of just now, a clock a moment behind saw it live: the UI
    review found it revived), and it is cleared once it would have expired (`create_session`),
    as a session ended by idling is. Its
    row still says whose it was (`session_username`): a form the user sends from a page they had
    open is kept for them alone, to review after they sign in with the new password
    (ui.submissions.keep_form), instead of being lost. It used to be deleted, and what the agent
    had typed was lost without a word. That row opens nothing: a kept form comes back only to
    someone signed in as its user, with the new password."""
    hashed = _hashed(password, username)  # before the row is locked
    digest, _role = _locked_role(tx, username)
    tx.conn.execute(
        update(web_user)
        .where(web_user.c.username_digest == digest)
        .values(password_hash=hashed, must_change_password=temporary)
    )
    ending = (
        update(web_session)
        .where(web_session.c.username_digest == digest, _live_session(tx))
        .values(last_seen_at=tx.now - SESSION_LIFETIME - SESSION_IDLE)
    )
    if keep_session is not None:
        ending = ending.where(web_session.c.id_digest != _digest(keep_session))
    ended = tx.conn.execute(ending).rowcount
    throttle.forget_user(tx, user_digest=digest)
    _retire_first_password(tx, username, hashed)
    return int(ended)


def _retire_first_password(tx: Tx, username: str, hashed: str) -> None:
    """Delete the first run's password file once `username`'s new password (`hashed`) is
    committed, when `username` is the file's user and the file no longer opens the account
    (the module docstring). Compared with the new hash, not the password typed: a NewPassword has
    none; a file that holds the new password itself is kept. One Argon2 check, after the
    commit, and only for `admin` with the file still there."""
    from openprofiles.first_run import retire_first_password

    tx.after_commit(
        functools.partial(
            retire_first_password,
            tx.settings.data_dir,
            username=username,
            opens=functools.partial(_matches, hashed),
        )
    )


def _live_session(tx: Tx) -> ColumnElement[bool]:
    """The sessions `get_session` takes as live: not expired, nor idle for SESSION_IDLE (a row
    of before 0026 with no last_seen_at: its start counts)."""
    idle_since = tx.now - SESSION_IDLE
    seen = web_session.c.last_seen_at
    return and_(
        web_session.c.expires_at > tx.now,
        or_(
            and_(seen.is_not(None), seen > idle_since),
            and_(seen.is_(None), web_session.c.expires_at > idle_since + SESSION_LIFETIME),
        ),
    )


def require_password_change(tx: Tx, *, username: str) -> None:
    """Mark the user `must_change_password` (the module docstring): their password, kept as it
    is, was someone else's choice (first_run: the generated one, still in its file)."""
    digest, _role = _locked_role(tx, username)
    tx.conn.execute(
        update(web_user)
        .where(web_user.c.username_digest == digest)
        .values(must_change_password=True)
    )


def unlock_user(tx: Tx, *, username: str) -> None:
    """Forget the failed sign-ins counted against `username`, from every address (the
    throttle's locks of it end); for a name that is no user's too, as sign-in counts those."""
    throttle.forget_user(tx, user_digest=_user_digest(tx, username))


def change_own_password(
    tx: Tx,
    *,
    username: str,
    current: str,
    new: str | NewPassword,
    session: str,
    address: str | None,
    checked: PasswordCheck | None = None,
) -> bool:
    """The signed-in user's new password, when `current` is their password (False otherwise,
    counted as a failed sign-in: a stolen session must not become a way to guess it). Their
    other sessions end; `session` (this browser's cookie value) stays. `checked`: `current`
    verified before this transaction (`verify_before_writing`). A `new` already hashed
    (NewPassword) was compared with `current` before it was hashed (`check_password_change`)."""
    if not isinstance(new, NewPassword):
        _check_new_password(new, username)
        if (problem := check_password_change(current, new)) is not None:
            raise BadRequest(problem)
    attempt = _attempt(tx, username=username, password=current, address=address, checked=checked)
    if attempt is None:
        return False
    set_password(tx, username=username, password=new, keep_session=session)
    return True


@dataclass(frozen=True)
class PasswordCheck:
    """A password verified before the write transaction of its sign-in (`verify_before_writing`):
    against which stored hash (None: no such user), whether it matched, and the attempt's
    reservation in the throttle (counted as a failure until a right password gives it back)."""

    stored_hash: str | None
    matches: bool
    reservation: throttle.Reservation


@dataclass(frozen=True)
class ReservedAttempt:
    """A sign-in attempt counted before its password is checked (`reserve_attempt`), with the
    hash to check it against (None: no such user)."""

    stored_hash: str | None
    reservation: throttle.Reservation


def reserve_attempt(tx: Tx, *, username: str, address: str | None) -> ReservedAttempt:
    """Count an attempt to sign in as `username` from `address` before its password is checked
    (throttle.reserve: a burst of parallel attempts gets no more Argon2 runs than the throttle
    still allows); Throttling, with no password checked, when the name or the address is
    locked. `verify_reserved` checks the password, then `sign_in` (or `change_own_password`)
    with that check settles the attempt."""
    digest = _user_digest(tx, username)
    address_digest = throttle.address_digest(tx, address) if address else None
    # Held until the commit: concurrent attempts are counted one after another.
    throttle.hold(tx, user_digest=digest, address=address_digest)
    _refuse_if_locked(tx, digest, address_digest)
    reservation = throttle.reserve(tx, user_digest=digest, address=address_digest)
    row = tx.conn.execute(
        select(web_user.c.password_hash).where(web_user.c.username_digest == digest)
    ).first()
    return ReservedAttempt(row.password_hash if row else None, reservation)


def refuse_locked_attempt(tx: Tx, *, username: str, address: str | None) -> None:
    """Throttling when an attempt to sign in as `username` from `address` would be refused now:
    read only, no lock taken, so it may run in a read transaction. A first look, for the pages
    to refuse a locked-out attempt without queueing it on the write of `reserve_attempt`, which
    still decides under the throttle's locks."""
    address_digest = throttle.address_digest(tx, address) if address else None
    _refuse_if_locked(tx, _user_digest(tx, username), address_digest)


def hand_back_attempt(tx: Tx, reserved: ReservedAttempt) -> None:
    """Give back an attempt `reserve_attempt` counted and nobody checked (throttle.hand_back):
    the pages had no Argon2 slot free for it."""
    reservation = reserved.reservation
    throttle.hold(tx, user_digest=reservation.user_digest, address=reservation.address)
    throttle.hand_back(tx, reservation)


def verify_reserved(reserved: ReservedAttempt, password: str) -> PasswordCheck:
    """Verify `password` for an attempt `reserve_attempt` counted, with no transaction open:
    Argon2, a few tenths of a second of CPU and 64 MiB on purpose. An unknown name costs the
    same (the dummy hash), so the time says nothing of who exists."""
    stored = reserved.stored_hash
    matches = _matches(stored or dummy_hash(), password) and stored is not None
    return PasswordCheck(stored, matches, reserved.reservation)


def verify_before_writing(
    services: Services, *, username: str, password: str, address: str | None
) -> PasswordCheck:
    """Verify `password` with no write transaction open, the attempt counted first in a
    transaction of its own (`reserve_attempt`; Throttling when locked, with no Argon2 run).
    Argon2 takes about 0.1 s of CPU on purpose; in the sign-in's write transaction it held
    SQLite's one writer lock, and a flood of sign-ins (nobody needs an account for that)
    stalled every API write behind it. The sign-in's transaction then settles the attempt
    (`sign_in`). The pages run the two steps themselves, Argon2 on an executor of its own
    (ui.password_checks)."""

    def reserve() -> ReservedAttempt:
        with services.write() as tx:
            return reserve_attempt(tx, username=username, address=address)

    return verify_reserved(retrying(reserve), password)


def _matches(stored: str, password: str) -> bool:
    try:
        _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False
    return True


def sign_in(
    tx: Tx,
    *,
    username: str,
    password: str,
    address: str | None,
    checked: PasswordCheck | None = None,
) -> NewSession | None:
    """A new session when the password is the user's; None otherwise (counted against the name
    and the client `address`). Throttling when either has failed too often lately: the
    password is then not even checked, for an unknown name as for a user's. With `checked`
    (`verify_before_writing`, before this transaction) the password is not verified again here,
    and the attempt, counted and let through then, is settled: a right password gives its
    reservation back (throttle.release), a wrong one stays counted."""
    user = _attempt(tx, username=username, password=password, address=address, checked=checked)
    return create_session(tx, username=user.username) if user is not None else None


def confirm_password(
    tx: Tx, *, username: str, password: str, address: str | None, checked: PasswordCheck
) -> bool:
    """Whether `password`, checked before this transaction (`verify_before_writing`, or the
    pages' password_checks), is the signed-in `username`'s own, asked again before a sensitive
    change; settled as a sign-in attempt is (a wrong one stays counted against the name and
    the address), but no session is made."""
    return (
        _attempt(tx, username=username, password=password, address=address, checked=checked)
        is not None
    )


def _attempt(
    tx: Tx,
    *,
    username: str,
    password: str,
    address: str | None,
    checked: PasswordCheck | None = None,
) -> WebUser | None:
    digest = _user_digest(tx, username)
    address_digest = throttle.address_digest(tx, address) if address else None
    # Held until the commit: concurrent attempts are counted one after another.
    throttle.hold(tx, user_digest=digest, address=address_digest)
    if checked is not None:
        # Counted before it was checked (reserve_attempt), and let through then: not refused
        # now, even by a lock its own reservation set. A wrong password stays counted.
        user = _checked_user(tx, digest, username, password, checked)
        if user is not None:
            throttle.release(tx, checked.reservation)
        return user
    _refuse_if_locked(tx, digest, address_digest)
    user = verify_password(tx, username=username, password=password)
    if user is None:
        throttle.record_failure(tx, user_digest=digest, address=address_digest)
    else:
        throttle.forget_user(tx, user_digest=digest, address=address_digest)
    return user


def _refuse_if_locked(tx: Tx, digest: bytes, address_digest: bytes | None) -> None:
    """Throttling when the username (from this address) or the address is locked."""
    wait = throttle.wait_needed(tx, user_digest=digest, address=address_digest)
    if wait is not None:
        minutes = max(1, ceil(wait.total_seconds() / 60))
        raise Throttling(
            "Too many sign-ins with this username or from this computer have failed. "
            f"Wait {minutes} minute{'s' if minutes != 1 else ''} and try again."
        )


def _checked_user(
    tx: Tx, digest: bytes, username: str, password: str, checked: PasswordCheck
) -> WebUser | None:
    """The user a password checked before this transaction signs in: only if it matched the
    hash that is still stored (a password changed in between fails the attempt)."""
    row = tx.conn.execute(select(web_user).where(web_user.c.username_digest == digest)).first()
    if row is None or not checked.matches or row.password_hash != checked.stored_hash:
        return None
    _rehash_if_needed(tx, digest, row.password_hash, password)
    return _web_user(username, row)


def count_users(tx: Tx, *, role: str) -> int:
    return int(tx.conn.execute(select(func.count()).where(web_user.c.role == role)).scalar_one())


def verify_password(tx: Tx, *, username: str, password: str) -> WebUser | None:
    """The user when the password is theirs; None otherwise (unknown user or wrong password).

    Rehashes the password when argon2's parameters have been raised since it was stored.
    """
    digest = _user_digest(tx, username)
    row = tx.conn.execute(select(web_user).where(web_user.c.username_digest == digest)).first()
    stored = row.password_hash if row else dummy_hash()
    if not _matches(stored, password) or row is None:
        return None
    _rehash_if_needed(tx, digest, stored, password)
    return _web_user(username, row)


def _rehash_if_needed(tx: Tx, digest: bytes, stored: str, password: str) -> None:
    if _hasher.check_needs_rehash(stored):
        tx.conn.execute(
            update(web_user)
            .where(web_user.c.username_digest == digest)
            .values(password_hash=_hasher.hash(password))
        )


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
            username_digest=_user_digest(tx, username),
            csrf_token=csrf_token,
            expires_at=expires_at,
            last_seen_at=tx.now,
        )
    )
    return NewSession(
        token=token,
        session=WebSession(
            username=username,
            role=user.role,
            csrf_token=csrf_token,
            expires_at=expires_at,
            domains=user.domains,
            must_change_password=user.must_change_password,
        ),
    )


def get_session(tx: Tx, *, token: str) -> WebSession | None:
    """The live session the cookie value names, or None (unknown, ended or expired)."""
    row = tx.conn.execute(
        select(
            web_session.c.username_digest,
            web_session.c.csrf_token,
            web_session.c.expires_at,
            web_session.c.last_seen_at,
            web_user.c.username_sealed,
            web_user.c.role,
            web_user.c.domain_scope,
            web_user.c.must_change_password,
        )
        .join(web_user, web_user.c.username_digest == web_session.c.username_digest)
        .where(web_session.c.id_digest == _digest(token))
    ).first()
    if row is None or row.expires_at <= tx.now:
        return None
    seen = row.last_seen_at or row.expires_at - SESSION_LIFETIME
    if seen <= tx.now - SESSION_IDLE:
        return None
    return WebSession(
        username=_session_username(tx, row.username_digest, row.username_sealed),
        role=row.role,
        csrf_token=row.csrf_token,
        expires_at=row.expires_at,
        touch_due=seen <= tx.now - TOUCH_EVERY,
        domains=loaded_scope(row.domain_scope),
        must_change_password=bool(row.must_change_password),
    )


def session_username(tx: Tx, *, token: str) -> str | None:
    """The user the cookie value's session is or was for, live or ended; None once its row is
    gone (signed out, or cleared by a later sign-in). A form sent after its session ended is
    given back only to this user after sign-in (ui.submissions.keep_form)."""
    row = tx.conn.execute(
        select(web_user.c.username_digest, web_user.c.username_sealed)
        .join(web_session, web_user.c.username_digest == web_session.c.username_digest)
        .where(web_session.c.id_digest == _digest(token))
    ).first()
    return None if row is None else _session_username(tx, row.username_digest, row.username_sealed)


def _session_username(tx: Tx, digest: bytes, sealed: bytes) -> str:
    name = _cipher(tx).open_record(USER_TABLE, bytes(digest).hex(), bytes(sealed))
    return str(name["username"])


def touch_session(tx: Tx, *, token: str) -> None:
    """Record that the session's browser was seen now (it was used within SESSION_IDLE). Only
    a live one: a session ended (set_password) while its request was on its way is not brought
    back by it (the update's condition is read again on the row as it is once locked)."""
    tx.conn.execute(
        update(web_session)
        .where(web_session.c.id_digest == _digest(token), _live_session(tx))
        .values(last_seen_at=tx.now)
    )


def delete_session(tx: Tx, *, token: str) -> None:
    tx.conn.execute(delete(web_session).where(web_session.c.id_digest == _digest(token)))
