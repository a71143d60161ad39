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
KEPT_FORM_FOR. It is shown there to review, never saved by itself, and in one session only
(`reopened_form`): each kept form has a random id, sealed with it, and the transaction that gives
it back records that id in this same table (a row whose token is KEPT_FORM_TOKEN and the id) with
the session it was given to. The same session sending it again (a double click on "Back to the
form", Back and resend, both at once) gets the same form back: it used to find it gone, and the
agent lost what they typed after all. Another session (signing in again with the same sign-in
page) finds it used, as a create form sent twice finds its profile.

The administrators' API credential form works the same way (`credential_created_by`,
`record_credential`): its one-time token's digest is kept a day with the access key id it
created, in a table of its own (a key belongs to no domain). The page answers that form directly,
so that the secret is shown once and never stored; Reload with "resend" used to create a second
live key without a word. The same form sent again now creates none: it is told which key it
created, by its id only, as the secret is never shown again.
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
from openprofiles.store.schema import web_credential_form, web_form_submission
from openprofiles.users.models import WebSession

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


def credential_created_by(tx: Tx, *, token: str) -> str | None:
    """The access key id the credential form with this token already created, if it did."""
    return tx.conn.execute(
        select(web_credential_form.c.access_key_id).where(
            web_credential_form.c.submission_digest == _digest(token)
        )
    ).scalar()


def record_credential(tx: Tx, *, token: str, access_key_id: str) -> None:
    """Remember, in the transaction that created it, which key the credential form created. Two
    sends at once insert the same primary key: the loser's transaction (its key included) is
    rolled back and run again (store.conflicts), and then finds the winner's."""
    tx.conn.execute(
        delete(web_credential_form).where(web_credential_form.c.created_at < tx.now - KEPT_FOR)
    )
    tx.conn.execute(
        insert(web_credential_form).values(
            submission_digest=_digest(token), access_key_id=access_key_id, created_at=tx.now
        )
    )


# ---------------------------------------------------------------- forms kept after a session ended

KEPT_FORM_FIELD = "kept_form"
KEPT_FORM_FOR = timedelta(minutes=30)
KEPT_FORM_NOTICE = "Your session had ended; your changes were kept — review them and save."
KEPT_FORM_GONE = (
    "The changes kept when your session ended are no longer available: they are kept for 30 "
    "minutes, for the user who typed them, and come back in the first session that asks for "
    "them. Open the form again."
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
    payload = {"t": now.timestamp(), "u": username, "f": fields, "n": new_token()}
    blob = services.keys.system_cipher().seal_record(_KEPT_FORM_TABLE, path, payload)
    return base64.urlsafe_b64encode(blob).decode("ascii")


def reopen_form(
    services: Services, *, path: str, sealed: str, username: str, now: datetime
) -> FormData | None:
    """The form `keep_form` sealed, for `username` signed in at `path`; None when it was changed,
    is another page's or another user's, or is older than KEPT_FORM_FOR. Whether it was given
    back already is not looked at here: `reopened_form` gives it back, to one session."""
    opened = _opened(services, path=path, sealed=sealed, username=username, now=now)
    return opened[1] if opened is not None else None


def _opened(
    services: Services, *, path: str, sealed: str, username: str, now: datetime
) -> tuple[str, FormData] | None:
    """`reopen_form`, with the kept form's id."""
    try:
        blob = base64.urlsafe_b64decode(sealed.encode("ascii"))
        payload = services.keys.system_cipher().open_record(_KEPT_FORM_TABLE, path, blob)
    except (ValueError, binascii.Error, DecryptionError):
        return None
    kept_at, owner, fields = payload.get("t"), payload.get("u"), payload.get("f")
    kept_id = payload.get("n")
    if not isinstance(kept_at, (int, float)) or not isinstance(fields, list):
        return None
    # A form kept before kept forms had an id (at most KEPT_FORM_FOR before the upgrade) could
    # not be given back only once: it is not given back.
    if not isinstance(kept_id, str) or not kept_id:
        return None
    if not 0 <= now.timestamp() - kept_at <= KEPT_FORM_FOR.total_seconds():
        return None
    if owner != username:
        return None
    return kept_id, FormData([(str(name), str(value)) for name, value in fields])


# The token under which a kept form's id is recorded once given back (`reopened_form`). A create
# form's own tokens (new_token) have no ":", and this one holds an id only the sealed form
# carries: neither can be taken for the other.
KEPT_FORM_TOKEN = "kept-form:{}"


def _given_to(session: WebSession) -> str:
    """The row's profile id (a kept form given back created no profile): the session it was
    given back to, by a digest of the session's CSRF token, which no other session has. Rows
    recorded before (they hold "") are no session's."""
    return "session:" + hashlib.sha256(session.csrf_token.encode("utf-8")).hexdigest()[:40]


def reopened_form(tx: Tx, request: Request, sealed: str) -> FormData:
    """The form `keep_form` sealed, for the page `request` (a POST of the signed-in user that
    brings it back, on a domain's page) is at, given back to one session: `tx` records it as
    given back to the request's session, which gets it back as often as it sends it (a double
    click, Back and resend, or both at once: the loser's insert of the same key is run again by
    store.conflicts and then finds the winner's row, its own session's). BadRequest
    (KEPT_FORM_GONE) when it cannot be opened, or was given back to another session."""
    from openprofiles.ui.web import address_path  # it imports this module

    opened = _opened(
        tx.services,
        # The address the form was sealed to (web.UI.keep_form) and brought back to.
        path=address_path(request),
        sealed=sealed,
        username=request.state.session.username,
        now=datetime.now(UTC),
    )
    if opened is None:
        raise BadRequest(KEPT_FORM_GONE)
    kept_id, form = opened
    domain_name = request.path_params["domain"]
    token = KEPT_FORM_TOKEN.format(kept_id)
    given_to = _given_to(request.state.session)
    earlier = created_by(tx, domain_name=domain_name, token=token)
    if earlier is None:
        # Kept a day, as the create forms' rows (the form itself opens for half an hour only).
        record(tx, domain_name=domain_name, token=token, profile_id=given_to)
    elif earlier != given_to:
        raise BadRequest(KEPT_FORM_GONE)
    return form
