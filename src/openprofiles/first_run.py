"""First start of `make run`: an admin credential and instructions a newcomer can follow.

The credential is written to DATA_DIR/credentials in the AWS shared-credentials format (owner-only
permissions), so boto3 and the AWS CLI can use it with AWS_SHARED_CREDENTIALS_FILE. The web user
`admin`'s first password is written to DATA_DIR/admin-password (owner-only too). Neither secret
is ever printed: what `serve` prints ends up in logs (a terminal's scrollback, journald, a
container's log), which anyone reading them could then sign in with. The lines say where the
files are instead. What it makes is written to the audit log (audit.first_run_admin), by access
key id and the web user's audit name, never a secret; its file is opened before anything is
made (`_audit_log`), so a first run is audited or makes nothing.

Every start with --first-run-admin says how to connect again, so each line says only what is
true now: the credentials file's key still exists, the web user `admin` is still an
administrator, the password file still opens it. Deleted or changed since, the line is left out
or says what to do instead. Without --first-run-admin, a server nobody can use (no web user, no
credential) says how to make the first administrator (`nobody_can_sign_in`).

`admin` must change the generated password at first sign-in (users.service
`must_change_password`): the pages offer only the password page until then. Once it is changed,
on the pages or by `users set-password`, the file holds a dead secret and is deleted
(`retire_first_password`, after the commit of users.service.set_password, which every new
password passes through); the later starts' lines then no longer point at it.
"""

from __future__ import annotations

import configparser
import logging
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from openprofiles.auth.credentials import (
    IssuedCredential,
    create_credential,
    find_secret,
    list_credentials,
)
from openprofiles.context import Services

PROFILE_NAME = "openprofiles"
WEB_ADMIN = "admin"
# The files of DATA_DIR this module writes secrets to (serving checks their modes at start).
CREDENTIALS_FILE = "credentials"
ADMIN_PASSWORD_FILE = "admin-password"

_log = logging.getLogger(__name__)


