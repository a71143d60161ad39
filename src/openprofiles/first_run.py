"""First start of `make run`: an admin credential and instructions a newcomer can follow.

The credential is written to DATA_DIR/credentials in the AWS shared-credentials format (owner-only
permissions), so boto3 and the AWS CLI can use it with AWS_SHARED_CREDENTIALS_FILE. The web user
`admin`'s first password is written to DATA_DIR/admin-password (owner-only too). Neither secret
is ever printed: what `serve` prints ends up in logs (a terminal's scrollback, journald, a
container's log), which anyone reading them could then sign in with. The lines say where the
files are instead.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from openprofiles.auth.credentials import create_credential, list_credentials
from openprofiles.context import Services

PROFILE_NAME = "openprofiles"
WEB_ADMIN = "admin"
# The files of DATA_DIR this module writes secrets to (serving checks their modes at start).
CREDENTIALS_FILE = "credentials"
ADMIN_PASSWORD_FILE = "admin-password"


def _write_secret(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by its owner only: a file created now is made so, and
    one left from before (restored from a backup, say) is made so again, as O_CREAT's mode
    applies only to a file it creates."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(fd, 0o600)
        handle.write(text)


def ensure_first_admin(services: Services, endpoint: str) -> Iterator[str]:
    """Create an admin credential if there is none; yield lines that say how to connect."""
    path = services.settings.data_dir / CREDENTIALS_FILE
    with services.write() as tx:
        has_admin = any(c.role == "admin" for c in list_credentials(tx))
        issued = None if has_admin else create_credential(tx, role="admin")
    if issued is not None:
        _write_secret(
            path,
            f"[{PROFILE_NAME}]\n"
            f"aws_access_key_id = {issued.access_key_id}\n"
            f"aws_secret_access_key = {issued.secret_access_key}\n",
        )
        yield f"Created an admin credential {issued.access_key_id}; saved in {path}."
    if path.exists():
        yield "Use it from a shell with:"
        yield f"  export AWS_SHARED_CREDENTIALS_FILE={path.resolve()} AWS_PROFILE={PROFILE_NAME}"
        yield f"  export AWS_DEFAULT_REGION={services.settings.region}"
        yield f"  aws --endpoint-url {endpoint} customer-profiles list-domains"
        yield "or in Python:"
        yield (
            f"  boto3.Session(profile_name='{PROFILE_NAME}').client('customer-profiles', "
            f"endpoint_url='{endpoint}', region_name='{services.settings.region}')"
        )
    else:
        yield "Create credentials with: openprofiles credentials create --role admin"
    yield from ensure_first_web_admin(services, endpoint)


def ensure_first_web_admin(services: Services, endpoint: str) -> Iterator[str]:
    """Create the web user `admin` if no admin can sign in; yield how to sign in."""
    from openprofiles.users.service import check_password, count_users, create_user, find_user

    path = services.settings.data_dir / ADMIN_PASSWORD_FILE
    password = secrets.token_urlsafe(15)
    # A random password the policy refuses (one that happens to contain "admin", a few in ten
    # million) would stop the first start: draw another.
    while check_password(password, username=WEB_ADMIN) is not None:
        password = secrets.token_urlsafe(15)
    with services.write() as tx:
        created = count_users(tx, role="admin") == 0 and find_user(tx, username=WEB_ADMIN) is None
        if created:
            create_user(tx, username=WEB_ADMIN, password=password, role="admin")
    if created:
        _write_secret(path, password + "\n")
        yield f"Created the web user {WEB_ADMIN}; its password is saved in {path}."
    yield f"Sign in to the web pages at {endpoint}/ui/ as {WEB_ADMIN}"
    if path.exists():
        yield f"  (the first password is in {path.resolve()}: cat it to see it)."
