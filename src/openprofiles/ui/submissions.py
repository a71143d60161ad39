"""A profile-creation form creates one profile, however often it is sent.

The create form carries a one-time token (`new_token`, a hidden field). The transaction that
creates the profile records the token's digest with the profile's id (`record`); the same form
sent again (a double click, Back and resend, a second tab) finds it (`created_by`) and shows
that profile (the one it was merged into, if it was) instead of creating a second one of the
same customer; a form whose profile was deleted since makes one again. Two sends at once: both
insert the same primary key; the loser's transaction fails on it and runs again
(store.conflicts), and then finds the winner's. Rows are kept a day.

A form sent after its session ended (an hour idle, or 12 hours) is kept too (`keep_form`): what
the agent typed, sealed with the system cipher to the form's address and, when the ended
session's row still says whose it was, to that user. It is never stored in clear nor put in an
address or a log: it travels in the sign-in page that answers the form (a hidden field) and, once
signed in, in the form that brings the agent back to their page (`reopen_form`), for
KEPT_FORM_FOR. It is shown there to review, never saved by itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, select
from starlette.datastructures import FormData
from starlette.requests import Request

from openprofiles.context import Services, Tx
from openprofiles.crypto.errors import DecryptionError
from openprofiles.domains.service import register_domain_table
from openprofiles.errors import BadRequest
from openprofiles.store.schema import web_form_submission

register_domain_table(web_form_submission)

KEPT_FOR = timedelta(days=1)
# Longest token accepted from a form (new_token's are 22 characters).
MAX_TOKEN_CHARS = 64


def new_token() -> str:
    return secrets.token_urlsafe(16)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def usable(token: str | None) -> str | None:
    """The form's token, or None for a form without a usable one (sent by a script)."""
    if token and 0 < len(token) <= MAX_TOKEN_CHARS:
        return token
    return None


def created_by(tx: Tx, *, domain_name: str, token: str) -> str | None:
    """The id of the profile this form already created in the domain, if it did."""
    return tx.conn.execute(
        select(web_form_submission.c.profile_id).where(
            web_form_submission.c.domain_name == domain_name,
            web_form_submission.c.submission_digest == _digest(token),
        )
    ).scalar()


def forget(tx: Tx, *, domain_name: str, token: str) -> None:
    """Forget the form's profile (it was deleted since)."""
    tx.conn.execute(
        delete(web_form_submission).where(
            web_form_submission.c.domain_name == domain_name,
            web_form_submission.c.submission_digest == _digest(token),
        )
    )


def record(tx: Tx, *, domain_name: str, token: str, profile_id: str) -> None:
    """Remember, in the transaction that created it, which profile the form created."""
    tx.conn.execute(
        delete(web_form_submission).where(web_form_submission.c.created_at < tx.now - KEPT_FOR)
    )
    tx.conn.execute(
        insert(web_form_submission).values(
            domain_name=domain_name,
            submission_digest=_digest(token),
            profile_id=profile_id,
            created_at=tx.now,
        )
    )


# ---------------------------------------------------------------- forms kept after a session ended

KEPT_FORM_FIELD = "kept_form"
KEPT_FORM_FOR = timedelta(minutes=30)
KEPT_FORM_NOTICE = "Your session had ended; your changes were kept — review them and save."
KEPT_FORM_GONE = (
    "The changes kept when your session ended are no longer available: they are kept for 30 "
    "minutes, for the user who typed them. Open the form again."
)
# The sealed form's record id is the page's address: it reopens only there.
_KEPT_FORM_TABLE = "ui/kept-form"
# A kept form is at most this many characters of names and values (the profile form's limits
# come to about 60 000); a larger one is not kept. The session's CSRF token is not kept: the
# form comes back with the new session's.
MAX_KEPT_FORM_CHARS = 200_000
_NOT_KEPT = frozenset({"csrf_token", KEPT_FORM_FIELD})


def keep_form(
    services: Services, *, path: str, username: str, form: FormData, now: datetime
) -> str | None:
    """The text fields of `form`, sent to `path` after its session ended, sealed (base64) for
    `username`, the user whose session it was; None when it is too large.

    Only for a known user: a form kept for whoever signs in next could be made by anyone (an
    HTTP client can send any Sec-Fetch-Site), planted in an agent's sign-in page, and saved
    by the agent as their own (found in review)."""
    fields = [
        [name, value]
        for name, value in form.multi_items()
        if isinstance(value, str) and name not in _NOT_KEPT
    ]
    if sum(len(name) + len(value) for name, value in fields) > MAX_KEPT_FORM_CHARS:
        return None
    blob = services.keys.system_cipher().seal_record(
        _KEPT_FORM_TABLE, path, {"t": now.timestamp(), "u": username, "f": fields}
    )
    return base64.urlsafe_b64encode(blob).decode("ascii")


def reopen_form(
    services: Services, *, path: str, sealed: str, username: str, now: datetime
) -> FormData | None:
    """The form `keep_form` sealed, for `username` signed in at `path`; None when it was changed,
    is another page's or another user's, or is older than KEPT_FORM_FOR."""
    try:
        blob = base64.urlsafe_b64decode(sealed.encode("ascii"))
        payload = services.keys.system_cipher().open_record(_KEPT_FORM_TABLE, path, blob)
    except (ValueError, binascii.Error, DecryptionError):
        return None
    kept_at, owner, fields = payload.get("t"), payload.get("u"), payload.get("f")
    if not isinstance(kept_at, (int, float)) or not isinstance(fields, list):
        return None
    if not 0 <= now.timestamp() - kept_at <= KEPT_FORM_FOR.total_seconds():
        return None
    if owner != username:
        return None
    return FormData([(str(name), str(value)) for name, value in fields])


def reopened_form(services: Services, request: Request, sealed: str) -> FormData:
    """The form `keep_form` sealed, for the page `request` (a POST of the signed-in user that
    brings it back) is at; BadRequest (KEPT_FORM_GONE) when reopen_form cannot open it."""
    form = reopen_form(
        services,
        path=request.url.path,
        sealed=sealed,
        username=request.state.session.username,
        now=datetime.now(UTC),
    )
    if form is None:
        raise BadRequest(KEPT_FORM_GONE)
    return form