def _write_secret(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by its owner only: a file created now is made so, and
    one left from before (restored from a backup, say) is made so again, as O_CREAT's mode
    applies only to a file it creates."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(fd, 0o600)
        handle.write(text)


def ensure_first_admin(services: Services, endpoint: str, *, storage: str = "") -> Iterator[str]:
    """Create an admin credential if there is none, and the web user `admin` if no admin can
    sign in; yield lines that say how to connect. `storage`: the storage options `serve` was
    given (cli_support.storage_options_given), which a command the lines name must repeat to
    reach this installation."""
    path = services.settings.data_dir / CREDENTIALS_FILE
    with _audit_log(services):
        issued, has_admin = _first_credential(services, path)
        web = _first_web_admin(services)
    if issued is not None:
        yield f"Created an admin credential {issued.access_key_id}; saved in {path}."
    saved = issued.access_key_id if issued is not None else _saved_key(services, path)
    if saved is not None:
        yield "Use it from a shell with:"
        yield f"  export AWS_SHARED_CREDENTIALS_FILE={path.resolve()} AWS_PROFILE={PROFILE_NAME}"
        yield f"  export AWS_DEFAULT_REGION={services.settings.region}"
        yield f"  aws --endpoint-url {endpoint} customer-profiles list-domains"
        yield "or in Python:"
        yield (
            f"  boto3.Session(profile_name='{PROFILE_NAME}').client('customer-profiles', "
            f"endpoint_url='{endpoint}', region_name='{services.settings.region}')"
        )
    elif path.exists():
        # Deleted (revoked) since, or a file that holds no key of this server's.
        yield (
            f"The access key in {path.resolve()} is no longer one of this server's (deleted?): "
            f"use another admin key, or create one with: {_create_credential(storage)}"
        )
    elif has_admin:
        # The file was deleted (or moved) since: the admin key it held, or another, is still
        # this server's, so nothing is made and no new key is needed to call the API.
        yield (
            f"An admin access key exists, but {path.resolve()} does not hold its secret: use "
            "an admin key you keep elsewhere (openprofiles credentials list names them), or "
            f"create another with: {_create_credential(storage)}"
        )
    else:
        yield f"Create credentials with: {_create_credential(storage)}"
    yield from _web_admin_lines(web, endpoint, storage)


@contextmanager
def _audit_log(services: Services) -> Iterator[None]:
    """The audit log's file opened before the first run makes anything, and its audit lines
    (`_audit`) appended to it while the block runs (`serve` writes them before its workers,
    which have the file, start). One that cannot be opened refuses here, naming the file and
    the setting (cli_support.open_audit_file), with nothing made: it used to be opened only
    after the credential and the password file were made, which a refusal then left in place,
    unaudited, and the next start no longer offered a first run."""
    from openprofiles import logging_setup
    from openprofiles.cli_support import open_audit_file

    path = services.settings.audit_log_file
    if path is None:
        yield
        return
    with logging_setup.audit_to(open_audit_file(path)):
        yield


def _first_credential(services: Services, path: Path) -> tuple[IssuedCredential | None, bool]:
    """An admin credential made and saved in `path` when there is none (else None); and
    whether there was one. Audited before its file is written: the line says what the
    database holds, even if the file then cannot be written."""
    with services.write() as tx:
        has_admin = any(c.role == "admin" for c in list_credentials(tx))
        issued = None if has_admin else create_credential(tx, role="admin")
    if issued is not None:
        _audit(services, "credential", issued.access_key_id)
        _write_secret(
            path,
            f"[{PROFILE_NAME}]\n"
            f"aws_access_key_id = {issued.access_key_id}\n"
            f"aws_secret_access_key = {issued.secret_access_key}\n",
        )
    return issued, has_admin


def _audit(services: Services, made: str, name: str) -> None:
    """The audit line for what the first run made (audit.first_run_admin): inside `_audit_log`,
    which has the file open."""
    from openprofiles import audit

    uid = os.getuid() if hasattr(os, "getuid") else None
    audit.first_run_admin(made, name=name, uid=uid, sudo_uid=services.settings.sudo_uid)


def _create_credential(storage: str) -> str:
    return f"openprofiles credentials create{storage} --role admin"


def _create_web_admin(storage: str) -> str:
    return f"openprofiles users create{storage} --username NAME --role admin"


def _saved_key(services: Services, path: Path) -> str | None:
    """The access key id `path` holds (its [openprofiles] profile) when this server has that
    key, with that secret; None otherwise (no file, no such key, deleted since)."""
    saved = configparser.ConfigParser(interpolation=None)
    try:
        saved.read(path, encoding="utf-8")
        key_id = saved.get(PROFILE_NAME, "aws_access_key_id")
        secret = saved.get(PROFILE_NAME, "aws_secret_access_key")
    except (OSError, UnicodeDecodeError, configparser.Error):
        return None
    with services.read() as tx:
        stored = find_secret(tx, access_key_id=key_id)
    # As bytes: compare_digest refuses str with a non-ASCII character (a secret edited by
    # hand), which would stop the server rather than say the file holds no key of its own.
    if stored is None or not secrets.compare_digest(
        stored.secret.encode("utf-8"), secret.encode("utf-8")
    ):
        return None
    return key_id


def ensure_first_web_admin(
    services: Services, endpoint: str, *, storage: str = ""
) -> Iterator[str]:
    """Create the web user `admin` if no admin can sign in; yield how to sign in."""
    with _audit_log(services):
        web = _first_web_admin(services)
    yield from _web_admin_lines(web, endpoint, storage)


@dataclass(frozen=True)
class _WebAdmin:
    """What `_first_web_admin` found or made, for the lines that say how to sign in."""

    path: Path
    created: bool
    # `admin` is an administrator (made now, or before).
    is_admin: bool
    # The password file still opens `admin`.
    first_password: bool
    admins: int


def _first_web_admin(services: Services) -> _WebAdmin:
    """The web user `admin` made, its password saved in DATA_DIR/admin-password, when no admin
    can sign in (inside `_audit_log`, which has the audit file open)."""
    from openprofiles.users.service import (
        audit_name,
        check_password,
        count_users,
        create_user,
        find_user,
        require_password_change,
        verify_password,
    )

    path = services.settings.data_dir / ADMIN_PASSWORD_FILE
    password = secrets.token_urlsafe(15)
    # A random password the policy refuses (one that happens to contain "admin", a few in ten
    # million) would stop the first start: draw another.
    while check_password(password, username=WEB_ADMIN) is not None:
        password = secrets.token_urlsafe(15)
    with services.write() as tx:
        admins = count_users(tx, role="admin")
        user = find_user(tx, username=WEB_ADMIN)
        created = admins == 0 and user is None
        if created:
            create_user(
                tx,
                username=WEB_ADMIN,
                password=password,
                role="admin",
                must_change_password=True,
            )
        is_admin = created or (user is not None and user.role == "admin")
        # The file's password, unless it was changed since (verify_password may rehash it).
        on_file = _read(path)
        first_password = created or (
            is_admin
            and bool(on_file)
            and verify_password(tx, username=WEB_ADMIN, password=on_file) is not None
        )
        if first_password and user is not None and not user.must_change_password:
            # Made before the pages asked for a new password (migration 0047), and still
            # opened by the file's: asked now, as for an admin made today.
            require_password_change(tx, username=WEB_ADMIN)
    if created:
        _audit(services, "web-user", audit_name(services.keys.system_cipher(), WEB_ADMIN))
        _write_secret(path, password + "\n")
    return _WebAdmin(path, created, is_admin, first_password, admins)


def _web_admin_lines(web: _WebAdmin, endpoint: str, storage: str) -> Iterator[str]:
    path = web.path
    if web.created:
        yield f"Created the web user {WEB_ADMIN}; its password is saved in {path}."
    if web.is_admin:
        yield f"Sign in to the web pages at {endpoint}/ui/ as {WEB_ADMIN}"
        if web.first_password:
            yield (
                f"  (the first password is in {path.resolve()}: cat it to see it; the pages "
                "then ask for a password of your own, and the file is deleted)."
            )
    elif web.admins:
        # `admin` was deleted, or made an agent, by another administrator.
        yield (
            f"Sign in to the web pages at {endpoint}/ui/ as an administrator "
            "(openprofiles users list names them)."
        )
    else:
        # The name `admin` is an agent's, and no one else is an administrator.
        yield (
            "No one can administer the web pages: create an administrator: "
            f"{_create_web_admin(storage)}"
        )


def retire_first_password(data_dir: Path, *, username: str, opens: Callable[[str], bool]) -> None:
    """After `username`'s password was changed (committed; users.service.set_password, which
    every new password passes through, queues this): when that user is the first run's
    `admin`, delete its password file in `data_dir` (DATA_DIR/admin-password), which no longer
    opens the account (a dead secret left on disk, and a later start's lines would point at
    it). `opens`: whether a password is the new one; a file that holds it (set to the same by
    hand, `users set-password --temporary` with the file's) is kept. Never raises: the password
    is changed all the same."""
    if username != WEB_ADMIN:
        return
    path = data_dir / ADMIN_PASSWORD_FILE
    on_file = _read(path)
    if on_file and opens(on_file):
        return
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        # The password is changed all the same (committed): the file is only left behind.
        _log.warning("Could not delete %s, which no longer opens %s: %s", path, username, exc)


def _read(path: Path) -> str:
    """The password in the first run's password file; "" when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return ""


def nobody_can_sign_in(services: Services, *, storage: str = "") -> Iterator[str]:
    """Without --first-run-admin: when there is no web user and no credential at all, so no one
    can sign in to the web pages nor call the API, a line saying how to make the first
    administrator."""
    from openprofiles.users.models import ROLES
    from openprofiles.users.service import count_users

    with services.read() as tx:
        empty = not list_credentials(tx) and not any(count_users(tx, role=r) for r in ROLES)
    if empty:
        yield (
            "No one can sign in or call the API yet: start once with --first-run-admin, or "
            f"create an administrator with: {_create_web_admin(storage)}; and an access key "
            f"with: {_create_credential(storage)}"
        )
